"""The contract between the audit dispatcher and the places events go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from trustee.audit.event import AuditEvent


class AuditSinkError(Exception):
    """A sink could not deliver; the message says which sink, where and why."""


class AuditSinkRejected(AuditSinkError):
    """The receiver answered that it will never take these events (an HTTP 4xx, say):
    retrying cannot help. The first `delivered` events of the batch did go through; the
    `refused` ones after them did not."""

    def __init__(self, message: str, *, delivered: int, refused: int) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.refused = refused


class AuditSink(Protocol):
    name: str

    async def send(self, events: Sequence[AuditEvent]) -> None:
        """Deliver the whole batch, or raise AuditSinkError so the dispatcher retries it
        (AuditSinkRejected when the receiver refused events for good)."""
        ...

    async def aclose(self) -> None: ...


class AuditSinkFactory(Protocol):
    """What registry lookups return: a sink class (or any object) building a sink from config.

    `from_config` gets the sink's whole `[[audit.sinks]]` table and the key naming it
    (`audit.sinks[<index>]`); a bad value is a ValueError("<key>.<name>: why"), or a
    ConfigError as the built-in sinks raise, reading through trustee.config.reader.Table."""

    def from_config(self, table: Mapping[str, Any], key: str) -> AuditSink: ...
