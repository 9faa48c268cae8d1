"""What the attestation service reports to, as it sees it: a few metrics and audit events.

The server hands its own metrics and audit dispatcher in when it builds the service; used
alone (tests, `trustee verify`), the service reports to nothing.
"""

from __future__ import annotations

from typing import Protocol

from trustee.audit.event import AuditEvent


class VerifierMetrics(Protocol):
    def verifier_time(self, tee: str, seconds: float) -> None: ...

    def collateral_fetch(self, tee: str, outcome: str) -> None: ...


class EventSink(Protocol):
    async def emit(self, event: AuditEvent) -> None: ...


class NoMetrics:
    def verifier_time(self, tee: str, seconds: float) -> None:
        return None

    def collateral_fetch(self, tee: str, outcome: str) -> None:
        return None


class NoEvents:
    async def emit(self, event: AuditEvent) -> None:
        return None
