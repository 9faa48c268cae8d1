"""The key-value store contract shared by resources, policies, reference values and sessions.

Namespaces and key rules follow upstream's key-value-storage so that an on-disk repository written
by upstream Trustee can be served unchanged.
"""

from __future__ import annotations

import re
from typing import Protocol

from trustee.storage.atomic import TEMP_PREFIX

# Namespaces upstream uses; LocalFs makes one directory per namespace.
NS_KBS = "kbs"
NS_REPOSITORY = "repository"
NS_SESSION = "kbs_protocol_session"
NS_AS_POLICY = "attestation_service_policy"
NS_REFERENCE_VALUE = "reference_value"

_KEY_RE = re.compile(r"^[A-Za-z0-9._/-]+$")


class StorageError(Exception):
    """The backend failed or refused the operation."""


# Every backend refuses the same keys, so data written to one can move to any other. LocalFs
# sets the bound: a file name holds at most 255 bytes, and its KV layout makes the whole key
# one name with each '/' spelled as the four bytes `\x2F`. 240 bytes leave room for five
# slashes (a resource name has two). A segment is bounded too, so no one part of a resource
# name (repository, type, tag) can crowd out the other two.
MAX_KEY_BYTES = 240
MAX_KEY_SEGMENT_BYTES = 128


def key_preview(text: str) -> str:
    # An over-long key is echoed in part only: error bodies and logs stay small.
    return repr(text) if len(text) <= 40 else repr(text[:32] + "...")


def check_key_size(key: str) -> None:
    """The key rules every backend shares: not empty, and within the length limits."""
    if not key:
        raise StorageError("invalid key: empty")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise StorageError(
            f"invalid key {key_preview(key)}: {size} bytes, more than the {MAX_KEY_BYTES} allowed"
        )
    for segment in key.split("/"):
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > MAX_KEY_SEGMENT_BYTES:
            raise StorageError(
                f"invalid key {key_preview(key)}: segment {key_preview(segment)} has "
                f"{size} bytes, more than the {MAX_KEY_SEGMENT_BYTES} allowed per "
                "'/'-separated segment"
            )


def check_key(key: str) -> None:
    """Keys a file layout can hold: upstream's LocalFs character set, no path tricks.

    The other backends accept any key `check_key_size` accepts, so reference-value ids like
    `rvps:///vendor/tdx/mr_td:v1` work there.
    """
    check_key_size(key)
    if not _KEY_RE.match(key):
        raise StorageError(f"invalid key {key!r}: only [A-Za-z0-9._/-] are allowed")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"invalid key {key!r}: empty, '.' or '..' segment")
    if any(part.startswith(TEMP_PREFIX) for part in parts):
        # Such names are the atomic writer's, hidden from listings and removed at start-up.
        raise StorageError(f"invalid key {key!r}: a segment starts with {TEMP_PREFIX!r}")


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
