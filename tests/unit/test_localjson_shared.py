"""LocalJson shared by processes: each sees the others' writes at its next look, and writers
in two processes keep each other's keys (one store instance stands for one process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trustee.storage import localfs
from trustee.storage.kv import NS_AS_POLICY
from trustee.storage.localjson import LocalJsonStore


async def test_localjson_sees_another_processs_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localfs, "SETTLE_NS", 0)  # trust stamps at once
    mine, theirs = LocalJsonStore(tmp_path), LocalJsonStore(tmp_path)
    version = await mine.version(NS_AS_POLICY)
    assert await mine.get(NS_AS_POLICY, "a") is None
    await theirs.set(NS_AS_POLICY, "a", b"one")
    assert await mine.get(NS_AS_POLICY, "a") == b"one"
    assert await mine.version(NS_AS_POLICY) != version
    version = await mine.version(NS_AS_POLICY)
    assert await mine.version(NS_AS_POLICY) == version
    assert await theirs.delete(NS_AS_POLICY, "a")
    assert await mine.get(NS_AS_POLICY, "a") is None
    assert await mine.version(NS_AS_POLICY) != version


async def test_localjson_writers_in_two_processes_keep_each_others_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localfs, "SETTLE_NS", 0)  # trust stamps at once
    mine, theirs = LocalJsonStore(tmp_path), LocalJsonStore(tmp_path)
    assert await mine.list(NS_AS_POLICY) == []  # loaded (empty) before the other writes
    await theirs.set(NS_AS_POLICY, "theirs", b"1")
    await mine.set(NS_AS_POLICY, "mine", b"2")
    assert not await mine.set(NS_AS_POLICY, "theirs", b"3", overwrite=False)
    assert await theirs.list(NS_AS_POLICY) == ["mine", "theirs"]
    assert await theirs.get(NS_AS_POLICY, "theirs") == b"1"


async def test_localjson_file_replaced_on_disk_is_seen(tmp_path: Path) -> None:
    store = LocalJsonStore(tmp_path)
    await store.set(NS_AS_POLICY, "a", b"one")
    assert await store.get(NS_AS_POLICY, "a") == b"one"
    (tmp_path / "incoming").write_text(json.dumps({"a": "dHdv"}))  # "two"
    os.replace(tmp_path / "incoming", tmp_path / NS_AS_POLICY)
    assert await store.get(NS_AS_POLICY, "a") == b"two"
