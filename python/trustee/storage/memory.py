"""In-process storage: the development default and the store unit tests run against."""

from __future__ import annotations

from trustee.storage.kv import check_key_size


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = {}

    async def get(self, namespace: str, key: str) -> bytes | None:
        return self._data.get(namespace, {}).get(key)

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        space = self._data.setdefault(namespace, {})
        if not overwrite and key in space:
            return False
        space[key] = bytes(value)
        return True

    async def delete(self, namespace: str, key: str) -> bool:
        return self._data.get(namespace, {}).pop(key, None) is not None

    async def list(self, namespace: str) -> list[str]:
        return sorted(self._data.get(namespace, {}))

    async def aclose(self) -> None:
        return None
