"""Fan audit events out to sinks without holding up the request that produced them.

Each sink has a bounded queue and one delivery task. An event leaves a queue only after the
sink's `send` returned for the batch holding it (at-least-once), so a failing batch is retried
with bounded exponential backoff rather than lost. A full queue drops the new event and counts
it, except for sinks declared `required`: those make `emit` wait for room up to the sink's
`block_timeout` and then raise AuditRequiredSinkError so the caller fails the request instead of
acting unaudited.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSink, AuditSinkRejected

log = logging.getLogger("trustee.audit")

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
# Used when the dispatcher is cancelled from outside rather than closed with a deadline.
_SINK_CLOSE_GRACE = 1.0


class AuditRequiredSinkError(Exception):
    """A `required` sink had no room for an event within its block_timeout."""


@dataclass(frozen=True)
class SinkSpec:
    sink: AuditSink
    required: bool = False
    queue_size: int = 10000
    block_timeout: float = 1.0
    batch_size: int = 100

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"SinkSpec.queue_size: {self.queue_size} is not at least 1")
        if self.batch_size < 1:
            raise ValueError(f"SinkSpec.batch_size: {self.batch_size} is not at least 1")
        if not (math.isfinite(self.block_timeout) and self.block_timeout >= 0):
            raise ValueError(
                f"SinkSpec.block_timeout: {self.block_timeout} is not a finite number >= 0"
            )


@dataclass
class _SinkState:
    spec: SinkSpec
    name: str
    queue: deque[AuditEvent] = field(default_factory=deque)
    has_items: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    has_room: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)
    queued: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    rejected: int = 0
    # Events at the head of the queue still to be sent one at a time, to find which of a
    # refused batch the receiver objects to.
    singly: int = 0

    def full(self) -> bool:
        return len(self.queue) >= self.spec.queue_size

    def put(self, event: AuditEvent) -> None:
        self.queue.append(event)
        self.queued += 1
        self.has_items.unpark_all()

    def drop_pending(self) -> None:
        self.dropped += len(self.queue)
        self.queue.clear()
        self.has_room.unpark_all()


def _unserialisable(event: AuditEvent) -> str | None:
    try:
        event.canonical_cloudevent  # noqa: B018 - computed (and kept) to find it unserialisable
    except ValueError as exc:
        return f"not JSON-serialisable ({type(exc).__name__}: {exc})"
    return None


def _unique_names(specs: Sequence[SinkSpec]) -> list[str]:
    # Two file sinks may share a path by mistake; stats must still keep them apart.
    seen: dict[str, int] = {}
    names = []
    for spec in specs:
        base = str(getattr(spec.sink, "name", type(spec.sink).__name__))
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


class AuditDispatcher:
    def __init__(self, specs: list[SinkSpec]) -> None:
        self._states = [
            _SinkState(spec, name) for spec, name in zip(specs, _unique_names(specs), strict=True)
        ]
        self._required = [s for s in self._states if s.spec.required]
        self._closing = False
        self._started = False
        self._stopped = trio.Event()
        self._sinks_closed = False
        self._run_scope: trio.CancelScope | None = None
        self._close_deadline: float | None = None

    @property
    def closing(self) -> bool:
        return self._closing

    async def emit(self, event: AuditEvent) -> None:
        """Queue `event` for every sink; raises only AuditRequiredSinkError."""
        if self._closing:
            for state in self._states:
                state.dropped += 1
            if self._required:
                raise AuditRequiredSinkError(
                    f"audit: required sink {self._required[0].name} is shut down; "
                    f"event {event.type} {event.id} was not recorded"
                )
            return
        problem = _unserialisable(event)
        if problem is not None:
            # Checked here, once, because an event no sink can encode would otherwise sit at
            # the head of every queue and be retried forever, starving the events behind it.
            for state in self._states:
                state.dropped += 1
            log.error("audit: event %s %s dropped: %s", event.type, event.id, problem)
            if self._required:
                raise AuditRequiredSinkError(
                    f"audit: event {event.type} {event.id} cannot be recorded: {problem}"
                )
            return
        if any(state.full() for state in self._required):
            await self._wait_for_required_room(event)
        # No checkpoint from here on, so the room found above is still there and the event
        # reaches every sink or (for required sinks) none.
        for state in self._states:
            if state.full():
                state.dropped += 1
            else:
                state.put(event)

    def _first_full_required(self) -> _SinkState | None:
        return next((s for s in self._required if s.full()), None)

    async def _wait_for_required_room(self, event: AuditEvent) -> None:
        # One deadline for the whole wait: the tightest block_timeout among required sinks.
        limit = min(s.spec.block_timeout for s in self._required)
        blocked = self._first_full_required()
        with trio.move_on_after(limit):
            while blocked is not None and not self._closing:
                await blocked.has_room.park()
                blocked = self._first_full_required()
        blocked = self._first_full_required()
        if blocked is None and not self._closing:
            return
        for state in self._states:
            state.dropped += 1
        if blocked is None:
            raise AuditRequiredSinkError(
                f"audit: shut down while event {event.type} {event.id} waited for a required "
                "sink; the event was not recorded"
            )
        raise AuditRequiredSinkError(
            f"audit: required sink {blocked.name} had no room for event {event.type} "
            f"{event.id} within {limit:g} s (queue_size {blocked.spec.queue_size}, "
            f"{len(blocked.queue)} pending); the event was not recorded"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until closed (queues drained) or cancelled; then close the sinks."""
        if self._started:
            raise RuntimeError("AuditDispatcher.run: already started")
        self._started = True
        try:
            with trio.CancelScope() as scope:
                self._run_scope = scope
                async with trio.open_nursery() as nursery:
                    for state in self._states:
                        nursery.start_soon(self._pump, state)
                    task_status.started()
        finally:
            await self._shutdown_sinks()
            self._stopped.set()

    async def _pump(self, state: _SinkState) -> None:
        backoff = BACKOFF_INITIAL
        while True:
            while not state.queue:
                if self._closing:
                    return
                await state.has_items.park()
            size = 1 if state.singly else state.spec.batch_size
            batch = list(islice(state.queue, size))
            try:
                await state.spec.sink.send(batch)
            except AuditSinkRejected as exc:
                self._rejected(state, batch, exc)
                backoff = BACKOFF_INITIAL
                continue
            except Exception as exc:  # a faulty sink must never take the dispatcher down
                state.failed += 1
                log.warning(
                    "audit sink %s: delivery of %d event(s) failed, retrying in %.1f s: %s",
                    state.name,
                    len(batch),
                    backoff,
                    exc,
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_INITIAL
            self._delivered(state, len(batch))

    @staticmethod
    def _take(state: _SinkState, count: int) -> list[AuditEvent]:
        """Removes the `count` events at the head of the queue, done with either way."""
        taken = [state.queue.popleft() for _ in range(count)]
        state.singly = max(0, state.singly - count)
        state.has_room.unpark_all()
        return taken

    def _delivered(self, state: _SinkState, count: int) -> None:
        self._take(state, count)
        state.delivered += count

    def _rejected(self, state: _SinkState, batch: list[AuditEvent], exc: AuditSinkRejected) -> None:
        delivered = max(0, min(exc.delivered, len(batch)))
        refused = max(1, min(exc.refused, len(batch) - delivered))
        self._delivered(state, delivered)
        if refused > 1:
            # One bad event must not cost its neighbours: retry these one by one.
            state.singly = refused
            log.warning(
                "audit sink %s: the receiver refused a batch of %d event(s); sending them one "
                "by one: %s",
                state.name,
                refused,
                exc,
            )
            return
        (event,) = self._take(state, 1)
        state.rejected += 1
        # Retrying cannot help; the event stays in the other sinks and in this log line.
        log.error(
            "audit sink %s: event %s %s refused for good, not retried: %s",
            state.name,
            event.type,
            event.id,
            exc,
        )

    async def _shutdown_sinks(self) -> None:
        if self._sinks_closed:
            return
        self._sinks_closed = True
        self._closing = True
        for state in self._states:
            if state.queue:
                log.warning(
                    "audit sink %s: %d event(s) undelivered at shutdown",
                    state.name,
                    len(state.queue),
                )
            state.drop_pending()
        now = trio.current_time()
        deadline = self._close_deadline if self._close_deadline is not None else now
        deadline = max(deadline, now + (0.05 if self._close_deadline else _SINK_CLOSE_GRACE))
        with trio.CancelScope(shield=True, deadline=deadline):
            for state in self._states:
                try:
                    await state.spec.sink.aclose()
                except Exception as exc:
                    log.warning("audit sink %s: close failed: %s", state.name, exc)
        for state in self._states:
            state.has_room.unpark_all()

    async def aclose(self, timeout: float) -> None:
        """Stop accepting events, flush the queues for up to `timeout` seconds, then give up
        (counting what is left as dropped) and close the sinks."""
        self._close_deadline = trio.current_time() + max(timeout, 0.0)
        self._closing = True
        for state in self._states:
            state.has_items.unpark_all()
            state.has_room.unpark_all()
        if not self._started:
            await self._shutdown_sinks()
            return
        with trio.move_on_at(self._close_deadline):
            await self._stopped.wait()
        if not self._stopped.is_set():
            if self._run_scope is not None:
                self._run_scope.cancel()
            await self._stopped.wait()

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            state.name: {
                "queued": state.queued,
                "delivered": state.delivered,
                "dropped": state.dropped,
                "failed": state.failed,
                "rejected": state.rejected,
                "pending": len(state.queue),
            }
            for state in self._states
        }


class NullDispatcher:
    """The dispatcher when no sinks are configured: emitting costs one attribute lookup."""

    def __init__(self) -> None:
        self._closed = trio.Event()

    async def emit(self, event: AuditEvent) -> None:
        return None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._closed.wait()

    async def aclose(self, timeout: float) -> None:
        self._closed.set()

    def stats(self) -> dict[str, dict[str, int]]:
        return {}
