"""The KbsConfig operator, built on kopf (the project's only asyncio module).

It reconciles ``KbsConfig`` (``confidentialcontainers.org/v1alpha1``) objects into the
Deployment ``trustee-deployment`` and the Service ``kbs-service`` in the operator's own
namespace, with the trustee-operator v0.3.0 layout but without its known defects:

* The pod template carries a content hash of every referenced ConfigMap and Secret
  (``ROLLOUT_ANNOTATION``), so changing one of them rolls the Deployment out.
  ConfigMap and Secret events in the namespace re-reconcile every KbsConfig naming them.
* ``status`` is written: ``isReady``, ``observedGeneration``, ``configHash`` and a ``Ready``
  condition (reasons ``MissingReference``, ``InvalidSpec``, ``DeploymentNotReady``,
  ``DeploymentReady``, ``DeploymentMissing``). A Deployment watcher keeps it current.
* The finalizer (``FINALIZER``, set through kopf's finalizer setting) never sticks: the
  delete handler removes the Deployment and the Service (both also carry an ownerReference
  from the renderer) and treats NotFound as success.
* A KbsConfig naming a missing ConfigMap/Secret gets ``Ready=False``/``MissingReference``
  naming it and is retried by kopf after ``MISSING_RETRY_DELAY`` seconds (or at once, when
  the object appears); a spec the renderer refuses (e.g. Microservices, not supported yet)
  gets ``InvalidSpec`` and is not retried until the spec changes.
* The Service is merged into, never blindly replaced, so its ``clusterIP`` (and node ports)
  survive a reconcile.
* Objects are only patched when the rendered form is not already contained in the live one.
* A Deployment deleted by hand is recreated (its DELETED event re-reconciles the owner), and a
  kopf timer re-reconciles every KbsConfig every ``RESYNC_INTERVAL`` seconds as a safety net
  for missed watch events and hand edits.

What to create comes from :mod:`trustee.operator.render`; this module only talks to the API.

Environment: ``POD_NAMESPACE`` (fallback ``trustee-operator-system``) is where the operator
reads ConfigMaps/Secrets and creates its objects; ``KBS_IMAGE_NAME`` is the KBS image
(fallback ``DEFAULT_IMAGE``).

Run it with ``python -m trustee.operator.kopf_operator`` (kopf's own ``kopf run`` would use
kopf's global registry, which this module deliberately leaves empty). The operator serves only
its own namespace, in standalone mode (no peering objects needed), with kopf's namespace/CRD
scanning disabled (no cluster-wide namespace or CRD watch permissions needed; the
KbsConfig CRD must be installed before the operator starts).

RBAC it needs (namespace-scoped is enough): configmaps get/list/watch; secrets
get/list/watch/create/delete (the replicas' session key); deployments
get/list/watch/create/patch/delete; services get/create/patch/delete; kbsconfigs
get/list/watch/patch (kopf writes its finalizer and ``kopf.zalando.org/*`` progress
annotations); kbsconfigs/status patch; events create (kopf posts events for handler
outcomes).

API client
----------
kopf has no public general-purpose Kubernetes client (its own is internal, ``kopf._cogs``),
and neither ``kubernetes`` nor ``kubernetes_asyncio`` is a dependency. Instead this module
registers one ``@kopf.on.login`` handler that resolves credentials with kopf's public
rudimentary logins (``kopf.login_with_kubeconfig`` when ``KUBECONFIG`` is set, else
``kopf.login_with_service_account`` in a pod, else ``~/.kube/config``). kopf uses the
resulting :class:`kopf.ConnectionInfo` for its watches and patches, and :class:`KubeApi`, a
small aiohttp client (aiohttp is a kopf dependency), uses the very same ConnectionInfo
(``as_http_headers()`` and ``as_ssl_context()``) for the few calls the operator makes
itself: GET/LIST, POST, merge-PATCH and DELETE. Only JSON merge patches are used (no PUT, no
strategic merge), which behaves the same on a real API server and on the kmock emulator the
tests use. On HTTP 401 the client resolves the credentials again once (service-account
tokens rotate) and retries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kopf

# Names, not the module: the package re-exports the function `render` under the same name.
from trustee.operator.render import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    DEPLOYMENT_NAME,
    FINALIZER,
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

__all__ = [
    "ApiError",
    "KubeApi",
    "NotFoundError",
    "OperatorConfig",
    "Reconciler",
    "build_registry",
    "configure_settings",
    "main",
    "resolve_connection",
]

log = logging.getLogger(__name__)

GROUP = "confidentialcontainers.org"
VERSION = "v1alpha1"
PLURAL = "kbsconfigs"
KIND = "KbsConfig"

CONDITION_READY = "Ready"
REASON_MISSING = "MissingReference"
REASON_INVALID = "InvalidSpec"
REASON_NOT_READY = "DeploymentNotReady"
REASON_READY = "DeploymentReady"
REASON_NO_DEPLOYMENT = "DeploymentMissing"

MISSING_RETRY_DELAY = 10.0  # seconds before kopf retries a KbsConfig with a missing reference
ERROR_BACKOFF = 10.0  # seconds before kopf retries after an unexpected (API) failure
RESYNC_INTERVAL = 300.0  # seconds between periodic re-reconciles of every KbsConfig
REQUEST_TIMEOUT = 30.0
USER_AGENT = "trustee-py-operator"

JSON = dict[str, Any]
AnyLogger = logging.Logger | logging.LoggerAdapter[Any]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorConfig:
    """Where the operator works and which KBS image it deploys."""

    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    # Periodic re-reconcile of every KbsConfig (None: off). kopf's timers delay its shutdown
    # by a few seconds, which in-process tests avoid by turning this off.
    resync_interval: float | None = RESYNC_INTERVAL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        return cls(
            namespace=env.get("POD_NAMESPACE") or DEFAULT_NAMESPACE,
            image=env.get("KBS_IMAGE_NAME") or DEFAULT_IMAGE,
        )


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings this operator relies on (applied by its startup handler)."""
    settings.persistence.finalizer = FINALIZER
    # Progress and diff-base in annotations only: the KbsConfig status schema is ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    # Exact namespaces only: no namespace/CRD scanning (and no RBAC for it).
    settings.scanning.disabled = True


