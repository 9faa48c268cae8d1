from __future__ import annotations

from trustee.protocol import rcar
from trustee.storage.sessions import MemorySessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(now: float) -> rcar.Session:
    req = rcar.AuthRequest(version="0.4.0", tee="sample")
    return rcar.new_session(req, timeout_min=5, now=now)


async def test_session_round_trip_and_expiry_is_fixed_at_auth() -> None:
    clock = Clock()
    store = MemorySessionStore(clock)
    session = _session(clock.now)
    await store.insert(session)
    assert await store.get(session.id) is session
    session.token = "t"
    await store.update(session)
    clock.now += 299  # attesting does not extend the lifetime
    assert await store.get(session.id) is session
    clock.now += 1
    assert await store.get(session.id) is None
    assert len(store) == 0  # reading an expired session deletes it


async def test_purge_removes_only_expired() -> None:
    clock = Clock()
    store = MemorySessionStore(clock)
    old = _session(clock.now - 400)
    live = _session(clock.now)
    await store.insert(old)
    await store.insert(live)
    assert await store.purge_expired() == 1
    assert await store.get(live.id) is live
    assert await store.get("unknown") is None
