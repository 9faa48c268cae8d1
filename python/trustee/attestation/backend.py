"""What the KBS asks of an Attestation Service, whichever runs it: the built-in one in this
process, or a standalone one reached over REST or gRPC. The KBS core depends on this protocol
only; the assembly decides which implementation it gets.

Failures keep one shape across implementations: `evaluate` raises AttestationFailure (its
reason names what failed, the AS's address included for a remote one), the admin calls raise
PolicyRefused or RvpsError, and a remote AS that cannot be reached (or answers too late) is the
cause `BackendUnavailable` behind them, so the guest is told the AS is unavailable and the log
and audit trail get where and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from trustee.policy.engine import CompiledPolicy
from trustee.protocol.rcar import EvidenceRequest


class AttestationFailure(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BackendUnavailable(Exception):
    """A remote AS did not answer (down, unreachable, slower than the configured timeout)."""


class BackendRefused(Exception):
    """A remote AS answered with a refusal; the text is what it said."""


class PolicyRefused(Exception):
    """An attestation policy was not stored; the text says why."""


@dataclass
class Appraised:
    token: str
    claims: dict[str, Any]
    claims_json: str  # the token payload's text


class AttestationBackend(Protocol):
    @property
    def where(self) -> str:
        """Which AS this is, for logs and readiness ("built-in", or the remote address)."""
        ...

    @property
    def signer_fixed(self) -> bool:
        """Whether every token comes from one key held for the life of this process (the
        built-in AS): then one verdict of the token verifier on it holds for all of them, and
        a stateless session's token can be re-signed from its claims."""
        ...

    async def evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> Appraised:
        """Verify the evidence and appraise it; AttestationFailure says why not."""
        ...

    def reissue(self, claims_json: str) -> str | None:
        """A fresh token over claims this AS issued, or None when it cannot sign here."""
        ...

    async def set_policy(self, policy_id: str, text: str) -> None:
        """Store an attestation policy (Rego text); PolicyRefused says why not."""
        ...

    async def register_reference_value(self, message: bytes) -> None:
        """Register an RVPS provenance message; RvpsError says why not."""
        ...

    async def query_reference_value(self, rv_id: str) -> Any | None:
        """The reference value stored under `rv_id`, None when there is none; RvpsError."""
        ...

    async def stored_policy(self, policy_id: str) -> CompiledPolicy | None:
        """The stored attestation policy for explanations; None when the AS keeps its
        policies out of reach (a remote AS). Raises PolicyStoreError when it is missing."""
        ...

    async def reference_values(self) -> Mapping[str, str] | None:
        """id → JSON text of the reference values policies see, when they are at hand."""
        ...

    async def unready(self) -> str | None:
        """Why the AS cannot serve now (readiness), or None when it can."""
        ...
