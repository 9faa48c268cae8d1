"""Open the configured key-value backends (one instance per backend type)."""

from __future__ import annotations

from trustee.config.model import StorageConfig, StorageType
from trustee.storage.kv import KeyValueStore
from trustee.storage.localfs import LocalFsStore
from trustee.storage.localjson import LocalJsonStore
from trustee.storage.memory import MemoryStore


class StoreRegistry:
    def __init__(self, config: StorageConfig) -> None:
        self.config = config
        self._stores: dict[str, KeyValueStore] = {}

    def get(self, kind: StorageType | None = None) -> KeyValueStore:
        kind = kind or self.config.storage_type
        if kind not in self._stores:
            self._stores[kind] = self._open(kind)
        return self._stores[kind]

    def _open(self, kind: StorageType) -> KeyValueStore:
        if kind == "Memory":
            return MemoryStore()
        if kind == "LocalFs":
            return LocalFsStore(self.config.local_fs_dir)
        return LocalJsonStore(self.config.local_json_dir)

    async def aclose(self) -> None:
        for store in self._stores.values():
            await store.aclose()
