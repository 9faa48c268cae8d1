"""Admission of client connections: a per-worker cap, idle connections given up first.

Sans-IO bookkeeping only (no sockets here): the serving loop asks `admit` for every accepted
connection and tells `Slot` when the connection turns busy or idle. When the cap is reached, the
connection idle the longest (keep-alive, or not yet sent a full request) is asked to close so a
new client can be served; when every connection is busy, the new one is shed with a 503.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

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
        if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
            raise ValueError(
                f"{ENV_MAX_CONNECTIONS}={raw!r}: expected a whole number from 1 to 1000000"
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
    idle_closed: int = 0  # idle connections closed to make room for a new one


STATS = ConnectionStats()


@dataclass(eq=False)
class Slot:
    """One admitted connection. `close_idle` is set by the connection once it can be asked to
    close; the admission calls it when the slot is chosen to make room."""

    serial: int
    idle: bool = True
    idle_since: int = 0  # admission serial order when the slot last turned idle
    close_idle: Callable[[], None] | None = field(default=None, repr=False)
    closing: bool = False


class Admission:
    def __init__(self, max_connections: int, stats: ConnectionStats = STATS) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.stats = stats
        self._slots: dict[int, Slot] = {}
        self._serial = 0
        self._clock = 0

    def __len__(self) -> int:
        return len(self._slots)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def admit(self) -> Slot | None:
        """A slot for a new connection, or None when it must be shed."""
        if len(self._slots) >= self.max_connections and not self._make_room():
            self.stats.shed += 1
            return None
        self._serial += 1
        slot = Slot(self._serial, idle=True, idle_since=self._tick())
        self._slots[slot.serial] = slot
        self.stats.accepted += 1
        self.stats.open = len(self._slots)
        return slot

    def _make_room(self) -> bool:
        candidates = [
            s for s in self._slots.values() if s.idle and not s.closing and s.close_idle is not None
        ]
        if not candidates:
            return False
        oldest = min(candidates, key=lambda s: s.idle_since)
        oldest.closing = True
        self.stats.idle_closed += 1
        assert oldest.close_idle is not None
        oldest.close_idle()
        # The closing slot still holds its socket for a moment; the reserve absorbs that.
        return True

    def busy(self, slot: Slot) -> None:
        slot.idle = False

    def idle(self, slot: Slot) -> None:
        if not slot.idle:
            slot.idle = True
            slot.idle_since = self._tick()

    def release(self, slot: Slot) -> None:
        self._slots.pop(slot.serial, None)
        self.stats.open = len(self._slots)
