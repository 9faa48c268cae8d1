"""The audit trail of one request: every event it emits carries the request's id, and each
decision has one keyword-only method, so a call site says what each value is."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from trustee.audit import event as audit
from trustee.audit.event import AuditEvent
from trustee.kbs.wire import Request, digest, token_id
from trustee.protocol import rcar

Emit = Callable[[AuditEvent], Awaitable[None]]


class Trail:
    """Audit events for one request; nothing is built when no sink is configured."""

    def __init__(self, emit: Emit, auditing: bool, request_id: str) -> None:
        self._emit = emit
        self.auditing = auditing
        self._rid = request_id or None

    async def session_created(self, *, session: rcar.Session) -> None:
        if self.auditing:
            await self._emit(
                audit.session_created(session_id=session.id, tee=session.tee, request_id=self._rid)
            )

    async def attestation_verified(
        self, *, session: rcar.Session, body: bytes, claims: Mapping[str, Any]
    ) -> None:
        if not self.auditing:
            return
        for name, submod in claims.get("submods", {}).items():
            await self._emit(
                audit.attestation_verified(
                    tee=session.tee,
                    generation=session.generation,
                    evidence_digest=digest(body),
                    verifier=f"{name}:{session.tee}",
                    policy_id=str(submod.get("ear.appraisal-policy-id", "")),
                    ear_status=str(submod.get("ear.status", "")),
                    trust_vector=submod.get("ear.trustworthiness-vector", {}),
                    request_id=self._rid,
                )
            )

    async def attestation_failed(self, *, session: rcar.Session, body: bytes, reason: str) -> None:
        if self.auditing:
            await self._emit(
                audit.attestation_failed(
                    tee=session.tee,
                    generation=session.generation,
                    evidence_digest=digest(body),
                    verifier=session.tee,
                    policy_id=None,
                    reason=reason,
                    request_id=self._rid,
                )
            )

    async def token_issued(self, *, token: str, claims: Mapping[str, Any]) -> None:
        if self.auditing:
            exp = claims.get("exp")
            expires = exp if isinstance(exp, int) else 0
            await self._emit(
                audit.token_issued(jti=token_id(token) or "", exp=expires, request_id=self._rid)
            )

    async def resource_released(
        self, *, path: str, policy_digest: str, token_ref: str | None
    ) -> None:
        if self.auditing:
            await self._emit(
                audit.resource_released(
                    path=path, policy_digest=policy_digest, jti=token_ref, request_id=self._rid
                )
            )

    async def resource_denied(
        self, *, path: str, policy_digest: str | None, token_ref: str | None, reason: str
    ) -> None:
        if self.auditing:
            await self._emit(
                audit.resource_denied(
                    path=path,
                    policy_digest=policy_digest,
                    jti=token_ref,
                    reason=reason,
                    request_id=self._rid,
                )
            )

    async def admin_changed(self, *, req: Request, identity: str, kind: str) -> None:
        """An admin write; `kind` "attestation" or "resource" (a policy), "reference-value",
        or "admin" (anything else, a plugin's write)."""
        if not self.auditing:
            return
        body_digest = digest(req.body)
        await self._emit(
            audit.admin_change(
                identity=identity, endpoint=req.uri, digest=body_digest, request_id=self._rid
            )
        )
        if kind == "reference-value":
            await self._emit(
                audit.reference_value_changed(
                    name=req.uri.rsplit("/", 1)[-1], digest=body_digest, request_id=self._rid
                )
            )
        elif kind in ("attestation", "resource"):
            await self._emit(
                audit.policy_changed(
                    kind=kind, policy_id=req.uri, digest=body_digest, request_id=self._rid
                )
            )
