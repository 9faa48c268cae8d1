"""The attestation events of a standalone Attestation Service: what the KBS's built-in AS emits
for an /attest, without the session (a standalone AS has none; `generation` is null)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from trustee.audit import event as audit
from trustee.audit.dispatcher import AuditDispatcher, AuditRequiredSinkError, NullDispatcher
from trustee.audit.event import AuditEvent
from trustee.kbs.wire import token_id

log = logging.getLogger("trustee.as")


class AuditUnavailable(Exception):
    """A sink declared `required` could not take the event: the decision is not released."""


class AsTrail:
    def __init__(self, dispatcher: AuditDispatcher | NullDispatcher) -> None:
        self._dispatcher = dispatcher
        self.auditing = not isinstance(dispatcher, NullDispatcher)

    async def _emit(self, event: AuditEvent) -> None:
        try:
            await self._dispatcher.emit(event)
        except AuditRequiredSinkError as exc:
            log.error("audit: %s", exc)
            raise AuditUnavailable(str(exc)) from exc

    async def verified(
        self,
        *,
        tee: str,
        evidence_digest: str,
        token: str,
        claims: Mapping[str, Any],
        request_id: str,
    ) -> None:
        """`evidence_digest`: SHA-256 of the request as it arrived (the KBS: its /attest body)."""
        for name, submod in claims.get("submods", {}).items():
            await self._emit(
                audit.attestation_verified(
                    tee=tee,
                    generation=None,
                    evidence_digest=evidence_digest,
                    verifier=f"{name}:{tee}",
                    policy_id=str(submod.get("ear.appraisal-policy-id", "")),
                    ear_status=str(submod.get("ear.status", "")),
                    trust_vector=submod.get("ear.trustworthiness-vector", {}),
                    request_id=request_id,
                )
            )
        exp = claims.get("exp")
        await self._emit(
            audit.token_issued(
                jti=token_id(token) or "",
                exp=exp if isinstance(exp, int) else 0,
                request_id=request_id,
            )
        )

    async def failed(
        self, *, tee: str, evidence_digest: str, policy_id: str | None, reason: str, request_id: str
    ) -> None:
        await self._emit(
            audit.attestation_failed(
                tee=tee,
                generation=None,
                evidence_digest=evidence_digest,
                verifier=tee,
                policy_id=policy_id,
                reason=reason,
                request_id=request_id,
            )
        )
