"""Key length limits are the same on every backend: what one refuses, all refuse, alike."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import pytest

from tests.support.postgres_server import PostgresServer, why_unavailable
from tests.support.receivers import REDIS_SERVER, redis_server
from trustee.plugins.base import PluginError, PluginRequest
from trustee.plugins.resource import ResourcePlugin
from trustee.redis.client import RedisClient
from trustee.storage.kv import (
    MAX_KEY_BYTES,
    MAX_KEY_SEGMENT_BYTES,
    NS_AS_POLICY,
    NS_REPOSITORY,
    KeyValueStore,
    StorageError,
)
from trustee.storage.localfs import LocalFsStore
from trustee.storage.localjson import LocalJsonStore
from trustee.storage.memory import MemoryStore
from trustee.storage.plaintree import PlainTreeStore
from trustee.storage.redis_kv import RedisKvStore
from trustee.storage.rvfile import ReferenceValueFile

pytestmark = [pytest.mark.needs_redis, pytest.mark.needs_postgres]

# Every part short enough, the whole too long.
LONG_WHOLE = "/".join(["r" * 100, "t" * 100, "g" * 100])
# The whole short enough, the tag too long.
LONG_TAG = "default/key/" + "g" * (MAX_KEY_SEGMENT_BYTES + 1)
# What an outside probe stored on Redis while LocalFs refused it.
HUGE = "default/key/" + "x" * 300_000
# Exactly at both limits: three segments adding up to MAX_KEY_BYTES, one at the segment limit.
AT_LIMIT = "/".join(
    ["r" * (MAX_KEY_BYTES - MAX_KEY_SEGMENT_BYTES - 3), "t", "g" * MAX_KEY_SEGMENT_BYTES]
)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of the network backends that can run here (redis-server, PostgreSQL)."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        if REDIS_SERVER is not None:
            redis = stack.enter_context(redis_server(tmp_path_factory.mktemp("redis")))
            urls["redis"] = redis.url(1)
        if why_unavailable() is None:
            pg = PostgresServer()
            stack.callback(pg.close)
            pg.init()
            pg.start()
            urls["postgres"] = pg.url()
        yield urls


@pytest.fixture
async def stores(
    tmp_path: Path, services: dict[str, str]
) -> AsyncIterator[dict[str, KeyValueStore]]:
    found: dict[str, KeyValueStore] = {
        "Memory": MemoryStore(),
        "LocalFs": LocalFsStore(tmp_path / "fs"),
        "LocalFs plain tree": PlainTreeStore(tmp_path / "tree"),
        "LocalJson": LocalJsonStore(tmp_path / "json"),
    }
    async with AsyncExitStack() as stack:
        if "redis" in services:
            client = RedisClient(services["redis"])
            stack.push_async_callback(client.aclose)
            await client.execute("FLUSHDB")
            found["Redis"] = RedisKvStore(client)
        if "postgres" in services:
            from trustee.storage.postgres_kv import PostgresKvStore

            pg = PostgresKvStore.from_url(services["postgres"], table=f"limits_{next(_tables)}")
            stack.push_async_callback(pg.aclose)
            for key in await pg.list(NS_REPOSITORY):
                await pg.delete(NS_REPOSITORY, key)
            found["Postgres"] = pg
        yield found


_tables = itertools.count()


def test_the_limits_fit_localfs() -> None:
    # The KV layout spells each '/' of a key as four bytes in one file name of at most 255.
    assert MAX_KEY_BYTES + 3 * 5 <= 255
    assert len(AT_LIMIT) == MAX_KEY_BYTES


async def test_every_backend_refuses_the_same_names_alike(
    stores: dict[str, KeyValueStore], tmp_path: Path
) -> None:
    for name in (LONG_WHOLE, LONG_TAG, HUGE):
        errors = {}
        for backend, store in stores.items():
            with pytest.raises(StorageError) as info:
                await store.set(NS_REPOSITORY, name, b"secret")
            errors[backend] = str(info.value)
            assert await store.list(NS_REPOSITORY) == [], backend
        assert len(set(errors.values())) == 1, errors
        # The name is echoed in part only: a huge one does not make a huge error.
        assert len(next(iter(errors.values()))) < 300
    # Nothing reached the disk either, not even a temporary file.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_the_error_says_which_limit(stores: dict[str, KeyValueStore]) -> None:
    store = stores["Memory"]
    with pytest.raises(StorageError, match=f"more than the {MAX_KEY_BYTES} allowed"):
        await store.set(NS_REPOSITORY, LONG_WHOLE, b"x")
    with pytest.raises(StorageError, match=f"more than the {MAX_KEY_SEGMENT_BYTES} allowed per"):
        await store.set(NS_REPOSITORY, LONG_TAG, b"x")


async def test_a_name_at_the_limits_is_stored_by_every_backend(
    stores: dict[str, KeyValueStore],
) -> None:
    for backend, store in stores.items():
        assert await store.set(NS_REPOSITORY, AT_LIMIT, b"secret"), backend
        assert await store.get(NS_REPOSITORY, AT_LIMIT) == b"secret", backend
        assert await store.list(NS_REPOSITORY) == [AT_LIMIT], backend


async def test_other_namespaces_share_the_limits(stores: dict[str, KeyValueStore]) -> None:
    policy_id = "p" * MAX_KEY_BYTES + ".rego"
    for backend, store in stores.items():
        if backend == "LocalFs plain tree":
            continue  # holds resources only
        with pytest.raises(StorageError, match="allowed"):
            await store.set(NS_AS_POLICY, policy_id, b"package policy")
        assert await store.list(NS_AS_POLICY) == [], backend


async def test_reference_value_file_shares_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "reference-values.json"
    path.write_text("[]")
    store = ReferenceValueFile(path)
    name = "n" * (MAX_KEY_BYTES + 1)
    with pytest.raises(StorageError, match=f"more than the {MAX_KEY_BYTES} allowed"):
        await store.set("reference_value", name, json.dumps({"name": name}).encode())
    assert json.loads(path.read_text()) == []


async def test_resource_plugin_refuses_before_any_backend_is_asked(
    stores: dict[str, KeyValueStore],
) -> None:
    repo, kind, tag = HUGE.split("/")
    for method, body in (("POST", b"secret"), ("GET", b""), ("DELETE", b"")):
        errors = {}
        for backend, store in stores.items():
            plugin = ResourcePlugin(store)
            with pytest.raises(PluginError) as info:
                await plugin.handle(PluginRequest(method, [repo, kind, tag], {}, body))
            errors[backend] = str(info.value)
            assert await store.list(NS_REPOSITORY) == [], backend
        assert len(set(errors.values())) == 1, errors
        assert f"more than the {MAX_KEY_BYTES} allowed" in errors["Memory"]
