"""The pod's mount plan: every volume a KbsConfig asks for and the containers that mount it.

AllInOne mounts everything in the kbs container. MicroservicesDeployment runs the AS and the
RVPS beside it in the same pod, as trustee-operator does, each with its own memory-backed
working directory, its configuration file, and the inputs it reads (see `layout.LAYOUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustee.operator.layout import (
    AS,
    CC_ROOT,
    FIXED_VOLUMES,
    KBS,
    LAYOUT,
    MICROSERVICES,
    MICROSERVICES_LAYOUT,
    REPOSITORY_DEFAULT,
    RVPS,
    Mount,
    Plan,
    Reader,
    Ref,
    RenderError,
    deployment_type,
    memory_dir,
    spec_of,
)

CONTAINERS = (KBS, AS, RVPS)


def plan_mounts(kbsconfig: Mapping[str, Any], strict: bool) -> Plan:
    reader = Reader(spec_of(kbsconfig, strict), strict)
    plan = Plan(microservices=deployment_type(reader) == MICROSERVICES)
    taken = set(FIXED_VOLUMES)

    # v0.3.0 mounts the whole of /opt/confidential-containers as a writable emptyDir and the
    # `default` repository directory as a second one, so that the per-Secret mounts below can
    # nest inside it while the rest of the repository stays writable.
    plan.add(memory_dir("confidential-containers", CC_ROOT))
    plan.add(memory_dir("default", REPOSITORY_DEFAULT))
    if plan.microservices:
        # Not the kbs container's volume: the KBS keeps resources there, the AS and the RVPS
        # need no sight of them.
        plan.add(memory_dir("as-data", CC_ROOT), (AS,))
        plan.add(memory_dir("rvps-data", CC_ROOT), (RVPS,))
    for step in LAYOUT:
        step.add(reader, plan, taken)
    if plan.microservices:
        for step in MICROSERVICES_LAYOUT:
            step.add(reader, plan, taken)

    if strict:
        for container in CONTAINERS:
            _check_unique_mount_paths(
                container, [m for m in plan.mounts if container in m.containers]
            )
    return plan


def _check_unique_mount_paths(container: str, mounts: list[Mount]) -> None:
    owners: dict[str, str] = {}
    for m in mounts:
        mount_path = m.mount["mountPath"].rstrip("/") or "/"
        if mount_path in owners:
            raise RenderError(
                f"{m.path}: mount path {m.mount['mountPath']} is already used by "
                f"{owners[mount_path]} in the {container} container"
            )
        owners[mount_path] = m.path


def check_keys(plan: Plan, objects: Mapping[Ref, Mapping[str, Any] | None]) -> None:
    """A mount of one ConfigMap key needs that key: without it the kubelet mounts an empty
    directory where the file should be, and the container fails on it. Objects not at hand
    (absent or not given) are not checked; the operator waits for those."""
    for m in plan.mounts:
        sub_path = m.mount.get("subPath")
        if sub_path is None or m.ref is None or m.ref.kind != "ConfigMap":
            continue
        obj = objects.get(m.ref)
        if obj is None:
            continue
        keys = set(_keys(obj.get("data"))) | set(_keys(obj.get("binaryData")))
        if sub_path not in keys:
            held = ", ".join(sorted(keys)) or "none"
            raise RenderError(
                f"{m.path}: ConfigMap {m.ref.name} has no key {sub_path!r}, which the "
                f"{'/'.join(m.containers)} container reads as {m.mount['mountPath']} "
                f"(keys: {held})"
            )


def _keys(data: Any) -> list[str]:
    return [str(k) for k in data] if isinstance(data, Mapping) else []


def referenced(kbsconfig: Mapping[str, Any]) -> list[Ref]:
    """Every ConfigMap/Secret the rendered Deployment mounts, in mount order, without repeats.

    Never raises: invalid fields are skipped, so the operator can still map ConfigMap/Secret
    events to a KbsConfig whose render currently fails.
    """
    return plan_mounts(kbsconfig, strict=False).refs()
