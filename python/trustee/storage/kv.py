"""The key-value store contract shared by resources, policies, reference values and sessions.

Namespaces and key rules follow upstream's key-value-storage so that an on-disk repository written
by upstream Trustee can be served unchanged.
"""

from __future__ import annotations

import re
from typing import Protocol

# Namespaces upstream uses; LocalFs makes one directory per namespace.
NS_KBS = "kbs"
NS_REPOSITORY = "repository"
NS_SESSION = "kbs_protocol_session"
NS_AS_POLICY = "attestation_service_policy"
NS_REFERENCE_VALUE = "reference_value"

_KEY_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


class StorageError(Exception):
    """The backend failed or refused the operation."""


def check_nonempty_key(key: str) -> None:
    if not key:
        raise StorageError("invalid key: empty")


def check_key(key: str) -> None:
    """Keys a file layout can hold: upstream's LocalFs character set, no path tricks.

    Memory and LocalJson accept any non-empty key, as upstream's do, so reference-value ids
    like `rvps:///vendor/tdx/mr_td:v1` work there.
    """
    if not _KEY_RE.match(key):
        raise StorageError(f"invalid key {key!r}: only [A-Za-z0-9._/-] are allowed")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid key {key!r}: empty, '.' or '..' segment")


class KeyValueStore(Protocol):
    """Async key-value storage, one flat key space per namespace."""

    async def get(self, namespace: str, key: str) -> bytes | None: ...

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        """Store `value`; with overwrite=False an existing key is kept and False is returned."""
        ...

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove the key; False when it did not exist."""
        ...

    async def list(self, namespace: str) -> list[str]: ...

    async def aclose(self) -> None: ...
