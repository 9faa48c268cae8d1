"""Connection admission: the cap, who makes room, and what the sweep closes (sans-IO)."""

from __future__ import annotations

import time

import pytest

from trustee.config.errors import ConfigError
from trustee.http.connections import Admission, ConnectionStats, Slot, default_max_connections


class Probe:
    """Stands in for a connection: records whether it was asked to close or aborted."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.closed = False
        self.aborted = False
        slot.close = self._close
        slot.abort = self._abort

    def _close(self) -> None:
        self.closed = True

    def _abort(self) -> None:
        self.aborted = True


def admission(cap: int = 3) -> tuple[Admission, ConnectionStats]:
    stats = ConnectionStats()
    return Admission(cap, keep_alive=30.0, send_timeout=10.0, stats=stats), stats


def admit(a: Admission, now: float) -> Probe:
    slot = a.admit(now)
    assert slot is not None
    return Probe(slot)


def test_full_admission_closes_the_longest_idle_connection() -> None:
    a, stats = admission()
    first, second, third = admit(a, 1.0), admit(a, 2.0), admit(a, 3.0)
    a.busy(first.slot)
    a.busy(second.slot)
    a.idle(second.slot, 4.0)  # answered, now idle again: idle since 4, after `third`
    assert a.admit(5.0) is not None
    assert (first.closed, second.closed, third.closed) == (False, False, True)
    assert stats.idle_closed == 1


def test_every_slot_busy_sheds() -> None:
    a, stats = admission(cap=2)
    for probe in (admit(a, 0.0), admit(a, 0.0)):
        a.busy(probe.slot)
    assert a.admit(1.0) is None
    assert stats.shed == 1
    assert stats.open == 2


def test_a_closing_slot_is_not_chosen_twice() -> None:
    a, _ = admission(cap=1)
    only = admit(a, 0.0)
    assert a.admit(1.0) is not None  # `only` was asked to close and still holds its socket
    assert only.closed
    assert a.admit(2.0) is None  # the new one has no close hook yet: nothing left to give up


def test_sweep_closes_idle_connections_after_the_keep_alive_timeout() -> None:
    a, stats = admission()
    idle, busy = admit(a, 0.0), admit(a, 0.0)
    a.busy(busy.slot)
    a.sweep(29.0)
    assert not idle.closed
    a.sweep(31.0)
    assert idle.closed and not busy.closed
    a.sweep(62.0)  # asked once, not again
    assert stats.idle_closed == 1
    a.release(idle.slot)
    assert stats.open == 1


def test_sweep_aborts_a_write_the_client_does_not_take() -> None:
    a, stats = admission()
    reader, stalled = admit(a, 0.0), admit(a, 0.0)
    for probe in (reader, stalled):
        a.busy(probe.slot)
    reader.slot.sending_since = 9.5
    stalled.slot.sending_since = 0.5
    a.sweep(11.0)
    assert stalled.aborted and not reader.aborted
    assert stats.stalled == 1


def test_close_idle_at_shutdown_spares_busy_connections() -> None:
    a, _ = admission()
    idle, busy = admit(a, 0.0), admit(a, 0.0)
    a.busy(busy.slot)
    a.close_idle()
    assert idle.closed and not busy.closed


@pytest.mark.parametrize("raw", ["0", "-1", "many", "1.5", "", "\u00b2"])
def test_bad_max_connections_variable_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TRUSTEE_MAX_CONNECTIONS", raw)
    with pytest.raises(ConfigError, match="TRUSTEE_MAX_CONNECTIONS"):
        default_max_connections()


def test_default_cap_leaves_descriptors_in_reserve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTEE_MAX_CONNECTIONS", raising=False)
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = default_max_connections()
    assert cap <= 4096
    if soft != resource.RLIM_INFINITY:
        assert cap <= max(8, soft - 64)


async def test_a_response_head_goes_out_with_its_body() -> None:
    import trio
    from hypercorn.events import RawData

    from trustee.http.serve import _Connection

    sent: list[bytes] = []

    class Stream:
        async def send_all(self, data: bytes) -> None:
            sent.append(bytes(data))

    conn = object.__new__(_Connection)
    conn.stream = Stream()  # type: ignore[assignment]  # all a send needs
    conn.send_lock = trio.Lock()
    conn._slot = Slot(0)
    conn._held = b""
    head = b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\n"
    for data in (head, b"{}", b""):
        await conn.protocol_send(RawData(data=data))
    assert sent == [head + b"{}", b""]
    # A 100 Continue is not held: the client waits for it before it sends the body.
    sent.clear()
    await conn.protocol_send(RawData(data=b"HTTP/1.1 100 \r\n\r\n"))
    assert sent == [b"HTTP/1.1 100 \r\n\r\n"]
    # A head followed directly by its end (HEAD, 204, an error answer) is flushed by it.
    sent.clear()
    for data in (b"HTTP/1.1 204 \r\n\r\n", b""):
        await conn.protocol_send(RawData(data=data))
    assert sent == [b"HTTP/1.1 204 \r\n\r\n"]


def test_response_headers_are_made_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    import hypercorn.config

    from trustee.http import listen

    clock = [1_800_000_000.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    monkeypatch.setattr(hypercorn.config, "time", lambda: clock[0])
    hc = listen.ServerConfig()
    first = hc.response_headers("h11")
    assert (b"date", b"Fri, 15 Jan 2027 08:00:00 GMT") in first
    first.append((b"x-mutated", b"by a caller"))
    clock[0] += 0.5
    assert hc.response_headers("h11") == first[:-1]  # same second: the cached copy
    clock[0] += 1
    assert (b"date", b"Fri, 15 Jan 2027 08:00:01 GMT") in hc.response_headers("h11")
