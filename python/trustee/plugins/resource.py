"""The `resource` plugin: secrets at `<repository>/<type>/<tag>` in namespace `repository`."""

from __future__ import annotations

import re

from trustee.plugins.base import PluginError, PluginRequest
from trustee.storage.kv import (
    NS_REPOSITORY,
    KeyValueStore,
    StorageError,
    check_key_size,
    key_preview,
)

_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_ADMIN_METHODS = frozenset({"POST", "PUT", "DELETE"})


def resource_key(path: list[str]) -> str:
    """Validate a resource path: exactly three segments, none starting with '.', within the
    key length limits every backend shares (checked here, before any backend is asked, so
    reads, writes and deletes all answer the same whatever the storage)."""
    key = "/".join(path)
    if len(path) != 3:
        raise PluginError(
            f"resource path {key_preview(key)} must be <repository>/<type>/<tag> (3 segments)"
        )
    try:
        check_key_size(key)
    except StorageError as exc:
        raise PluginError(f"resource path refused: {exc}") from exc
    for segment in path:
        if not _SEGMENT.match(segment):
            raise PluginError(f"resource path segment {segment!r} is not allowed")
    return key


class ResourcePlugin:
    name = "resource"

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store

    def is_admin_request(self, req: PluginRequest) -> bool:
        return req.method in _ADMIN_METHODS

    def encrypted(self, req: PluginRequest) -> bool:
        return req.method == "GET"

    async def handle(self, req: PluginRequest) -> bytes:
        key = resource_key(req.path)
        try:
            if req.method == "GET":
                value = await self.store.get(NS_REPOSITORY, key)
                if value is None:
                    raise PluginError(f"resource {key} not found")
                return value
            if req.method in ("POST", "PUT"):
                await self.store.set(NS_REPOSITORY, key, req.body)
                return b""
            if req.method == "DELETE":
                if not await self.store.delete(NS_REPOSITORY, key):
                    raise PluginError(f"resource {key} not found")
                return b""
        except StorageError as exc:
            raise PluginError(f"resource {key}: {exc}") from exc
        raise PluginError(f"method {req.method} is not supported by the resource plugin")


class SamplePlugin:
    """Upstream's demonstration plugin: every request is an admin request."""

    name = "sample"

    def __init__(self, item: str) -> None:
        self.item = item

    def is_admin_request(self, req: PluginRequest) -> bool:
        return True

    def encrypted(self, req: PluginRequest) -> bool:
        return False

    async def handle(self, req: PluginRequest) -> bytes:
        return b"sample plugin response"
