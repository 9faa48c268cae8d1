"""`trustee operator render`: the objects the operator would apply for a KbsConfig, as a YAML
stream, from files (the KbsConfig and, optionally, the ConfigMaps/Secrets it references)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustee.operator.render import Ref

log = logging.getLogger("trustee")

EXIT_CONFIG = 2


class _RenderInputError(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _load_yaml_stream(path: str) -> list[object]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    except OSError as exc:
        raise _RenderInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _RenderInputError(f"{path}: invalid YAML: {_one_line(exc)}") from exc


def _load_kbsconfig(path: str) -> dict[str, Any]:
    found = [
        doc
        for doc in _load_yaml_stream(path)
        if isinstance(doc, dict) and doc.get("kind") == "KbsConfig"
    ]
    if len(found) != 1:
        what = "no KbsConfig document" if not found else f"{len(found)} KbsConfig documents"
        raise _RenderInputError(f"{path}: {what}; give exactly one")
    return found[0]


def _load_objects(paths: list[str], namespace: str) -> dict[Ref, dict[str, Any]]:
    from trustee.operator.render import Ref

    objects: dict[Ref, dict[str, Any]] = {}
    for path in paths:
        docs = _load_yaml_stream(path)
        while docs:
            doc = docs.pop(0)
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            # `kubectl get cm,secret -o yaml` wraps its output in a List.
            if (
                isinstance(kind, str)
                and kind.endswith("List")
                and isinstance(doc.get("items"), list)
            ):
                docs[:0] = doc["items"]
                continue
            if kind not in ("ConfigMap", "Secret"):
                continue
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                raise _RenderInputError(f"{path}: a {kind} without metadata.name")
            obj_ns = meta.get("namespace") if isinstance(meta, dict) else None
            if obj_ns and obj_ns != namespace:
                # The operator only looks in its own namespace.
                print(
                    f"warning: {path}: {kind}/{name} is in namespace {obj_ns}, not {namespace}; "
                    "ignored",
                    file=sys.stderr,
                )
                continue
            ref = Ref(kind, name)
            if ref in objects:
                raise _RenderInputError(f"{path}: {kind}/{name} given more than once")
            objects[ref] = doc
    return objects


def operator_render(args: argparse.Namespace) -> int:
    from trustee.operator.render import (
        DEFAULT_IMAGE,
        DEFAULT_NAMESPACE,
        RenderError,
        referenced,
        render,
        to_yaml_stream,
    )

    try:
        kbsconfig = _load_kbsconfig(args.kbsconfig)
        meta = kbsconfig.get("metadata")
        cr_namespace = meta.get("namespace") if isinstance(meta, dict) else None
        namespace = args.namespace or cr_namespace or DEFAULT_NAMESPACE
        objects = None
        if args.objects:
            objects = _load_objects(args.objects, namespace)
            for ref in referenced(kbsconfig):
                if ref not in objects:
                    print(
                        f"warning: {ref.kind}/{ref.name} is not among --objects; hashed as "
                        "absent (the operator would wait for it)",
                        file=sys.stderr,
                    )
        try:
            rendered = render(
                kbsconfig,
                namespace=namespace,
                image=args.image or DEFAULT_IMAGE,
                objects=objects,
            )
        except RenderError as exc:
            raise _RenderInputError(f"{args.kbsconfig}: {exc}") from exc
    except _RenderInputError as exc:
        print(f"trustee operator render: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(to_yaml_stream(rendered))
    return 0
