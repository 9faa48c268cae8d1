from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.localfs import LocalFsStore
from trustee.storage.localjson import LocalJsonStore
from trustee.storage.memory import MemoryStore


def _stores(tmp_path: Path) -> list[KeyValueStore]:
    return [MemoryStore(), LocalFsStore(tmp_path / "fs"), LocalJsonStore(tmp_path / "json")]


async def test_contract_on_every_backend(tmp_path: Path) -> None:
    for store in _stores(tmp_path):
        assert await store.get("repository", "a/b/c") is None
        assert await store.set("repository", "a/b/c", b"one")
        assert not await store.set("repository", "a/b/c", b"two", overwrite=False)
        assert await store.get("repository", "a/b/c") == b"one"
        assert await store.set("repository", "a/b/c", b"three")
        assert await store.get("repository", "a/b/c") == b"three"
        assert await store.list("repository") == ["a/b/c"]
        assert await store.delete("repository", "a/b/c")
        assert not await store.delete("repository", "a/b/c")
        assert await store.list("repository") == []
        with pytest.raises(StorageError):
            await store.set("repository", "", b"x")


async def test_file_layout_rejects_path_tricks(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    for bad in ("../x", "a//b", "a b", "/abs", "a/./b", "rvps:///x:1"):
        with pytest.raises(StorageError):
            await store.set("repository", bad, b"x")
    assert not any(tmp_path.rglob("x"))


async def test_memory_and_json_accept_any_nonempty_key(tmp_path: Path) -> None:
    for store in (MemoryStore(), LocalJsonStore(tmp_path)):
        assert await store.set("reference_value", "rvps:///vendor/tdx/mr_td:v1", b"1")
        assert await store.get("reference_value", "rvps:///vendor/tdx/mr_td:v1") == b"1"


async def test_localfs_uses_upstreams_layout(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    await store.set("repository", "default/key/testfile", b"test content")
    assert (
        tmp_path / "repository" / "default\\x2Fkey\\x2Ftestfile"
    ).read_bytes() == b"test content"
    # A file written by upstream in that layout is served.
    (tmp_path / "repository" / "one\\x2Ftwo\\x2Fthree").write_bytes(b"seeded")
    assert await store.get("repository", "one/two/three") == b"seeded"


async def test_localjson_uses_upstreams_layout(tmp_path: Path) -> None:
    store = LocalJsonStore(tmp_path)
    await store.set("reference_value", "svn", b"\xff\xfe")
    doc = json.loads((tmp_path / "reference_value").read_text())
    assert doc == {"svn": "__4="}
    fresh = LocalJsonStore(tmp_path)
    assert await fresh.get("reference_value", "svn") == b"\xff\xfe"


async def test_localjson_corrupt_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kbs").write_text("[1,2]")
    with pytest.raises(StorageError, match="not a LocalJson namespace file"):
        await LocalJsonStore(tmp_path).get("kbs", "x")
