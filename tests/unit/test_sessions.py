from __future__ import annotations

import logging

import pytest

from trustee.protocol import rcar
from trustee.storage import sessions
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


async def test_full_store_evicts_the_least_recently_used(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    store = MemorySessionStore(clock, max_sessions=3)
    first, second, third = (_session(clock.now) for _ in range(3))
    for session in (first, second, third):
        await store.insert(session)
    assert await store.get(first.id) is first  # now the most recently used
    caplog.set_level(logging.WARNING, logger="trustee.storage.sessions")
    fourth = _session(clock.now)
    await store.insert(fourth)
    assert len(store) == 3 and store.evicted == 1
    assert await store.get(second.id) is None
    for live in (first, third, fourth):
        assert await store.get(live.id) is live
    warnings = [r for r in caplog.records if "session store full" in r.getMessage()]
    assert len(warnings) == 1 and "evicted 1 " in warnings[0].getMessage()

    # A flood evicts on every insert but warns once per interval, with the count since.
    for _ in range(50):
        await store.insert(_session(clock.now))
    assert len(store) == 3 and store.evicted == 51
    assert len([r for r in caplog.records if "session store full" in r.getMessage()]) == 1
    clock.now += sessions.EVICTION_WARNING_INTERVAL_S
    await store.insert(_session(clock.now))
    warnings = [r for r in caplog.records if "session store full" in r.getMessage()]
    assert len(warnings) == 2 and "evicted 51 " in warnings[1].getMessage()


async def test_byte_budget_counts_tokens() -> None:
    clock = Clock()
    fresh = [_session(clock.now) for _ in range(3)]
    bare = sessions.session_footprint(fresh[0])
    # Room for three sessions of which two hold a token: not quite.
    budget = 3 * bare + 2 * 3 * 2000 - 1
    store = MemorySessionStore(clock, max_bytes=budget)
    for session in fresh:
        await store.insert(session)
    assert await store.set_token_once(fresh[0].id, "t" * 2000, {}, "{}") is fresh[0]
    assert len(store) == 3
    # The token made fresh[0] the most recent; the next attested session pushes out the
    # oldest untouched ones until the estimate fits again.
    assert await store.set_token_once(fresh[1].id, "t" * 2000, {}, "{}") is fresh[1]
    assert await store.get(fresh[2].id) is None
    assert await store.get(fresh[0].id) is fresh[0]
    assert await store.get(fresh[1].id) is fresh[1]
    # One session larger than the whole budget is still kept for its guest.
    await store.insert(huge := _session(clock.now))
    await store.set_token_once(huge.id, "t" * budget, None, None)
    assert await store.get(huge.id) is huge and len(store) == 1