def resolve_connection(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """Credentials: explicit ``KUBECONFIG``, else the pod's service account, else ~/.kube/config."""
    real_settings = settings if settings is not None else kopf.OperatorSettings()
    info: kopf.ConnectionInfo | None = None
    if os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(settings=real_settings)
    if info is None:
        info = kopf.login_with_service_account(settings=real_settings)
    if info is None and os.path.exists(os.path.expanduser("~/.kube/config")):
        info = kopf.login_with_kubeconfig(settings=real_settings)
    if info is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: set KUBECONFIG or run in a pod with a service account"
        )
    return info


# --------------------------------------------------------------------------------------------
# A minimal async Kubernetes API client
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A non-2xx answer from the Kubernetes API."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    """HTTP 404."""


def object_path(
    api_version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object, e.g. ``/apis/apps/v1/namespaces/ns/...``."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def kbsconfig_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return object_path(f"{GROUP}/{VERSION}", PLURAL, namespace, name, subresource)


_PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
}


def plural_of(api_version: str, kind: str) -> str:
    try:
        return _PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None


class KubeApi:
    """Just enough of the Kubernetes REST API for this operator, over aiohttp."""

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo]) -> None:
        self._credentials = credentials
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stale: list[aiohttp.ClientSession] = []

    def use(self, info: kopf.ConnectionInfo) -> None:
        """Adopt credentials resolved elsewhere (kopf's login); the next request uses them."""
        if info != self._info:
            self._info = info
            self._drop_session()

    def _drop_session(self) -> None:
        # Closed at the next request (or at close()): this method is also called from sync code.
        if self._session is not None:
            self._stale.append(self._session)
            self._session = None

    async def _close_stale(self) -> None:
        while self._stale:
            await self._stale.pop().close()

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        if self._info is None:
            self._info = self._credentials()
        info = self._info
        if self._session is None or self._session.closed:
            connector: aiohttp.TCPConnector | None = None
            if info.server.startswith("https:"):
                connector = aiohttp.TCPConnector(ssl=info.as_ssl_context())
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT, **info.as_http_headers()},
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                trust_env=info.trust_env,
            )
        return self._session, info

    async def close(self) -> None:
        await self._close_stale()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> JSON:
        for attempt in (1, 2):
            await self._close_stale()
            session, info = self._ensure_session()
            url = info.server.rstrip("/") + path
            data = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            async with session.request(
                method, url, data=data, headers=headers, proxy=info.proxy_url
            ) as response:
                payload = await response.read()
                if response.status == 401 and attempt == 1:
                    # Tokens rotate: resolve the credentials again and retry once.
                    self._info = None
                    self._drop_session()
                    continue
                if response.status >= 400:
                    raise _api_error(response.status, payload)
                if not payload:
                    return {}
                result = json.loads(payload)
                return result if isinstance(result, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except NotFoundError:
            return None

    async def list(self, path: str) -> list[JSON]:
        items = (await self.request("GET", path)).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def create(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str) -> bool:
        """Delete; False (not an error) when the object is already gone."""
        try:
            await self.request("DELETE", path)
        except NotFoundError:
            return False
        return True


def _api_error(status: int, payload: bytes) -> ApiError:
    reason, message = "", payload.decode(errors="replace")[:500]
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or message)
    cls = NotFoundError if status == 404 else ApiError
    return cls(status, reason, message)


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def contains(live: Any, desired: Any) -> bool:
    """Whether ``desired`` is already expressed by ``live`` (server-added fields are ignored)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def deployment_readiness(deployment: Mapping[str, Any] | None) -> tuple[bool, str, str]:
    """(ready, reason, message): ready once at least one and all wanted replicas are ready."""
    if deployment is None:
        return False, REASON_NO_DEPLOYMENT, f"Deployment {DEPLOYMENT_NAME} does not exist"
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = spec.get("replicas")
    wanted = 1 if wanted is None else int(wanted)
    ready = int(status.get("readyReplicas") or 0)
    message = f"{ready}/{wanted} replicas of {DEPLOYMENT_NAME} ready"
    if ready >= 1 and ready >= wanted:
        return True, REASON_READY, message
    return False, REASON_NOT_READY, message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(
    *,
    ready: bool,
    reason: str,
    message: str,
    generation: int | None,
    previous: Iterable[Mapping[str, Any]] = (),
) -> JSON:
    """A ``Ready`` condition; lastTransitionTime only moves when the status flips."""
    status = "True" if ready else "False"
    transition = _now()
    for old in previous:
        if old.get("type") == CONDITION_READY:
            if old.get("status") == status and old.get("lastTransitionTime"):
                transition = str(old["lastTransitionTime"])
            break
    condition: JSON = {
        "type": CONDITION_READY,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _describe(ref: Ref) -> str:
    return f"{ref.kind} {ref.name!r}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _plain(obj: Mapping[str, Any]) -> JSON:
    """A deep, plain-dict copy (kopf bodies are read-only mapping views)."""
    return json.loads(json.dumps(obj, default=dict))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# kopf wiring
# --------------------------------------------------------------------------------------------


def build_registry(config: OperatorConfig | None = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry holding this operator's handlers (nothing global is touched)."""
    cfg = config if config is not None else OperatorConfig.from_env()
    registry = kopf.OperatorRegistry()
    settings_box: list[kopf.OperatorSettings] = []
    api = KubeApi(lambda: resolve_connection(settings_box[0] if settings_box else None))
    reconciler = Reconciler(config=cfg, api=api)

    @kopf.on.startup(id="startup", registry=registry)
    async def startup(settings: kopf.OperatorSettings, logger: AnyLogger, **_: Any) -> None:
        configure_settings(settings)
        settings_box[:] = [settings]
        logger.info(f"serving KbsConfigs into namespace {cfg.namespace!r}, image {cfg.image!r}")

    @kopf.on.login(id="login", registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        info = resolve_connection(settings)
        api.use(info)
        return info

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(**_: Any) -> None:
        await api.close()

    @kopf.on.resume(
        GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=ERROR_BACKOFF
    )
    @kopf.on.create(
        GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=ERROR_BACKOFF
    )
    @kopf.on.update(
        GROUP, VERSION, PLURAL, id="reconcile", registry=registry, backoff=ERROR_BACKOFF
    )
    async def reconcile_kbsconfig(
        name: str, namespace: str | None, logger: AnyLogger, **_: Any
    ) -> None:
        try:
            await reconciler.reconcile(namespace or cfg.namespace, name, logger)
        except MissingReferenceError as exc:
            raise kopf.TemporaryError(str(exc), delay=MISSING_RETRY_DELAY) from exc
        except RenderError as exc:
            raise kopf.PermanentError(f"invalid KbsConfig spec: {exc}") from exc

    async def resync_kbsconfig(
        name: str, namespace: str | None, logger: AnyLogger, **_: Any
    ) -> None:
        # A safety net for missed watch events and hand edits of the Deployment or Service.
        try:
            await reconciler.reconcile(namespace or cfg.namespace, name, logger)
        except (MissingReferenceError, RenderError) as exc:
            logger.warning(f"KbsConfig {namespace}/{name} not reconciled: {exc}")

    if cfg.resync_interval is not None:
        kopf.timer(
            GROUP,
            VERSION,
            PLURAL,
            id="resync",
            registry=registry,
            interval=cfg.resync_interval,
            initial_delay=cfg.resync_interval,
        )(resync_kbsconfig)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="finalize", registry=registry, backoff=ERROR_BACKOFF)
    async def delete_kbsconfig(
        name: str, namespace: str | None, logger: AnyLogger, **_: Any
    ) -> None:
        await reconciler.finalize(namespace or cfg.namespace, name, logger)

    # Every event type counts, re-listings (type None) too: a change made while a watch was
    # down only shows up there. Content already acted upon is skipped; a deletion never is.
    async def on_referenced(
        ref: Ref, body: kopf.Body, type: str | None, namespace: str | None, logger: AnyLogger
    ) -> None:
        if namespace != cfg.namespace:  # references resolve in the operator's namespace only
            return
        digest = None if type == "DELETED" else config_hash({ref: body})
        await reconciler.reconcile_referencing(ref, digest, cfg.namespace, logger)

    @kopf.on.event("v1", "configmaps", id="configmap-watch", registry=registry)
    async def configmap_event(
        body: kopf.Body,
        name: str,
        namespace: str | None,
        type: str | None,
        logger: AnyLogger,
        **_: Any,
    ) -> None:
        await on_referenced(Ref("ConfigMap", name), body, type, namespace, logger)

    @kopf.on.event("v1", "secrets", id="secret-watch", registry=registry)
    async def secret_event(
        body: kopf.Body,
        name: str,
        namespace: str | None,
        type: str | None,
        logger: AnyLogger,
        **_: Any,
    ) -> None:
        await on_referenced(Ref("Secret", name), body, type, namespace, logger)

    @kopf.on.event("apps", "v1", "deployments", id="deployment-watch", registry=registry)
    async def deployment_event(
        body: kopf.Body,
        name: str,
        namespace: str | None,
        type: str | None,
        logger: AnyLogger,
        **_: Any,
    ) -> None:
        if namespace != cfg.namespace or name != DEPLOYMENT_NAME:
            return
        for owner in await reconciler.owners_of_deployment(body):
            if type == "DELETED":
                # Deleted by hand while its KbsConfig lives on: recreate it.
                try:
                    await reconciler.reconcile(cfg.namespace, owner, logger)
                except (MissingReferenceError, RenderError) as exc:
                    logger.warning(f"KbsConfig {cfg.namespace}/{owner} not reconciled: {exc}")
            else:
                await reconciler.refresh_readiness(cfg.namespace, owner)

    return registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trustee.operator.kopf_operator",
        description="Reconcile KbsConfig objects into the Trustee KBS Deployment and Service.",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz",
    )
    args = parser.parse_args(argv)
    config = OperatorConfig.from_env()
    kopf.configure(verbose=args.verbose)
    kopf.run(
        registry=build_registry(config),
        namespaces=[config.namespace],
        standalone=True,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
