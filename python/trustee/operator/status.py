"""The KbsConfig status the operator writes, and the pure comparisons it decides by."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any

from trustee.operator.kube import JSON
from trustee.operator.render import (
    DEPLOYMENT_NAME,
    Ref,
)

CONDITION_READY = "Ready"
REASON_MISSING = "MissingReference"
REASON_INVALID = "InvalidSpec"
REASON_NOT_READY = "DeploymentNotReady"
REASON_READY = "DeploymentReady"
REASON_NO_DEPLOYMENT = "DeploymentMissing"


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
