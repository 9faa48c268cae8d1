"""Where the operator works, which KBS image it deploys, and how it logs in to the API."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import kopf

from trustee.operator.render import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    FINALIZER,
)

RESYNC_INTERVAL = 300.0  # seconds between periodic re-reconciles of every KbsConfig


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
