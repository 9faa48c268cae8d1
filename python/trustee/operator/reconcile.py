"""Reconciliation: a KbsConfig and what it references in, the Deployment, Service and status
out. Talks to the API through `KubeApi` only; what to create comes from `render`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustee.operator.kube import (
    JSON,
    KIND,
    ApiError,
    KubeApi,
    NotFoundError,
    kbsconfig_path,
    object_path,
    plural_of,
)
from trustee.operator.render import (
    DEPLOYMENT_NAME,
    ROLLOUT_ANNOTATION,
    SERVICE_NAME,
    SESSION_KEY_SECRET,
    Ref,
    RenderError,
    config_hash,
    referenced,
    render,
    session_key_secret,
    shares_session_key,
)
from trustee.operator.settings import OperatorConfig
from trustee.operator.status import (
    CONDITION_READY,
    REASON_INVALID,
    REASON_MISSING,
    _describe,
    _meta,
    _plain,
    contains,
    deployment_readiness,
    ready_condition,
)

log = logging.getLogger("trustee.operator.kopf_operator")

AnyLogger = logging.Logger | logging.LoggerAdapter[Any]


class MissingReferenceError(Exception):
    def __init__(self, refs: list[Ref], namespace: str) -> None:
        names = ", ".join(_describe(ref) for ref in refs)
        super().__init__(f"{names} not found in namespace {namespace!r}")
        self.refs = refs


@dataclass
class Reconciler:
    """The operator's state and its reconcile steps; kopf handlers are thin wrappers."""

    config: OperatorConfig
    api: KubeApi
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # Per KbsConfig: the content digest of each referenced object as last acted upon, so that
    # events which change nothing the pod sees (re-listings, metadata edits) cost no reconcile.
    _acted_on: dict[tuple[str, str], dict[Ref, str]] = field(default_factory=dict)

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    # -- reading --------------------------------------------------------------------------

    async def fetch_referenced(self, kbsconfig: Mapping[str, Any]) -> dict[Ref, JSON | None]:
        refs = referenced(kbsconfig)
        found = await asyncio.gather(
            *(
                self.api.get(
                    object_path("v1", plural_of("v1", ref.kind), self.config.namespace, ref.name)
                )
                for ref in refs
            )
        )
        return dict(zip(refs, found, strict=True))

    async def kbsconfigs(self, namespace: str) -> list[JSON]:
        return await self.api.list(kbsconfig_path(namespace))

    # -- writing --------------------------------------------------------------------------

    async def apply(self, desired: Mapping[str, Any]) -> JSON:
        """Create the object, or merge-patch it when the live one differs from ``desired``."""
        api_version, kind = str(desired["apiVersion"]), str(desired["kind"])
        name = str(_meta(desired)["name"])
        namespace = str(_meta(desired).get("namespace") or self.config.namespace)
        plural = plural_of(api_version, kind)
        body = _plain(desired)
        body.setdefault("metadata", {})["namespace"] = namespace
        body["metadata"].pop("resourceVersion", None)
        live = await self.api.get(object_path(api_version, plural, namespace, name))
        if live is None:
            return await self.api.create(object_path(api_version, plural, namespace), body)
        if kind == "Service":
            _keep_service_allocations(body, live)
        if contains(live, body):
            return live
        return await self.api.merge_patch(object_path(api_version, plural, namespace, name), body)

    async def ensure_session_key(self, deployment: Mapping[str, Any], logger: AnyLogger) -> None:
        """Create the replicas' shared session key Secret unless it exists. An existing one is
        left as it is, whatever it holds: replacing the key would refuse every session in
        flight (rotating is an admin's choice: edit the Secret, the pods roll)."""
        path = object_path("v1", "secrets", self.config.namespace, SESSION_KEY_SECRET)
        if await self.api.get(path) is not None:
            return
        secret = session_key_secret(self.config.namespace, deployment)
        try:
            await self.api.create(object_path("v1", "secrets", self.config.namespace), secret)
        except ApiError as exc:
            if exc.status != 409:  # made meanwhile by another reconcile: theirs stands
                raise
        logger.info(f"created secrets/{SESSION_KEY_SECRET} for the replicas' session cookies")

    async def write_status(self, kbsconfig: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """Merge ``status`` into the KbsConfig's status subresource, if anything changes."""
        if contains(kbsconfig.get("status") or {}, status):
            return
        meta = _meta(kbsconfig)
        path = kbsconfig_path(str(meta["namespace"]), str(meta["name"]), "status")
        with contextlib.suppress(NotFoundError):  # deleted meanwhile: nothing to report on
            await self.api.merge_patch(path, {"status": dict(status)})

    @staticmethod
    def _status(
        kbsconfig: Mapping[str, Any],
        *,
        ready: bool,
        reason: str,
        message: str,
        config_hash: str | None = None,
        observed: bool = True,
    ) -> JSON:
        """The status to merge in; ``observed=False`` keeps the recorded observedGeneration."""
        old = kbsconfig.get("status") or {}
        generation = _meta(kbsconfig).get("generation") if observed else None
        if not observed:
            for cond in old.get("conditions") or ():
                if cond.get("type") == CONDITION_READY:
                    generation = cond.get("observedGeneration")
        status: JSON = {
            "isReady": ready,
            "conditions": [
                ready_condition(
                    ready=ready,
                    reason=reason,
                    message=message,
                    generation=generation,
                    previous=old.get("conditions") or (),
                )
            ],
        }
        if generation is not None and observed:
            status["observedGeneration"] = generation
        if config_hash is not None:
            status["configHash"] = config_hash
        return status

    # -- the steps --------------------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str, logger: AnyLogger) -> None:
        """Bring the Deployment and Service in line with the KbsConfig and its references.

        Raises :class:`MissingReferenceError` or :class:`RenderError` after recording the
        failure in the status; API failures propagate.
        """
        async with self._lock(namespace, name):
            kbsconfig = await self.api.get(kbsconfig_path(namespace, name))
            if kbsconfig is None or _meta(kbsconfig).get("deletionTimestamp"):
                return
            objects = await self.fetch_referenced(kbsconfig)
            digests = {ref: config_hash({ref: obj}) for ref, obj in objects.items()}
            missing = [ref for ref, obj in objects.items() if obj is None]
            if missing:
                error = MissingReferenceError(missing, self.config.namespace)
                await self.write_status(
                    kbsconfig,
                    self._status(kbsconfig, ready=False, reason=REASON_MISSING, message=str(error)),
                )
                self._acted_on[(namespace, name)] = digests  # kopf retries it anyway
                raise error
            try:
                desired = render(
                    kbsconfig,
                    namespace=self.config.namespace,
                    image=self.config.image,
                    objects=objects,
                )
            except RenderError as exc:
                await self.write_status(
                    kbsconfig,
                    self._status(kbsconfig, ready=False, reason=REASON_INVALID, message=str(exc)),
                )
                raise
            deployment: JSON | None = None
            pod_hash: str | None = None
            for obj in desired:
                if obj.get("kind") == "Deployment" and shares_session_key(obj):
                    # Before the pods that mount it, so none starts without it.
                    await self.ensure_session_key(obj, logger)
                applied = await self.apply(obj)
                if obj.get("kind") == "Deployment":
                    deployment = applied
                    template_meta = obj["spec"]["template"]["metadata"]
                    pod_hash = template_meta["annotations"][ROLLOUT_ANNOTATION]
            ready, reason, message = deployment_readiness(deployment)
            await self.write_status(
                kbsconfig,
                self._status(
                    kbsconfig, ready=ready, reason=reason, message=message, config_hash=pod_hash
                ),
            )
            self._acted_on[(namespace, name)] = digests
            logger.info(f"KbsConfig {namespace}/{name} reconciled (config hash {pod_hash})")

    async def refresh_readiness(self, namespace: str, name: str) -> None:
        """Copy the Deployment's readiness into a reconciled KbsConfig's status."""
        async with self._lock(namespace, name):
            kbsconfig = await self.api.get(kbsconfig_path(namespace, name))
            if kbsconfig is None or _meta(kbsconfig).get("deletionTimestamp"):
                return
            status = kbsconfig.get("status") or {}
            current = [
                c for c in status.get("conditions") or () if c.get("type") == CONDITION_READY
            ]
            if not current or current[0].get("reason") in (REASON_MISSING, REASON_INVALID):
                return  # not reconciled yet, or failing for a reason readiness cannot fix
            deployment = await self.api.get(
                object_path("apps/v1", "deployments", self.config.namespace, DEPLOYMENT_NAME)
            )
            ready, reason, message = deployment_readiness(deployment)
            # Readiness says nothing about which spec generation was acted upon.
            await self.write_status(
                kbsconfig,
                self._status(
                    kbsconfig, ready=ready, reason=reason, message=message, observed=False
                ),
            )

    async def finalize(self, namespace: str, name: str, logger: AnyLogger) -> None:
        """Delete what the KbsConfig created; an object already gone counts as deleted."""
        self._acted_on.pop((namespace, name), None)
        for api_version, plural, name in (
            ("apps/v1", "deployments", DEPLOYMENT_NAME),
            ("v1", "services", SERVICE_NAME),
            ("v1", "secrets", SESSION_KEY_SECRET),
        ):
            path = object_path(api_version, plural, self.config.namespace, name)
            if await self.api.delete(path):
                logger.info(f"deleted {plural}/{name}")
            else:
                logger.info(f"{plural}/{name} was already gone")

    async def reconcile_referencing(
        self, ref: Ref, digest: str | None, namespace: str, logger: AnyLogger
    ) -> None:
        """Re-reconcile every KbsConfig in the namespace that names ``ref``.

        ``digest`` is the object's content digest as seen in the event; KbsConfigs last
        reconciled with exactly that content are skipped. None: reconcile regardless.
        """
        for kbsconfig in await self.kbsconfigs(namespace):
            if _meta(kbsconfig).get("deletionTimestamp"):
                continue
            if ref not in referenced(kbsconfig):  # lenient: never raises
                continue
            name = str(_meta(kbsconfig)["name"])
            if digest is not None and self._acted_on.get((namespace, name), {}).get(ref) == digest:
                continue
            try:
                await self.reconcile(namespace, name, logger)
            except (MissingReferenceError, RenderError) as exc:
                logger.warning(f"KbsConfig {namespace}/{name} not reconciled: {exc}")

    async def owners_of_deployment(self, deployment: Mapping[str, Any]) -> list[str]:
        """KbsConfig names owning the Deployment: its ownerReferences, else all in the namespace."""
        owners = [
            str(ref["name"])
            for ref in _meta(deployment).get("ownerReferences") or ()
            if ref.get("kind") == KIND and ref.get("name")
        ]
        if owners:
            return owners
        return [str(_meta(obj)["name"]) for obj in await self.kbsconfigs(self.config.namespace)]


def _keep_service_allocations(body: JSON, live: Mapping[str, Any]) -> None:
    """Carry the allocated node ports over: a merge patch replaces the ports list whole."""
    spec = body.get("spec") or {}
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return
    live_ports = {
        (port.get("name"), port.get("port")): port.get("nodePort")
        for port in (live.get("spec") or {}).get("ports") or ()
    }
    for port in spec.get("ports") or ():
        node_port = live_ports.get((port.get("name"), port.get("port")))
        if node_port and "nodePort" not in port:
            port["nodePort"] = node_port
