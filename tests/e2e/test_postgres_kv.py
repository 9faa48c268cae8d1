"""PostgresKvStore against a real PostgreSQL server started for this module."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from tests.support.postgres_server import PostgresServer, why_unavailable
from trustee.storage.kv import StorageError

psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) is not installed")

from trustee.storage.postgres_kv import PostgresKvStore  # noqa: E402

_REASON = why_unavailable()
pytestmark = [
    pytest.mark.needs_postgres,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]

_tables = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    srv = PostgresServer()
    try:
        srv.init()
        srv.start()
        yield srv
    finally:
        srv.close()


def _open(server: PostgresServer, *, pool_size: int = 4, timeout: float = 5.0) -> PostgresKvStore:
    # A table per test keeps tests independent while sharing one server.
    return PostgresKvStore(
        host=server.host,
        port=server.port,
        username=server.user,
        password="",
        db=server.db,
        table=f"kv_t{next(_tables)}",
        pool_size=pool_size,
        timeout=timeout,
    )


@pytest.fixture
async def store(server: PostgresServer) -> AsyncIterator[PostgresKvStore]:
    s = _open(server)
    try:
        yield s
    finally:
        await s.aclose()


async def test_round_trip_overwrite_delete_list(store: PostgresKvStore) -> None:
    assert await store.get("repository", "a/b/c") is None
    assert await store.list("repository") == []
    assert await store.set("repository", "a/b/c", b"one")
    assert not await store.set("repository", "a/b/c", b"two", overwrite=False)
    assert await store.get("repository", "a/b/c") == b"one"
    assert await store.set("repository", "a/b/c", b"\x00three\xff")
    assert await store.get("repository", "a/b/c") == b"\x00three\xff"
    assert await store.set("repository", "rvps:///vendor/tdx/mr_td:v1", b"")
    assert await store.get("repository", "rvps:///vendor/tdx/mr_td:v1") == b""
    await store.set("kbs", "a/b/c", b"other namespace")
    assert await store.list("repository") == ["a/b/c", "rvps:///vendor/tdx/mr_td:v1"]
    assert await store.delete("repository", "a/b/c")
    assert not await store.delete("repository", "a/b/c")
    assert await store.list("repository") == ["rvps:///vendor/tdx/mr_td:v1"]
    assert await store.get("kbs", "a/b/c") == b"other namespace"


async def test_invalid_keys_are_refused_with_reason(store: PostgresKvStore) -> None:
    with pytest.raises(StorageError, match="empty"):
        await store.set("repository", "", b"x")
    with pytest.raises(StorageError, match="NUL"):
        await store.set("repository", "a\x00b", b"x")
    with pytest.raises(StorageError, match="table name"):
        PostgresKvStore(host="h", port=1, username="u", password="", db="d", table="x; drop")


async def test_versions_count_committed_writes_only(store: PostgresKvStore) -> None:
    assert await store.version("kbs") == 0
    await store.set("kbs", "k", b"1")
    assert await store.version("kbs") == 1
    assert not await store.set("kbs", "k", b"2", overwrite=False)
    assert not await store.delete("kbs", "missing")
    assert await store.version("kbs") == 1
    await store.set("kbs", "k", b"3")
    assert await store.delete("kbs", "k")
    assert await store.version("kbs") == 3
    assert await store.version("repository") == 0


async def test_concurrent_writers_lose_no_version(server: PostgresServer) -> None:
    # Two stores on one table stand for two replicas contending for the same rows.
    first = _open(server, pool_size=3)
    writers = [first, PostgresKvStore.from_url(server.url(), table=first.table, pool_size=3)]
    per_writer = 15
    try:
        async with trio.open_nursery() as nursery:
            for w, s in enumerate(writers):
                for lane in range(3):

                    async def write(s: PostgresKvStore = s, w: int = w, lane: int = lane) -> None:
                        for i in range(per_writer // 3):
                            await s.set("kbs", f"w{w}/l{lane}/{i}", b"v")
                            await s.set("kbs", "shared", f"{w}-{lane}-{i}".encode())

                    nursery.start_soon(write)
        assert await writers[0].version("kbs") == 2 * 2 * per_writer
        assert len(await writers[1].list("kbs")) == 2 * per_writer + 1
    finally:
        for s in writers:
            await s.aclose()


async def test_notify_reaches_listener(server: PostgresServer, store: PostgresKvStore) -> None:
    seen: list[str] = []
    got = trio.Event()

    def on_change(namespace: str) -> None:
        seen.append(namespace)
        if "reference_value" in seen:
            got.set()

    writer = PostgresKvStore.from_url(server.url(), table=store.table)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.listen, on_change)
            await writer.set("attestation_service_policy", "default", b"p")
            assert not await writer.set(
                "attestation_service_policy", "default", b"q", overwrite=False
            )
            await writer.set("reference_value", "rv", b"r")
            with trio.fail_after(5):
                await got.wait()
            nursery.cancel_scope.cancel()
    finally:
        await writer.aclose()
    # The refused write rolled back, so its NOTIFY never went out.
    assert seen == ["attestation_service_policy", "reference_value"]


async def test_outage_fails_fast_then_recovers(server: PostgresServer) -> None:
    store = _open(server, timeout=2.0)
    seen: list[str] = []
    resynced = trio.Event()

    def on_change(namespace: str) -> None:
        seen.append(namespace)
        resynced.set()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store.listen, on_change)
            await store.set("kbs", "k", b"before")
            with trio.fail_after(5):
                await resynced.wait()
            resynced = trio.Event()

            await trio.to_thread.run_sync(server.stop)
            for op in ("get", "set"):
                began = time.monotonic()
                with pytest.raises(StorageError) as err:
                    if op == "get":
                        await store.get("kbs", "k")
                    else:
                        await store.set("kbs", "k", b"during")
                assert time.monotonic() - began < 3
                message = str(err.value)
                assert "database unavailable" in message
                assert f"postgres {op} kbs/k" in message

            await trio.to_thread.run_sync(server.start)
            assert await store.get("kbs", "k") == b"before"
            # A write by another replica while the listener was cut off still reaches it,
            # either by NOTIFY or by the version comparison on reconnect.
            other = PostgresKvStore.from_url(server.url(), table=store.table)
            try:
                await other.set("kbs", "k", b"after")
            finally:
                await other.aclose()
            with trio.fail_after(10):
                await resynced.wait()
            assert await store.get("kbs", "k") == b"after"
            assert await store.version("kbs") == 2
            nursery.cancel_scope.cancel()
    finally:
        await store.aclose()
    # A notification racing the reconnect may add a spurious (harmless) extra call.
    assert seen[:2] == ["kbs", "kbs"]
    assert set(seen) == {"kbs"}


async def test_unreachable_server_and_closed_store() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PostgresKvStore(
        host="127.0.0.1", port=port, username="u", password="secret", db="d", timeout=1.0
    )
    with pytest.raises(StorageError, match=r"postgres list kbs.*database unavailable") as err:
        await store.list("kbs")
    assert "secret" not in str(err.value)
    await store.aclose()
    with pytest.raises(StorageError, match="closed"):
        await store.get("kbs", "k")


def test_from_url_keeps_parts() -> None:
    store = PostgresKvStore.from_url(
        "postgresql://alice:pw@db.example:6543/trustee?sslmode=require", table="custom"
    )
    assert store.table == "custom"
    assert store.versions_table == "custom_versions"
    with pytest.raises(StorageError, match="invalid postgres URL"):
        PostgresKvStore.from_url("postgresql://h:notaport/d")
