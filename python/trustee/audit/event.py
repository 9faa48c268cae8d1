"""Audit events as CloudEvents 1.0, and one constructor per server decision.

The constructors only ever receive digests, identifiers and reasons: an event must be safe to
ship to a third-party collector, so nothing secret (resource bytes, keys, raw tokens) goes in.
Their `event_source` keyword names the emitting component (the CloudEvents `source`).
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trustee import jsonfast

TYPE_PREFIX = "org.trustee-py."
DEFAULT_SOURCE = "trustee-py/kbs"


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (read-only mappings and tuples accepted); ValueError for what
    JSON cannot carry."""
    return jsonfast.canonical(_plain(value))


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(value: Any) -> Any:
    # rfc8785 only accepts dict/list; callers may hand us read-only mappings or tuples.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class AuditEvent:
    id: str
    type: str
    source: str
    time: str
    data: Mapping[str, Any]
    subject: str | None = None
    request_id: str | None = None

    def cloudevent(self) -> dict[str, Any]:
        """Structured-mode CloudEvents 1.0 JSON object (a fresh dict the caller may extend)."""
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": "application/json",
            "data": _plain(self.data),
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.request_id is not None:
            out["requestid"] = self.request_id
        return out

    def canonical_data(self) -> bytes:
        return canonical(self.data)

    @functools.cached_property
    def canonical_cloudevent(self) -> bytes:
        """RFC 8785 bytes of `cloudevent()`, computed once: the dispatcher checks them and
        every sink sends them. Raises ValueError for an event JSON cannot carry."""
        return canonical(self.cloudevent())


def new_event(
    noun_verb: str,
    data: Mapping[str, Any],
    *,
    subject: str | None = None,
    request_id: str | None = None,
    source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    """An event of type `org.trustee-py.<noun_verb>` stamped with a fresh id and the time now."""
    return AuditEvent(
        id=uuid.uuid4().hex,
        type=TYPE_PREFIX + noun_verb,
        source=source,
        time=now_rfc3339(),
        data=dict(data),
        subject=subject,
        request_id=request_id,
    )


def session_created(
    *,
    session_id: str,
    tee: str,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "session.created",
        {"session_id": session_id, "tee": tee},
        subject=session_id,
        request_id=request_id,
        source=event_source,
    )


def attestation_verified(
    *,
    tee: str,
    generation: str | None,
    evidence_digest: str,
    verifier: str,
    policy_id: str,
    ear_status: str,
    trust_vector: Mapping[str, Any],
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "attestation.verified",
        {
            "tee": tee,
            "generation": generation,
            "evidence_digest": evidence_digest,
            "verifier": verifier,
            "policy_id": policy_id,
            "ear_status": ear_status,
            "trust_vector": dict(trust_vector),
        },
        subject=evidence_digest,
        request_id=request_id,
        source=event_source,
    )


def attestation_failed(
    *,
    tee: str,
    generation: str | None,
    evidence_digest: str | None,
    verifier: str | None,
    policy_id: str | None,
    reason: str,
    request_id: str | None = None,
    ear_status: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    """`reason` is the failing check's path (e.g. "tdx.quote.signature"), never evidence bytes."""
    return new_event(
        "attestation.failed",
        {
            "tee": tee,
            "generation": generation,
            "evidence_digest": evidence_digest,
            "verifier": verifier,
            "policy_id": policy_id,
            "ear_status": ear_status,
            "reason": reason,
        },
        subject=evidence_digest,
        request_id=request_id,
        source=event_source,
    )


def token_issued(
    *,
    jti: str,
    exp: int,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "token.issued",
        {"jti": jti, "exp": exp},
        subject=jti,
        request_id=request_id,
        source=event_source,
    )


def resource_released(
    *,
    path: str,
    policy_digest: str,
    jti: str | None,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "resource.released",
        {"path": path, "policy_digest": policy_digest, "jti": jti},
        subject=path,
        request_id=request_id,
        source=event_source,
    )


def resource_denied(
    *,
    path: str,
    policy_digest: str | None,
    jti: str | None,
    reason: str,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "resource.denied",
        {"path": path, "policy_digest": policy_digest, "jti": jti, "reason": reason},
        subject=path,
        request_id=request_id,
        source=event_source,
    )


def admin_change(
    *,
    identity: str,
    endpoint: str,
    digest: str,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    """`digest` is of the submitted body, so the change is provable without storing it."""
    return new_event(
        "admin.changed",
        {"identity": identity, "endpoint": endpoint, "digest": digest},
        subject=endpoint,
        request_id=request_id,
        source=event_source,
    )


def policy_changed(
    *,
    kind: str,
    policy_id: str,
    digest: str,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "policy.changed",
        {"kind": kind, "policy_id": policy_id, "digest": digest},
        subject=policy_id,
        request_id=request_id,
        source=event_source,
    )


def reference_value_changed(
    *,
    name: str,
    digest: str,
    request_id: str | None = None,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "reference-value.changed",
        {"name": name, "digest": digest},
        subject=name,
        request_id=request_id,
        source=event_source,
    )


def collateral_fetched(
    *,
    tee: str,
    key: str,
    source: str,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    """`source` says where the collateral came from (PCS, KDS, a cache, a local file)."""
    return new_event(
        "collateral.fetched",
        {"tee": tee, "key": key, "source": source},
        subject=key,
        source=event_source,
    )


def collateral_expired(
    *,
    tee: str,
    key: str,
    not_after: str,
    event_source: str = DEFAULT_SOURCE,
) -> AuditEvent:
    return new_event(
        "collateral.expired",
        {"tee": tee, "key": key, "not_after": not_after},
        subject=key,
        source=event_source,
    )
