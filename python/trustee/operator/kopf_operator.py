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
  the object appears); a spec the renderer refuses (e.g. a MicroservicesDeployment naming
  no AS configuration) gets ``InvalidSpec`` and is not retried until the spec or a
  referenced object changes.
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

The pieces: `settings` (configuration and login), `kube` (the API client), `status` (the
status it writes), `reconcile` (the Reconciler); this module wires them to kopf.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from trustee.operator.kube import (
    GROUP,
    PLURAL,
    USER_AGENT,
    VERSION,
    ApiError,
    KubeApi,
    NotFoundError,
    object_path,
)
from trustee.operator.reconcile import AnyLogger, MissingReferenceError, Reconciler
from trustee.operator.render import (
    DEPLOYMENT_NAME,
    Ref,
    RenderError,
    config_hash,
)
from trustee.operator.settings import OperatorConfig, configure_settings, resolve_connection
from trustee.operator.status import contains, deployment_readiness, ready_condition

__all__ = [
    "USER_AGENT",
    "ApiError",
    "KubeApi",
    "NotFoundError",
    "OperatorConfig",
    "Reconciler",
    "build_registry",
    "configure_settings",
    "contains",
    "deployment_readiness",
    "main",
    "object_path",
    "ready_condition",
    "resolve_connection",
]

log = logging.getLogger(__name__)

MISSING_RETRY_DELAY = 10.0  # seconds before kopf retries a KbsConfig with a missing reference
ERROR_BACKOFF = 10.0  # seconds before kopf retries after an unexpected (API) failure


def build_registry(config: OperatorConfig | None = None) -> kopf.OperatorRegistry:
    """A fresh kopf registry holding this operator's handlers (nothing global is touched)."""
    cfg = config if config is not None else OperatorConfig.from_env()
    registry = kopf.OperatorRegistry()
    settings_box: list[kopf.OperatorSettings] = []
    api = KubeApi(lambda: resolve_connection(settings_box[0] if settings_box else None))
    reconciler = Reconciler(config=cfg, api=api)
    _register_lifecycle(registry, cfg, api, settings_box)
    _register_kbsconfig(registry, cfg, reconciler)
    _register_reference_watches(registry, cfg, reconciler)
    _register_deployment_watch(registry, cfg, reconciler)
    return registry


def _register_lifecycle(
    registry: kopf.OperatorRegistry,
    cfg: OperatorConfig,
    api: KubeApi,
    settings_box: list[kopf.OperatorSettings],
) -> None:
    """Start-up (kopf's settings, kept for the API client), login and cleanup."""

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


def _register_kbsconfig(
    registry: kopf.OperatorRegistry, cfg: OperatorConfig, reconciler: Reconciler
) -> None:
    """The KbsConfig's own handlers: reconcile on resume/create/update, resync, finalize."""

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


def _register_reference_watches(
    registry: kopf.OperatorRegistry, cfg: OperatorConfig, reconciler: Reconciler
) -> None:
    """ConfigMap and Secret events re-reconcile every KbsConfig naming the object."""

    # Every event type counts, re-listings (type None) too: a change made while a watch was
    # down only shows up there. Content already acted upon is skipped; a deletion never is.
    async def on_referenced(
        ref: Ref, body: kopf.Body, type: str | None, namespace: str | None, logger: AnyLogger
    ) -> None:
        if namespace != cfg.namespace:  # references resolve in the operator's namespace only
            return
        digest = None if type == "DELETED" else config_hash({ref: body})
        await reconciler.reconcile_referencing(ref, digest, cfg.namespace, logger)

    def watching(kind: str) -> Callable[..., Awaitable[None]]:
        async def referenced_event(
            body: kopf.Body,
            name: str,
            namespace: str | None,
            type: str | None,
            logger: AnyLogger,
            **_: Any,
        ) -> None:
            await on_referenced(Ref(kind, name), body, type, namespace, logger)

        return referenced_event

    for kind, plural, handler_id in (
        ("ConfigMap", "configmaps", "configmap-watch"),
        ("Secret", "secrets", "secret-watch"),
    ):
        kopf.on.event("v1", plural, id=handler_id, registry=registry)(watching(kind))


def _register_deployment_watch(
    registry: kopf.OperatorRegistry, cfg: OperatorConfig, reconciler: Reconciler
) -> None:
    """The rendered Deployment's events: recreate it when deleted, else refresh its owners'
    readiness."""

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
