"""Admission and time limits of client connections: a per-worker cap, idle connections given
up first, idle and stalled connections closed.

Sans-IO bookkeeping only (no sockets, no clock of its own): the serving loop asks `admit` for
every accepted connection, marks its `Slot` busy or idle and sending or not, and calls `sweep`
with the time now and then. When the cap is reached, the connection idle the longest
(keep-alive, or not yet sent a whole request) is asked to close so a new client can be served;
when every connection is busy, the new one is shed with a 503. One sweep per second replaces a
timer task per request: starting and cancelling a task for every answer cost more than the
request itself.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

from trustee.config.errors import ConfigError

# File descriptors kept back from the cap for stores, audit sinks, log files and the like.
RESERVED_FDS = 64
DEFAULT_MAX_CONNECTIONS = 4096
ENV_MAX_CONNECTIONS = "TRUSTEE_MAX_CONNECTIONS"


def default_max_connections() -> int:
    """The cap per worker: TRUSTEE_MAX_CONNECTIONS, else what the open-file limit leaves room for
    (at most 4096). A cap above the limit would let `accept` fail with EMFILE instead."""
    raw = os.environ.get(ENV_MAX_CONNECTIONS)
    if raw is not None:
        text = raw.strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1_000_000:
            raise ConfigError(
                ENV_MAX_CONNECTIONS, f"{raw!r}: expected a whole number from 1 to 1000000"
            )
        return int(text)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(8, min(DEFAULT_MAX_CONNECTIONS, soft - RESERVED_FDS))


@dataclass
class ConnectionStats:
    """Per-process counters, read by /metrics at scrape time."""

    open: int = 0
    accepted: int = 0
    failed: int = 0  # a connection's task ended with an unexpected exception (contained)
    shed: int = 0  # refused with 503: every slot busy
    idle_closed: int = 0  # idle connections closed: keep-alive timeout, or to make room
    stalled: int = 0  # closed because the client stopped reading an answer


STATS = ConnectionStats()


@dataclass(eq=False)
class Slot:
    """One admitted connection. The connection sets `close` (ends it when idle: cancels its
    task) and `abort` (ends it at once, even in the middle of a write: closes its socket)."""

    serial: int
    idle: bool = True
    idle_since: float = 0.0
    sending_since: float | None = None
    close: Callable[[], None] | None = field(default=None, repr=False)
    abort: Callable[[], None] | None = field(default=None, repr=False)
    closing: bool = False


class Admission:
    def __init__(
        self,
        max_connections: int,
        *,
        keep_alive: float,
        send_timeout: float,
        stats: ConnectionStats = STATS,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keep_alive = keep_alive
        self.send_timeout = send_timeout
        self.stats = stats
        self._slots: dict[int, Slot] = {}
        self._serial = 0

    def __len__(self) -> int:
        return len(self._slots)

    def admit(self, now: float) -> Slot | None:
        """A slot for a new connection, or None when it must be shed."""
        if len(self._slots) >= self.max_connections and not self._make_room():
            self.stats.shed += 1
            return None
        self._serial += 1
        slot = Slot(self._serial, idle=True, idle_since=now)
        self._slots[slot.serial] = slot
        self.stats.accepted += 1
        self.stats.open = len(self._slots)
        return slot

    def _make_room(self) -> bool:
        candidates = [
            s for s in self._slots.values() if s.idle and not s.closing and s.close is not None
        ]
        if not candidates:
            return False
        # The closing slot still holds its socket for a moment; the reserve absorbs that.
        self._close(min(candidates, key=lambda s: (s.idle_since, s.serial)))
        return True

    def _close(self, slot: Slot) -> None:
        assert slot.close is not None
        slot.closing = True
        self.stats.idle_closed += 1
        slot.close()

    def sweep(self, now: float) -> None:
        """Close connections idle longer than the keep-alive timeout and abort those whose
        client has not taken an answer for longer than the send timeout."""
        for slot in list(self._slots.values()):
            if slot.closing:
                continue
            if slot.idle and slot.close is not None and now - slot.idle_since > self.keep_alive:
                self._close(slot)
            elif (
                slot.sending_since is not None
                and slot.abort is not None
                and now - slot.sending_since > self.send_timeout
            ):
                slot.closing = True
                self.stats.stalled += 1
                slot.abort()

    def close_idle(self) -> None:
        """Shutting down: idle connections have nothing left to wait for."""
        for slot in list(self._slots.values()):
            if slot.idle and not slot.closing and slot.close is not None:
                self._close(slot)

    @staticmethod
    def busy(slot: Slot) -> None:
        slot.idle = False

    @staticmethod
    def idle(slot: Slot, now: float) -> None:
        if not slot.idle:
            slot.idle = True
            slot.idle_since = now

    def release(self, slot: Slot) -> None:
        self._slots.pop(slot.serial, None)
        self.stats.open = len(self._slots)
