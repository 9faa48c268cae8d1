"""The audit events of a standalone Attestation Service: the same attestation, token and
policy events the KBS's built-in AS emits, with this service as their CloudEvents source.

A standalone AS knows no session or protocol generation (`generation` is null); the evidence
digest is the SHA-256 of the request body, as the KBS digests its `/attest` body.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from trustee.audit import event as audit
from trustee.audit.dispatcher import AuditDispatcher, AuditRequiredSinkError, NullDispatcher

log = logging.getLogger("trustee.as")

SOURCE = "trustee-py/as"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _submod_tee(submod: Mapping[str, Any], tees: Sequence[str]) -> str:
    """Which request's TEE a submodule's claims came from: its annotated evidence is nested
    under that TEE's name."""
    annotated = submod.get("ear.veraison.annotated-evidence")
    if isinstance(annotated, Mapping):
        for tee in tees:
            if tee in annotated:
                return tee
    return tees[0] if tees else ""


class AsTrail:
    """Audit events for one request; nothing is built when no sink is configured."""

    def __init__(
        self, dispatcher: AuditDispatcher | NullDispatcher, request_id: str, body: bytes
    ) -> None:
        self._dispatcher = dispatcher
        self.auditing = not isinstance(dispatcher, NullDispatcher)
        self.request_id = request_id
        self._body = body

    async def verified(self, tees: Sequence[str], claims: Mapping[str, Any]) -> None:
        if not self.auditing:
            return
        digest = _digest(self._body)
        for name, submod in claims.get("submods", {}).items():
            tee = _submod_tee(submod, tees)
            await self._dispatcher.emit(
                audit.attestation_verified(
                    tee=tee,
                    generation=None,
                    evidence_digest=digest,
                    verifier=f"{name}:{tee}",
                    policy_id=str(submod.get("ear.appraisal-policy-id", "")),
                    ear_status=str(submod.get("ear.status", "")),
                    trust_vector=submod.get("ear.trustworthiness-vector", {}),
                    request_id=self.request_id,
                    event_source=SOURCE,
                )
            )

    async def issued(self, tees: Sequence[str], token: str, claims: Mapping[str, Any]) -> None:
        """A token given out: its appraisal and the token. Raises AuditRequiredSinkError when a
        required sink cannot take them; the caller must then not release the token."""
        await self.verified(tees, claims)
        await self.token_issued(token, claims)

    async def refused(self, tee: str, policy_id: str | None, reason: str) -> None:
        """A refusal is answered whether or not a required sink takes its event: a sink that
        cannot is logged, never turned into a different answer."""
        try:
            await self.failed(tee, policy_id, reason)
        except AuditRequiredSinkError as exc:
            log.error("audit: %s", exc)

    async def failed(self, tee: str, policy_id: str | None, reason: str) -> None:
        if self.auditing:
            await self._dispatcher.emit(
                audit.attestation_failed(
                    tee=tee,
                    generation=None,
                    evidence_digest=_digest(self._body),
                    verifier=tee or None,
                    policy_id=policy_id,
                    reason=reason,
                    request_id=self.request_id,
                    event_source=SOURCE,
                )
            )

    async def token_issued(self, token: str, claims: Mapping[str, Any]) -> None:
        if self.auditing:
            exp = claims.get("exp")
            await self._dispatcher.emit(
                audit.token_issued(
                    # EAR tokens carry no `jti`: the token's digest names it, as in the KBS.
                    jti=_digest(token.encode())[:32],
                    exp=exp if isinstance(exp, int) else 0,
                    request_id=self.request_id,
                    event_source=SOURCE,
                )
            )

    async def policy_changed(self, policy_id: str, text: str) -> None:
        """The policy is stored already: a required sink that cannot take the event is logged,
        the change stands."""
        if not self.auditing:
            return
        event = audit.policy_changed(
            kind="attestation",
            policy_id=policy_id,
            digest=_digest(text.encode()),
            request_id=self.request_id,
            event_source=SOURCE,
        )
        try:
            await self._dispatcher.emit(event)
        except AuditRequiredSinkError as exc:
            log.error("audit: %s", exc)
