"""An in-memory sink for tests: records delivered events and can be told to fail."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSinkError, AuditSinkRejected


class MemorySink:
    def __init__(
        self,
        name: str = "memory",
        *,
        fail_times: int = 0,
        delay: float = 0.0,
        refuse_ids: Collection[str] = (),
    ) -> None:
        self.name = name
        # Like a batch receiver that refuses a whole batch holding one event it objects to.
        self.refuse_ids = frozenset(refuse_ids)
        self.events: list[AuditEvent] = []
        self.batches: list[list[AuditEvent]] = []
        self.fail_times = fail_times
        self.delay = delay
        self.attempts = 0
        self.closed = False

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> MemorySink:
        name = table.get("name", "memory")
        if not isinstance(name, str):
            raise ValueError(f"{key}.name: {name!r} is not a string")
        return cls(name)

    async def send(self, events: Sequence[AuditEvent]) -> None:
        self.attempts += 1
        if self.delay:
            await trio.sleep(self.delay)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise AuditSinkError(f"{self.name}: told to fail ({self.fail_times} more to go)")
        refused = [e.id for e in events if e.id in self.refuse_ids]
        if refused:
            raise AuditSinkRejected(
                f"{self.name}: told to refuse {', '.join(refused)}",
                delivered=0,
                refused=len(events),
            )
        self.batches.append(list(events))
        self.events.extend(events)

    async def aclose(self) -> None:
        self.closed = True
