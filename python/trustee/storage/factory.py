"""Open the configured key-value backends (one instance per backend type).

The PostgreSQL and Redis backends are imported only when configured: psycopg alone takes
about 100 ms to import, which a sidecar that keeps its data in files should not pay at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustee.config.model import StorageConfig, StorageType
from trustee.storage.kv import KeyValueStore
from trustee.storage.localfs import LocalFsStore
from trustee.storage.localjson import LocalJsonStore
from trustee.storage.memory import MemoryStore

if TYPE_CHECKING:
    from trustee.redis.client import RedisClient


class StoreRegistry:
    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._stores: dict[str, KeyValueStore] = {}
        self._redis: RedisClient | None = None

    def get(self, kind: StorageType | None = None) -> KeyValueStore:
        kind = kind or self.config.storage_type
        if kind not in self._stores:
            self._stores[kind] = self._open(kind)
        return self._stores[kind]

    def opened(self) -> list[KeyValueStore]:
        """The stores opened so far (what a readiness probe asks)."""
        return list(self._stores.values())

    def redis(self) -> RedisClient:
        """The one Redis client of this process (KV store and session store share it)."""
        if self._redis is None:
            from trustee.redis.client import RedisClient

            self._redis = RedisClient(self.config.redis_url, ca_file=self.config.redis_ca_file)
        return self._redis

    def _open(self, kind: StorageType) -> KeyValueStore:
        if kind == "Memory":
            return MemoryStore()
        if kind == "LocalFs":
            return LocalFsStore(self.config.local_fs_dir)
        if kind == "Postgres":
            from trustee.storage.postgres_kv import PostgresKvStore

            pg = self.config.postgres
            table = str(pg.get("table", "kbs_kv"))
            if self.config.postgres_url:
                return PostgresKvStore.from_url(self.config.postgres_url, table=table)
            return PostgresKvStore(
                host=str(pg.get("host", "127.0.0.1")),
                port=int(pg.get("port", 5432)),
                username=str(pg.get("username", "postgres")),
                password=str(pg.get("password", "")),
                db=str(pg.get("db", "postgres")),
                table=table,
            )
        if kind == "Redis":
            from trustee.storage.redis_kv import RedisKvStore

            return RedisKvStore(self.redis())
        return LocalJsonStore(self.config.local_json_dir)

    async def aclose(self) -> None:
        for store in self._stores.values():
            await store.aclose()
        if self._redis is not None:
            await self._redis.aclose()
