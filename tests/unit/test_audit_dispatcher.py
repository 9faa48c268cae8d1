from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from trustee.audit.dispatcher import (
    AuditDispatcher,
    AuditRequiredSinkError,
    NullDispatcher,
    SinkSpec,
)
from trustee.audit.event import AuditEvent, token_issued
from trustee.audit.memory import MemorySink


def _events(n: int) -> list[AuditEvent]:
    return [token_issued(jti=f"jti-{i}", exp=i) for i in range(n)]


class _BrokenSink:
    """Raises something other than AuditSinkError, as a buggy third-party sink would."""

    name = "broken"

    def __init__(self) -> None:
        self.attempts = 0

    async def send(self, events: Sequence[AuditEvent]) -> None:
        self.attempts += 1
        raise RuntimeError("bug in sink")

    async def aclose(self) -> None:
        raise RuntimeError("bug in close")


async def test_delivers_in_order_and_batches(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink()
    d = AuditDispatcher([SinkSpec(sink, batch_size=3)])
    events = _events(7)
    async with trio.open_nursery() as nursery:
        for e in events:
            await d.emit(e)
        await nursery.start(d.run)
        await d.aclose(5.0)
    assert sink.events == events
    assert [len(b) for b in sink.batches] == [3, 3, 1]
    assert sink.closed
    assert d.stats() == {
        "memory": {
            "queued": 7,
            "delivered": 7,
            "dropped": 0,
            "failed": 0,
            "rejected": 0,
            "pending": 0,
        }
    }


async def test_drop_newest_with_tiny_queue() -> None:
    sink = MemorySink()
    d = AuditDispatcher([SinkSpec(sink, queue_size=2)])
    events = _events(5)
    for e in events:
        await d.emit(e)  # not running yet, so the queue only fills
    assert d.stats()["memory"] == {
        "queued": 2,
        "delivered": 0,
        "dropped": 3,
        "failed": 0,
        "rejected": 0,
        "pending": 2,
    }
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        await d.aclose(5.0)
    assert sink.events == events[:2]


async def test_required_sink_blocks_then_errors(autojump_clock: trio.testing.MockClock) -> None:
    required = MemorySink("audit-store")
    other = MemorySink("other")
    d = AuditDispatcher(
        [SinkSpec(required, required=True, queue_size=1, block_timeout=2.0), SinkSpec(other)]
    )
    first, second = _events(2)
    await d.emit(first)
    start = trio.current_time()
    with pytest.raises(AuditRequiredSinkError, match=r"audit-store.*within 2 s"):
        await d.emit(second)
    assert trio.current_time() - start == pytest.approx(2.0)
    # The refused event reached no sink: the request it describes is failed, not audited.
    assert d.stats()["other"]["queued"] == 1
    assert d.stats()["audit-store"]["dropped"] == 1


async def test_required_sink_unblocks_when_room_appears(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = MemorySink("audit-store", delay=0.5)
    d = AuditDispatcher([SinkSpec(sink, required=True, queue_size=1, block_timeout=2.0)])
    events = _events(3)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        for e in events:
            await d.emit(e)
        await d.aclose(10.0)
    assert sink.events == events


async def test_failing_sink_retried_without_loss(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink(fail_times=4)
    d = AuditDispatcher([SinkSpec(sink, batch_size=10)])
    events = _events(5)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        start = trio.current_time()
        for e in events:
            await d.emit(e)
        while d.stats()["memory"]["delivered"] < 5:
            await trio.sleep(0.01)
        elapsed = trio.current_time() - start
        await d.aclose(1.0)
    assert sink.events == events
    assert sink.attempts == 5
    assert d.stats()["memory"]["failed"] == 4
    # 0.1 + 0.2 + 0.4 + 0.8 of backoff before the fifth attempt
    assert elapsed == pytest.approx(1.5, abs=0.05)


async def test_backoff_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    sink = MemorySink(fail_times=10)
    d = AuditDispatcher([SinkSpec(sink)])
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        await d.emit(_events(1)[0])
        start = trio.current_time()
        while not sink.events:
            await trio.sleep(0.01)
        elapsed = trio.current_time() - start
        await d.aclose(1.0)
    # 0.1 .. 3.2 doubling (6.3 s), then four waits capped at 5 s
    assert elapsed == pytest.approx(6.3 + 4 * 5.0, abs=0.05)


async def test_failing_non_required_sink_never_raises_into_emit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broken = _BrokenSink()
    good = MemorySink()
    d = AuditDispatcher([SinkSpec(broken, queue_size=3), SinkSpec(good)])
    events = _events(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        for e in events:
            await d.emit(e)
            await trio.sleep(1)
        await d.aclose(2.0)
    assert good.events == events
    stats = d.stats()
    assert stats["broken"]["delivered"] == 0
    assert stats["broken"]["failed"] == broken.attempts > 0
    assert stats["broken"]["queued"] + stats["broken"]["dropped"] >= 10
    assert stats["broken"]["pending"] == 0


async def test_aclose_flushes_within_timeout(autojump_clock: trio.testing.MockClock) -> None:
    slow = MemorySink("slow", delay=1.0)
    d = AuditDispatcher([SinkSpec(slow, batch_size=1)])
    events = _events(5)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        for e in events:
            await d.emit(e)
        start = trio.current_time()
        await d.aclose(2.5)
        assert trio.current_time() - start <= 2.6
    assert slow.events == events[:2]
    stats = d.stats()["slow"]
    assert stats["delivered"] == 2
    assert stats["dropped"] == 3
    assert stats["pending"] == 0
    assert slow.closed
    # After close, non-required emits are counted as drops and never raise.
    await d.emit(events[0])
    assert d.stats()["slow"]["dropped"] == 4


async def test_emit_after_close_to_required_sink_raises() -> None:
    d = AuditDispatcher([SinkSpec(MemorySink(), required=True)])
    await d.aclose(0.1)
    with pytest.raises(AuditRequiredSinkError, match="shut down"):
        await d.emit(_events(1)[0])


async def test_external_cancel_still_closes_sinks() -> None:
    sink = MemorySink()
    d = AuditDispatcher([SinkSpec(sink)])
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        nursery.cancel_scope.cancel()
    assert sink.closed


async def test_duplicate_sink_names_kept_apart() -> None:
    d = AuditDispatcher([SinkSpec(MemorySink("x")), SinkSpec(MemorySink("x"))])
    assert sorted(d.stats()) == ["x", "x#2"]


def test_sink_spec_validation() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        SinkSpec(MemorySink(), queue_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        SinkSpec(MemorySink(), batch_size=0)
    with pytest.raises(ValueError, match="block_timeout"):
        SinkSpec(MemorySink(), block_timeout=float("nan"))


async def test_null_dispatcher() -> None:
    d = NullDispatcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        await d.emit(_events(1)[0])
        await d.aclose(1.0)
    assert d.stats() == {}


async def test_unserialisable_event_is_dropped_not_retried_forever() -> None:
    from trustee.audit.event import new_event

    bad = new_event("bad.event", {"value": float("nan")})
    sink = MemorySink()
    d = AuditDispatcher([SinkSpec(sink)])
    await d.emit(bad)
    assert d.stats()["memory"]["dropped"] == 1
    assert d.stats()["memory"]["pending"] == 0
    strict = AuditDispatcher([SinkSpec(MemorySink(), required=True)])
    with pytest.raises(AuditRequiredSinkError, match="not JSON-serialisable"):
        await strict.emit(bad)


async def test_refused_events_are_isolated_and_not_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    events = _events(10)
    bad = {events[3].id, events[7].id}
    sink = MemorySink(refuse_ids=bad)
    d = AuditDispatcher([SinkSpec(sink, batch_size=5)])
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        for e in events:
            await d.emit(e)
        with trio.fail_after(30):
            while d.stats()["memory"]["pending"]:
                await trio.sleep(0.01)
        await d.aclose(1.0)
    # Every other event got through, in order; the two refused ones were dropped once each.
    assert sink.events == [e for e in events if e.id not in bad]
    stats = d.stats()["memory"]
    assert (stats["delivered"], stats["rejected"], stats["failed"]) == (8, 2, 0)
    refusals = [r.getMessage() for r in caplog.records if "refused for good" in r.getMessage()]
    assert len(refusals) == 2 and all(any(i in m for i in bad) for m in refusals)
    # Two refused batches of 5, then each of their events alone: no endless retrying.
    assert sink.attempts == 2 + 10


async def test_after_a_refusal_batches_resume(autojump_clock: trio.testing.MockClock) -> None:
    events = _events(12)
    sink = MemorySink(refuse_ids={events[0].id})
    d = AuditDispatcher([SinkSpec(sink, batch_size=4)])
    for e in events:
        await d.emit(e)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        await d.aclose(10.0)
    assert sink.events == events[1:]
    # One refused batch of 4, its 4 events alone, then full batches again.
    assert [len(b) for b in sink.batches] == [1, 1, 1, 4, 4]
