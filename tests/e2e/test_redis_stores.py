"""Redis client, session store and key-value store against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.support.receivers import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisServer,
    make_redis_tls,
    redis_server,
)
from trustee.protocol.rcar import Session
from trustee.redis.client import RedisClient, RedisError, RedisUnavailable
from trustee.storage.kv import NS_KBS, NS_REPOSITORY, StorageError
from trustee.storage.redis_kv import MAX_VALUE_BYTES, RedisKvStore
from trustee.storage.redis_sessions import RedisSessionStore
from trustee.storage.sessions import SessionStoreUnavailable

pytestmark = pytest.mark.needs_redis

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server and redis-cli are not installed",
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are not installed")
    with redis_server(tmp_path) as running:
        yield running


@pytest.fixture
async def client(server: RedisServer) -> AsyncIterator[RedisClient]:
    redis = RedisClient(server.url(2), timeout=1.0, pool_size=4)
    yield redis
    await redis.aclose()


def make_session(sid: str = "s-1", lifetime: float = 300.0, **changes: object) -> Session:
    session = Session(
        id=sid,
        version="0.4.0",
        tee="sample",
        nonce="bm9uY2U",
        expires_at=time.time() + lifetime,
        generation="0.2.0",
    )
    for name, value in changes.items():
        setattr(session, name, value)
    return session


# --------------------------------------------------------------------------- client


@needs_redis
async def test_client_commands_pipeline_and_errors(
    client: RedisClient, server: RedisServer
) -> None:
    assert await client.execute("SET", "k", b"\x00\xffv") == b"OK"
    assert await client.execute("GET", "k") == b"\x00\xffv"
    assert server.cli("EXISTS", "k", db=2) == ["1"]
    assert await client.pipeline([("INCR", "n"), ("INCR", "n"), ("LRANGE", "none", 0, -1)]) == [
        1,
        2,
        [],
    ]
    with pytest.raises(RedisError, match=r"^HGET refused: WRONGTYPE") as info:
        await client.pipeline([("INCR", "n"), ("HGET", "k", "f")])
    assert info.value.command == "HGET"
    # The error was read in full, so the connection is still in step.
    assert await client.execute("GET", "n") == b"3"


@needs_redis
async def test_client_auth_from_url(tmp_path: Path) -> None:
    with redis_server(tmp_path, password="s3cret") as server:
        good = RedisClient(server.url(1), timeout=1.0)
        assert await good.execute("SET", "a", "1") == b"OK"
        assert server.cli("GET", "a", db=1) == ["1"]
        await good.aclose()
        bad = RedisClient(f"redis://:nope@127.0.0.1:{server.port}/0", timeout=1.0)
        with pytest.raises(RedisError, match=r"^AUTH refused: WRONGPASS"):
            await bad.execute("PING")


@needs_redis
async def test_client_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = make_redis_tls(tmp_path / "tls")
    with redis_server(tmp_path, password="s3cret", tls=tls) as server:
        client = RedisClient(server.url(1), timeout=2.0, ca_file=str(tls.ca))
        assert await client.execute("SET", "k", "over tls") == b"OK"
        assert await client.pipeline([("GET", "k"), ("DBSIZE",)]) == [b"over tls", 1]
        assert server.cli("GET", "k", db=1) == ["over tls"]
        store = RedisSessionStore(client)
        await store.insert(make_session("tls-1"))
        got = await store.get("tls-1")
        assert got is not None and got.id == "tls-1"
        await client.aclose()

        other_ca = str(make_redis_tls(tmp_path / "other", "other").ca)
        untrusting = RedisClient(server.url(1), timeout=2.0, ca_file=other_ca)
        with pytest.raises(
            RedisUnavailable,
            match=r"^rediss://127\.0\.0\.1:\d+/1: connecting for GET failed: TLS handshake "
            r"with 127\.0\.0\.1:\d+ failed: .*CERTIFICATE_VERIFY_FAILED",
        ):
            await untrusting.execute("GET", "k")
        # The system trust store (no ca_file) does not know the test CA either.
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(RedisUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await RedisClient(server.url(1), timeout=2.0).execute("GET", "k")
        # The certificate names 127.0.0.1; a URL naming the host otherwise is refused.
        by_name = RedisClient(
            f"rediss://:s3cret@localhost:{server.port}/1", timeout=2.0, ca_file=str(tls.ca)
        )
        with pytest.raises(RedisUnavailable, match=r"(?i)hostname mismatch|doesn't match"):
            await by_name.execute("GET", "k")
        # A restarted server is reconnected to, over TLS again.
        again = RedisClient(server.url(1), timeout=2.0, ca_file=str(tls.ca))
        assert await again.execute("GET", "k") == b"over tls"
        server.stop()
        server.start()
        assert await again.execute("SET", "k", "after restart") == b"OK"
        await again.aclose()
        # Plain RESP to a TLS-only port fails fast instead of hanging.
        plain = RedisClient(f"redis://:s3cret@127.0.0.1:{server.port}/1", timeout=2.0)
        with trio.fail_after(5), pytest.raises(RedisUnavailable):
            await plain.execute("GET", "k")


async def test_client_rejects_bad_urls_and_settings() -> None:
    with pytest.raises(ValueError, match="is not a redis:// or rediss://host:port/db URL"):
        RedisClient("http://h:1/0")
    assert RedisClient("rediss://h:1/0").name == "rediss://h:1/0"
    with pytest.raises(ValueError, match="timeout"):
        RedisClient("redis://h:1/0", timeout=0)
    with pytest.raises(ValueError, match="pool_size"):
        RedisClient("redis://h:1/0", pool_size=0)


async def test_client_silent_server_times_out_without_hanging() -> None:
    accepted: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        redis = RedisClient(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        start = trio.current_time()
        with pytest.raises(RedisUnavailable, match=r"GET got no reply within 0\.3s"):
            await redis.execute("GET", "k")
        assert trio.current_time() - start < 2
        await redis.aclose()
        nursery.cancel_scope.cancel()
    assert accepted


async def test_client_nothing_listening_fails_fast() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis = RedisClient(f"redis://127.0.0.1:{port}/0", timeout=5.0)
    start = trio.current_time()
    with pytest.raises(RedisUnavailable, match=rf"redis://127\.0\.0\.1:{port}/0: connecting"):
        await redis.execute("PING")
    assert trio.current_time() - start < 2


# --------------------------------------------------------------------------- sessions


@needs_redis
async def test_session_round_trip_keeps_every_field(client: RedisClient) -> None:
    store = RedisSessionStore(client)
    session = make_session(
        token="tok",
        attested_claims={"tee": "sample", "n": [1, {"x": None}]},
        attested_claims_json='{"tee":"sample"}',
    )
    await store.insert(session)
    assert await store.get("s-1") == session
    fresh = make_session("s-2")
    await store.insert(fresh)
    assert await store.get("s-2") == fresh
    assert await store.get("unknown") is None
    assert await store.get("") is None
    assert await store.purge_expired() == 0


@needs_redis
async def test_session_ttl_follows_expiry_and_update_keeps_it(
    client: RedisClient, server: RedisServer
) -> None:
    store = RedisSessionStore(client)
    session = make_session(lifetime=2.0)
    await store.insert(session)
    pttl = int(server.cli("PTTL", "trustee:session:s-1", db=2)[0])
    assert 0 < pttl <= 2000
    session.token = "t"
    await store.update(session)
    assert 0 < int(server.cli("PTTL", "trustee:session:s-1", db=2)[0]) <= pttl
    got = await store.get("s-1")
    assert got is not None and got.token == "t"
    await trio.sleep(max(0.0, session.expires_at - time.time()) + 0.2)
    assert await store.get("s-1") is None
    assert server.cli("EXISTS", "trustee:session:s-1", db=2) == ["0"]
    # An update after expiry does not bring the session back.
    await store.update(session)
    assert server.cli("EXISTS", "trustee:session:s-1", db=2) == ["0"]


@needs_redis
async def test_session_expired_by_our_clock_is_not_returned(client: RedisClient) -> None:
    session = make_session()
    await RedisSessionStore(client).insert(session)
    later = RedisSessionStore(client, clock=lambda: session.expires_at + 1)
    assert await later.get("s-1") is None


@needs_redis
async def test_session_corrupt_value_is_reported(client: RedisClient) -> None:
    store = RedisSessionStore(client)
    await client.execute("SET", "trustee:session:bad", b"{not json")
    with pytest.raises(SessionStoreUnavailable, match=r"session 'bad': stored value is not JSON"):
        await store.get("bad")
    await client.execute("SET", "trustee:session:old", b'{"format":0}')
    with pytest.raises(SessionStoreUnavailable, match=r"stored format 0 is not 1"):
        await store.get("old")


@needs_redis
async def test_set_token_once_under_concurrency(client: RedisClient) -> None:
    store = RedisSessionStore(client)
    await store.insert(make_session())
    results: dict[int, Session | None] = {}

    async def attest(n: int) -> None:
        results[n] = await store.set_token_once(
            "s-1", f"token-{n}", {"caller": n}, f'{{"caller":{n}}}'
        )

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(attest, n)
    tokens = {r.token for r in results.values() if r is not None}
    assert len(results) == 20 and len(tokens) == 1
    (token,) = tokens
    assert token is not None
    winner = int(token.removeprefix("token-"))
    stored = await store.get("s-1")
    assert stored is not None and stored.token == token
    assert stored.attested_claims == {"caller": winner}
    assert stored.attested_claims_json == f'{{"caller":{winner}}}'
    assert all(r == stored for r in results.values())
    assert await store.set_token_once("missing", "t", None, None) is None


@needs_redis
async def test_session_store_outage_and_recovery(server: RedisServer) -> None:
    redis = RedisClient(server.url(), timeout=1.0)
    store = RedisSessionStore(redis)
    await store.insert(make_session())
    server.stop()
    start = trio.current_time()
    with pytest.raises(SessionStoreUnavailable, match=r"session get 's-1': .*connecting"):
        await store.get("s-1")
    with pytest.raises(SessionStoreUnavailable, match=r"session insert 's-2'"):
        await store.insert(make_session("s-2"))
    with pytest.raises(SessionStoreUnavailable, match=r"session set_token_once 's-1'"):
        await store.set_token_once("s-1", "t", None, None)
    assert trio.current_time() - start < 2
    server.start()
    # No persistence: the restart lost the data, but the store works again by itself.
    assert await store.get("s-1") is None
    await store.insert(make_session("s-3"))
    assert await store.get("s-3") is not None
    await redis.aclose()


# --------------------------------------------------------------------------- key-value


@needs_redis
async def test_kv_round_trip_overwrite_list_delete(client: RedisClient) -> None:
    kv = RedisKvStore(client)
    assert await kv.get(NS_KBS, "a/b") is None
    assert await kv.list(NS_KBS) == []
    assert await kv.set(NS_KBS, "a/b", b"\x00one")
    assert await kv.set(NS_KBS, "rvps:///vendor/x:v1", b"two")
    assert await kv.get(NS_KBS, "a/b") == b"\x00one"
    assert await kv.set(NS_KBS, "a/b", b"kept", overwrite=False) is False
    assert await kv.get(NS_KBS, "a/b") == b"\x00one"
    assert await kv.set(NS_KBS, "a/b", b"replaced")
    assert await kv.get(NS_KBS, "a/b") == b"replaced"
    assert await kv.set(NS_KBS, "new", b"n", overwrite=False)
    assert await kv.list(NS_KBS) == ["a/b", "new", "rvps:///vendor/x:v1"]
    assert await kv.list(NS_REPOSITORY) == []
    assert await kv.get(NS_REPOSITORY, "a/b") is None
    assert await kv.delete(NS_KBS, "a/b")
    assert await kv.delete(NS_KBS, "a/b") is False
    assert await kv.list(NS_KBS) == ["new", "rvps:///vendor/x:v1"]
    with pytest.raises(StorageError, match="empty"):
        await kv.set(NS_KBS, "", b"x")
    with pytest.raises(StorageError, match="invalid namespace"):
        await kv.get("a{b", "k")
    with pytest.raises(StorageError, match=rf"exceeds the {MAX_VALUE_BYTES} bytes"):
        await kv.set(NS_KBS, "huge", bytes(MAX_VALUE_BYTES + 1))
    await kv.aclose()
    assert await client.execute("PING") == b"PONG"


@needs_redis
async def test_kv_values_of_several_mib_round_trip(server: RedisServer) -> None:
    client = RedisClient(server.url(), timeout=5.0)
    kv = RedisKvStore(client)
    big = bytes(range(256)) * (12 << 12)  # 12 MiB, far above a RESP line or audit reply
    assert await kv.set(NS_REPOSITORY, "default/big/blob", big)
    assert await kv.get(NS_REPOSITORY, "default/big/blob") == big
    # A client with a smaller read limit refuses at write time what it could not read back.
    small = RedisKvStore(RedisClient(server.url(), timeout=5.0, max_reply_bytes=1 << 20))
    with pytest.raises(StorageError, match=r"exceeds the 1048576 bytes this store can read"):
        await small.set(NS_REPOSITORY, "default/big/other", bytes((1 << 20) + 1))
    await client.aclose()


@needs_redis
async def test_kv_version_counts_changes(client: RedisClient) -> None:
    kv = RedisKvStore(client)
    assert await kv.version(NS_KBS) == 0
    await kv.set(NS_KBS, "k", b"1")
    await kv.set(NS_KBS, "k", b"2")
    assert await kv.version(NS_KBS) == 2
    await kv.set(NS_KBS, "k", b"3", overwrite=False)
    await kv.delete(NS_KBS, "missing")
    assert await kv.version(NS_KBS) == 2
    await kv.delete(NS_KBS, "k")
    assert await kv.version(NS_KBS) == 3
    assert await kv.version(NS_REPOSITORY) == 0


@needs_redis
async def test_kv_scripts_survive_script_flush(client: RedisClient) -> None:
    kv = RedisKvStore(client)
    await kv.set(NS_KBS, "k", b"1")
    await client.execute("SCRIPT", "FLUSH")
    assert await kv.set(NS_KBS, "k2", b"2")
    assert await kv.list(NS_KBS) == ["k", "k2"]


@needs_redis
async def test_kv_outage_names_operation_and_recovers(server: RedisServer) -> None:
    kv = RedisKvStore(RedisClient(server.url(), timeout=1.0), close_client=True)
    await kv.set(NS_KBS, "k", b"v")
    server.stop()
    start = trio.current_time()
    with pytest.raises(StorageError, match=r"^redis get kbs/k: .*connecting"):
        await kv.get(NS_KBS, "k")
    with pytest.raises(StorageError, match=r"^redis set kbs/k: "):
        await kv.set(NS_KBS, "k", b"w")
    with pytest.raises(StorageError, match=r"^redis list kbs: "):
        await kv.list(NS_KBS)
    with pytest.raises(StorageError, match=r"^redis version kbs: "):
        await kv.version(NS_KBS)
    assert trio.current_time() - start < 2
    server.start()
    assert await kv.get(NS_KBS, "k") is None
    assert await kv.set(NS_KBS, "k", b"w")
    assert await kv.list(NS_KBS) == ["k"]
    await kv.aclose()
    with pytest.raises(StorageError, match="client is closed"):
        await kv.get(NS_KBS, "k")
