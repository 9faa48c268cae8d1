from __future__ import annotations

import fcntl
import json
import logging
from importlib import resources
from pathlib import Path

import pytest

from trustee.attestation.policies import AttestationPolicyStore, PolicyStoreError, shipped_policy
from trustee.plugins.resource_policy import FilePolicySource, KvPolicySource, ResourcePolicy
from trustee.policy.engine import PolicyCache
from trustee.storage.atomic import remove_orphans, write_atomically
from trustee.storage.kv import NS_AS_POLICY, NS_KBS, KeyValueStore, StorageError
from trustee.storage.localfs import LocalFsStore
from trustee.storage.localjson import LocalJsonStore
from trustee.storage.memory import MemoryStore
from trustee.storage.plaintree import PlainTreeStore
from trustee.storage.rvfile import ReferenceValueFile


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


# --- temporary files of killed writers -----------------------------------------------------

# What writers killed between creating their temporary file and renaming it leave behind.
ORPHANS = (".tmp-a1b2c3d4", ".tmp-zz_9yx8w")
# Look-alikes that are not ours: never touched.
STRANGERS = (".tmp-notours.txt", "x.tmp-a1b2c3d4", ".tmp-ABCDEFGH", ".tmp-abc")


def plant_temp_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ORPHANS:
        (folder / name).write_bytes(b"half a sec")
    for name in STRANGERS:
        (folder / name).write_bytes(b"keep")


def _left(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


async def test_opening_a_localfs_store_removes_orphaned_temp_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalFsStore(tmp_path)
    await store.set("repository", "default/key/one", b"secret")
    plant_temp_files(tmp_path / "repository")
    (tmp_path / "repository" / ".tmp-dir00000").mkdir()  # a directory is not a temp file
    with caplog.at_level(logging.INFO, logger="trustee.storage"):
        reopened = LocalFsStore(tmp_path)
    assert _left(tmp_path / "repository") == {
        "default\\x2Fkey\\x2Fone",
        ".tmp-dir00000",
        *STRANGERS,
    }
    assert await reopened.get("repository", "default/key/one") == b"secret"
    lines = [r.getMessage() for r in caplog.records if "orphaned" in r.getMessage()]
    assert len(lines) == 1 and "removed 2 " in lines[0]


async def test_a_live_writers_temp_file_survives_the_sweep(tmp_path: Path) -> None:
    folder = tmp_path / "repository"
    folder.mkdir()
    live = folder / ".tmp-1ive0000"
    with live.open("wb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # as write_atomically holds it
        assert remove_orphans(tmp_path, 2) == 0
        assert live.exists()
    assert remove_orphans(tmp_path, 2) == 1  # its writer is gone now
    assert not live.exists()


def test_every_file_store_sweeps_where_it_writes(tmp_path: Path) -> None:
    tree = tmp_path / "tree" / "default" / "kbsres1"
    plant_temp_files(tree)
    PlainTreeStore(tmp_path / "tree")
    plant_temp_files(tmp_path / "json")
    LocalJsonStore(tmp_path / "json")
    plant_temp_files(tmp_path / "rv")
    ReferenceValueFile(tmp_path / "rv" / "reference-values.json")
    plant_temp_files(tmp_path / "opa")
    FilePolicySource(tmp_path / "opa" / "policy.rego")
    plant_temp_files(tmp_path / "as" / "opa")
    AttestationPolicyStore(LocalFsStore(tmp_path / "as"), PolicyCache(), namespace="opa")
    for folder in (tree, tmp_path / "json", tmp_path / "rv", tmp_path / "opa", tmp_path / "as/opa"):
        assert _left(folder) == set(STRANGERS), folder


async def test_temp_names_cannot_be_stored_keys(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    with pytest.raises(StorageError, match=r"starts with '\.tmp-'"):
        await store.set("reference_value", ".tmp-a1b2c3d4", b"x")


async def test_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    write_atomically(tmp_path / "f", b"one")
    write_atomically(tmp_path / "f", b"two")
    assert _left(tmp_path) == {"f"} and (tmp_path / "f").read_bytes() == b"two"


# --- default policies lost by the store ----------------------------------------------------


async def test_a_lost_default_attestation_policy_comes_back_at_lookup() -> None:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    await policies.install_defaults()
    assert await store.delete(NS_AS_POLICY, "default_cpu.rego")
    await policies.get("default_cpu")
    assert (
        await store.get(NS_AS_POLICY, "default_cpu.rego") == shipped_policy("default_cpu").encode()
    )


async def test_a_stored_default_is_never_overwritten() -> None:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    edited = "package policy\nimport rego.v1\ndefault executables := 3\n"
    await policies.set_policy("default_cpu", edited)
    await policies.install_defaults()
    await policies.get("default_cpu")
    assert await store.get(NS_AS_POLICY, "default_cpu.rego") == edited.encode()


async def test_a_lost_user_policy_stays_missing() -> None:
    store = MemoryStore()
    policies = AttestationPolicyStore(store, PolicyCache())
    await policies.set_policy("mine", "package policy\nimport rego.v1\ndefault x := 1\n")
    assert await store.delete(NS_AS_POLICY, "mine.rego")
    with pytest.raises(PolicyStoreError, match=r"Policy `mine\.rego` not found"):
        await policies.get("mine")
    assert await store.list(NS_AS_POLICY) == []


async def test_a_lost_resource_policy_comes_back_as_the_default() -> None:
    store = MemoryStore()
    await ResourcePolicy(KvPolicySource(store), PolicyCache()).set(
        "package policy\nimport rego.v1\ndefault allow := true\n"
    )
    assert await store.delete(NS_KBS, "resource-policy.rego")
    # A worker that has nothing cached looks the policy up and misses it.
    policy = ResourcePolicy(KvPolicySource(store), PolicyCache())
    await policy.current()
    assert await policy.text() == (
        resources.files("trustee.policies").joinpath("resource_default.rego").read_text()
    )
