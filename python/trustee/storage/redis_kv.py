"""KeyValueStore in Redis, shared by every replica.

Per namespace: one string key per entry, a SET indexing the entry names (so `list` needs no
SCAN) and a change counter (so replicas notice changes with one GET). The three are changed
together by a Lua script, hence atomically. The namespace is a hash tag, so a namespace lives
in one cluster slot and the scripts stay valid on Redis Cluster.
"""

from __future__ import annotations

from typing import Any

from trustee.redis.client import (
    MAX_STORED_VALUE_BYTES,
    RedisClient,
    RedisError,
    RedisUnavailable,
    Script,
)
from trustee.storage.kv import StorageError, check_key_size

# The client refuses replies above its limit, so larger values could be written but never
# read back; refusing them at write time says why.
MAX_VALUE_BYTES = MAX_STORED_VALUE_BYTES

_SET = Script(
    """
local stored
if ARGV[2] == '1' then
  stored = redis.call('SET', KEYS[1], ARGV[1])
else
  stored = redis.call('SET', KEYS[1], ARGV[1], 'NX')
end
if not stored then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('INCR', KEYS[3])
return 1
"""
)

_DELETE = Script(
    """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""
)


def _check_namespace(namespace: str) -> None:
    # Braces would break the hash tag and ':' the key layout.
    if not namespace or any(c in namespace for c in "{}:"):
        raise StorageError(f"invalid namespace {namespace!r}: empty or contains '{{', '}}' or ':'")


class RedisKvStore:
    """Implements `KeyValueStore`; closes the client on aclose only if told it owns it."""

    def __init__(
        self, client: RedisClient, *, prefix: str = "trustee:kv:", close_client: bool = False
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._close_client = close_client

    def _base(self, namespace: str) -> str:
        _check_namespace(namespace)
        return f"{self.prefix}{{{namespace}}}"

    def _value_key(self, namespace: str, key: str) -> str:
        return f"{self._base(namespace)}:k:{key}"

    def _index_key(self, namespace: str) -> str:
        return f"{self._base(namespace)}:index"

    def _version_key(self, namespace: str) -> str:
        return f"{self._base(namespace)}:version"

    @staticmethod
    def _failed(operation: str, namespace: str, key: str | None, exc: Exception) -> StorageError:
        target = namespace if key is None else f"{namespace}/{key}"
        return StorageError(f"redis {operation} {target}: {exc}")

    async def get(self, namespace: str, key: str) -> bytes | None:
        try:
            value = await self.client.execute("GET", self._value_key(namespace, key))
        except (RedisUnavailable, RedisError) as exc:
            raise self._failed("get", namespace, key, exc) from exc
        if value is not None and not isinstance(value, bytes):
            raise StorageError(
                f"redis get {namespace}/{key}: server answered {type(value).__name__}, not bytes"
            )
        return value

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        limit = self.client.max_reply_bytes
        if len(value) > limit:
            raise StorageError(
                f"redis set {namespace}/{key}: value of {len(value)} bytes exceeds the "
                f"{limit} bytes this store can read back"
            )
        keys = [
            self._value_key(namespace, key),
            self._index_key(namespace),
            self._version_key(namespace),
        ]
        try:
            stored = await _SET.run(
                self.client, keys, [bytes(value), "1" if overwrite else "0", key]
            )
        except (RedisUnavailable, RedisError) as exc:
            raise self._failed("set", namespace, key, exc) from exc
        return bool(stored == 1)

    async def delete(self, namespace: str, key: str) -> bool:
        keys = [
            self._value_key(namespace, key),
            self._index_key(namespace),
            self._version_key(namespace),
        ]
        try:
            removed = await _DELETE.run(self.client, keys, [key])
        except (RedisUnavailable, RedisError) as exc:
            raise self._failed("delete", namespace, key, exc) from exc
        return bool(removed == 1)

    async def list(self, namespace: str) -> list[str]:
        try:
            members: Any = await self.client.execute("SMEMBERS", self._index_key(namespace))
        except (RedisUnavailable, RedisError) as exc:
            raise self._failed("list", namespace, None, exc) from exc
        if not isinstance(members, list) or not all(isinstance(m, bytes) for m in members):
            raise StorageError(f"redis list {namespace}: server answered {members!r}, not names")
        try:
            return sorted(m.decode("utf-8") for m in members)
        except UnicodeDecodeError as exc:
            raise StorageError(f"redis list {namespace}: a key is not UTF-8: {exc}") from exc

    async def version(self, namespace: str) -> int:
        """A counter bumped on every change in the namespace; 0 before the first change."""
        try:
            raw = await self.client.execute("GET", self._version_key(namespace))
        except (RedisUnavailable, RedisError) as exc:
            raise self._failed("version", namespace, None, exc) from exc
        if raw is None:
            return 0
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise StorageError(
                f"redis version {namespace}: counter holds {raw!r}, not an integer"
            ) from None

    async def aclose(self) -> None:
        if self._close_client:
            await self.client.aclose()
