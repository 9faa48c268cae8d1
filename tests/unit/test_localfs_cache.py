"""LocalFs serves from memory and notices every change on disk, whoever made it.

A value is read from its file once and served again while one stat says the file is unchanged;
another store instance on the same directory stands for another worker process; files swapped,
replaced, edited in place or removed behind the store's back are seen at the next look; the
caches of resource policy, attestation policies and reference values follow.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from trustee.attestation.policies import AttestationPolicyStore
from trustee.attestation.rvps import ReferenceValueStore
from trustee.plugins.resource_policy import KvPolicySource, ResourcePolicy, request_document
from trustee.policy.engine import PolicyCache
from trustee.storage import localfs
from trustee.storage.kv import NS_AS_POLICY, NS_REFERENCE_VALUE, NS_REPOSITORY, StorageError
from trustee.storage.localfs import LocalFsStore, Stamp, ValueCache
from trustee.storage.plaintree import PlainTreeStore

KEY = "default/key/one"
ALLOW = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
DENY = "package policy\nimport rego.v1\ndefault allow := false\n"


@pytest.fixture
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust stamps as soon as they are taken (the store waits about a second otherwise)."""
    monkeypatch.setattr(localfs, "SETTLE_NS", 0)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the stores read from disk, in order."""
    seen: list[str] = []
    real = localfs._read

    def counting(name: str) -> tuple[Stamp, bytes] | None:
        seen.append(Path(name).name)
        return real(name)

    monkeypatch.setattr(localfs, "_read", counting)
    return seen


def edit_in_place(path: Path, data: bytes) -> None:
    """Rewrite a file without replacing it (same inode), its time a clock tick later."""
    before = path.stat()
    with path.open("r+b") as fh:
        fh.write(data)
        fh.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def config_map_volume(mount: Path, files: dict[str, bytes], stamp: str) -> None:
    """kubelet's AtomicWriter: the files in a new timestamped directory, `..data` swapped to
    it in one rename, each key a symlink through `..data`."""
    mount.mkdir(parents=True, exist_ok=True)
    (mount / stamp).mkdir()
    for name, content in files.items():
        (mount / stamp / name).write_bytes(content)
    (mount / "..data_tmp").symlink_to(stamp)
    os.replace(mount / "..data_tmp", mount / "..data")
    for name in files:
        if not (mount / name).is_symlink():
            (mount / name).symlink_to(Path("..data") / name)


# --- values served from memory --------------------------------------------------------------


async def test_a_cache_hit_reads_no_file(
    tmp_path: Path, settled_at_once: None, reads: list[str]
) -> None:
    store = LocalFsStore(tmp_path)
    await store.set(NS_REPOSITORY, KEY, b"secret")
    for _ in range(5):
        assert await store.get(NS_REPOSITORY, KEY) == b"secret"
    assert len(reads) == 1


async def test_a_file_changed_within_the_last_second_is_read_every_time(
    tmp_path: Path, reads: list[str]
) -> None:
    # Two in-place edits within one clock tick leave the same stamp: a fresh stamp proves
    # nothing, so nothing is served from memory until it has settled.
    store = LocalFsStore(tmp_path)
    await store.set(NS_REPOSITORY, KEY, b"secret")
    assert await store.get(NS_REPOSITORY, KEY) == b"secret"
    assert await store.get(NS_REPOSITORY, KEY) == b"secret"
    assert len(reads) == 2


async def test_a_replaced_file_is_seen(tmp_path: Path, settled_at_once: None) -> None:
    store = LocalFsStore(tmp_path)
    await store.set(NS_REPOSITORY, KEY, b"old")
    assert await store.get(NS_REPOSITORY, KEY) == b"old"
    path = tmp_path / NS_REPOSITORY / "default\\x2Fkey\\x2Fone"
    (tmp_path / "new").write_bytes(b"new")
    os.replace(tmp_path / "new", path)
    assert await store.get(NS_REPOSITORY, KEY) == b"new"


async def test_a_file_edited_in_place_is_seen(tmp_path: Path, settled_at_once: None) -> None:
    store = LocalFsStore(tmp_path)
    await store.set(NS_REPOSITORY, KEY, b"aaaa")
    assert await store.get(NS_REPOSITORY, KEY) == b"aaaa"
    edit_in_place(tmp_path / NS_REPOSITORY / "default\\x2Fkey\\x2Fone", b"bbbb")
    assert await store.get(NS_REPOSITORY, KEY) == b"bbbb"


async def test_a_swapped_secret_volume_is_seen(
    tmp_path: Path, settled_at_once: None, reads: list[str]
) -> None:
    mount = tmp_path / "default" / "kbsres1"
    config_map_volume(mount, {"key1": b"res1val1"}, "..2025_01_12_10_00_00.1")
    store = PlainTreeStore(tmp_path)
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"res1val1"
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"res1val1"
    assert len(reads) == 1
    config_map_volume(mount, {"key1": b"rotated"}, "..2025_02_01_00_00_00.2")
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"rotated"


async def test_another_processs_writes_and_deletes_are_seen(
    tmp_path: Path, settled_at_once: None
) -> None:
    mine, theirs = LocalFsStore(tmp_path), LocalFsStore(tmp_path)
    assert await mine.get(NS_REPOSITORY, KEY) is None
    await theirs.set(NS_REPOSITORY, KEY, b"one")
    assert await mine.get(NS_REPOSITORY, KEY) == b"one"
    await theirs.set(NS_REPOSITORY, KEY, b"two")
    assert await mine.get(NS_REPOSITORY, KEY) == b"two"
    assert await theirs.delete(NS_REPOSITORY, KEY)
    assert await mine.get(NS_REPOSITORY, KEY) is None
    assert len(mine.cache) == 0


async def test_directories_and_pipes_are_no_values(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    (tmp_path / NS_REPOSITORY / "default\\x2Fkey\\x2Fone").mkdir(parents=True)
    os.mkfifo(tmp_path / NS_REPOSITORY / "default\\x2Fkey\\x2Fpipe")
    assert await store.get(NS_REPOSITORY, KEY) is None
    assert await store.get(NS_REPOSITORY, "default/key/pipe") is None


async def test_read_errors_name_the_file(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    loop = tmp_path / NS_REPOSITORY / "default\\x2Fkey\\x2Fone"
    loop.parent.mkdir()
    loop.symlink_to(loop.name)
    with pytest.raises(StorageError, match=r"cannot read .*default\\x2Fkey\\x2Fone"):
        await store.get(NS_REPOSITORY, KEY)


# --- bounds --------------------------------------------------------------------------------


def test_the_cache_keeps_its_entry_and_byte_bounds(settled_at_once: None) -> None:
    cache = ValueCache(max_entries=3, max_bytes=10, max_value_bytes=4)
    stamp: Stamp = (0, 1, 0, 0, 0)
    for name in "abc":
        cache.put(name, stamp, b"xxx")
    assert (len(cache), cache.bytes) == (3, 9)
    assert cache.get("a", stamp) == b"xxx"  # now the most recently used
    cache.put("d", stamp, b"yy")
    assert (len(cache), cache.bytes) == (3, 8)
    assert cache.get("b", stamp) is None  # the least recently used went
    cache.put("e", stamp, b"12345")  # above the per-value bound: never kept
    assert cache.get("e", stamp) is None
    cache.put("f", stamp, b"zzzz")
    assert cache.bytes <= 10 and len(cache) <= 3
    assert cache.get("f", stamp) == b"zzzz"
    assert cache.get("a", (0, 2, 0, 0, 0)) is None  # another file under that name


async def test_big_values_are_read_every_time(
    tmp_path: Path, settled_at_once: None, reads: list[str]
) -> None:
    store = LocalFsStore(tmp_path, ValueCache(max_entries=8, max_bytes=64, max_value_bytes=16))
    await store.set(NS_REPOSITORY, KEY, b"x" * 17)
    await store.set(NS_REPOSITORY, "default/key/two", b"small")
    for _ in range(3):
        assert await store.get(NS_REPOSITORY, KEY) == b"x" * 17
        assert await store.get(NS_REPOSITORY, "default/key/two") == b"small"
    assert reads.count("default\\x2Fkey\\x2Fone") == 3
    assert reads.count("default\\x2Fkey\\x2Ftwo") == 1
    assert store.cache.bytes == 5


# --- namespace versions ---------------------------------------------------------------------


async def test_an_unchanged_namespace_keeps_its_version_without_listing(
    tmp_path: Path, settled_at_once: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalFsStore(tmp_path)
    await store.set(NS_AS_POLICY, "a.rego", b"a")
    first = await store.version(NS_AS_POLICY)
    scans: list[str] = []
    real = localfs._scan

    def counting(folder: str) -> tuple[Stamp | None, dict[str, Stamp | None]]:
        scans.append(folder)
        return real(folder)

    monkeypatch.setattr(localfs, "_scan", counting)
    for _ in range(3):
        assert await store.version(NS_AS_POLICY) == first
    assert scans == []


async def test_the_version_moves_with_every_kind_of_change(
    tmp_path: Path, settled_at_once: None
) -> None:
    mine, theirs = LocalFsStore(tmp_path), LocalFsStore(tmp_path)
    seen = [await mine.version(NS_AS_POLICY)]

    async def moved() -> bool:
        now = await mine.version(NS_AS_POLICY)
        changed = now != seen[-1]
        seen.append(now)
        return changed

    await theirs.set(NS_AS_POLICY, "a.rego", b"one")
    assert await moved()
    await theirs.set(NS_AS_POLICY, "a.rego", b"two")  # a rename over the same name
    assert await moved()
    edit_in_place(tmp_path / NS_AS_POLICY / "a.rego", b"six")
    assert await moved()
    assert await theirs.delete(NS_AS_POLICY, "a.rego")
    assert await moved()
    assert not await moved()
    await mine.set(NS_AS_POLICY, "b.rego", b"mine")
    assert await moved()


async def test_a_fresh_namespace_counts_as_changed_at_every_look(tmp_path: Path) -> None:
    store = LocalFsStore(tmp_path)
    await store.set(NS_AS_POLICY, "a.rego", b"one")
    versions = {await store.version(NS_AS_POLICY) for _ in range(3)}
    assert len(versions) == 3


async def test_a_swapped_config_map_moves_the_version(
    tmp_path: Path, settled_at_once: None
) -> None:
    # An operator's policy ConfigMap mounted as the namespace directory.
    mount = tmp_path / "opa"
    config_map_volume(mount, {"default.rego": b"one"}, "..2025_01_12_10_00_00.1")
    store = LocalFsStore(tmp_path)
    first = await store.version("opa")
    assert await store.version("opa") == first
    assert await store.get("opa", "default.rego") == b"one"
    config_map_volume(mount, {"default.rego": b"two"}, "..2025_02_01_00_00_00.2")
    assert await store.version("opa") != first
    assert await store.get("opa", "default.rego") == b"two"


def test_the_plain_tree_has_no_namespace_version(tmp_path: Path) -> None:
    # Its namespace is ignored: a version per namespace would watch the wrong directory.
    assert not hasattr(PlainTreeStore(tmp_path), "version")


# --- what the policy and reference-value caches make of it ----------------------------------


async def test_a_resource_policy_set_by_another_process_applies_next_time(
    tmp_path: Path,
) -> None:
    mine = ResourcePolicy(KvPolicySource(LocalFsStore(tmp_path)), PolicyCache())
    theirs = ResourcePolicy(KvPolicySource(LocalFsStore(tmp_path)), PolicyCache())
    document = request_document("resource", KEY.split("/"), {})
    await theirs.set(DENY)
    assert not (await mine.decide({}, document))[0]
    await theirs.set(ALLOW)
    assert (await mine.decide({}, document))[0]
    await theirs.set(DENY)
    assert not (await mine.decide({}, document))[0]


async def test_a_resource_policy_edited_on_disk_applies_next_time(
    tmp_path: Path, settled_at_once: None
) -> None:
    mine = ResourcePolicy(KvPolicySource(LocalFsStore(tmp_path)), PolicyCache())
    await mine.set(DENY + "\n" * (len(ALLOW) - len(DENY)))
    document = request_document("resource", KEY.split("/"), {})
    assert not (await mine.decide({}, document))[0]
    edit_in_place(tmp_path / "kbs" / "resource-policy.rego", ALLOW.encode())
    assert (await mine.decide({}, document))[0]


async def test_attestation_policies_set_by_another_process_apply_next_time(
    tmp_path: Path, settled_at_once: None
) -> None:
    mine = AttestationPolicyStore(LocalFsStore(tmp_path), PolicyCache())
    theirs = AttestationPolicyStore(LocalFsStore(tmp_path), PolicyCache())
    first = "package policy\nimport rego.v1\ndefault executables := 1\n"
    second = "package policy\nimport rego.v1\ndefault executables := 2\n"
    await theirs.set_policy("mine", first)
    assert (await mine.get("mine")).text == first
    await theirs.set_policy("mine", second)
    assert (await mine.get("mine")).text == second


def sample_message(values: dict[str, object]) -> bytes:
    payload = base64.b64encode(json.dumps(values).encode()).decode()
    return json.dumps({"version": "0.1.0", "type": "sample", "payload": payload}).encode()


async def test_reference_values_changed_by_another_process_apply_next_time(
    tmp_path: Path, settled_at_once: None
) -> None:
    mine_store = LocalFsStore(tmp_path)
    mine, theirs = ReferenceValueStore(mine_store), ReferenceValueStore(LocalFsStore(tmp_path))
    assert await mine.snapshot() == {}
    await theirs.register(sample_message({"svn": ["1"]}))
    assert await mine.snapshot() == {"svn": '["1"]'}
    await theirs.register(sample_message({"svn": ["2"], "launch_digest": ["ab"]}))
    assert await mine.snapshot() == {"svn": '["2"]', "launch_digest": '["ab"]'}
    record = tmp_path / NS_REFERENCE_VALUE / "svn"
    edit_in_place(record, record.read_bytes().replace(b'["2"]', b'["3"]'))
    assert (await mine.snapshot())["svn"] == '["3"]'
    await LocalFsStore(tmp_path).delete(NS_REFERENCE_VALUE, "svn")
    assert await mine.snapshot() == {"launch_digest": '["ab"]'}


async def test_an_unchanged_snapshot_is_not_rebuilt(
    tmp_path: Path, settled_at_once: None, reads: list[str]
) -> None:
    rvps = ReferenceValueStore(LocalFsStore(tmp_path))
    await rvps.register(sample_message({"svn": ["1"]}))
    first = await rvps.snapshot()
    for _ in range(3):
        assert await rvps.snapshot() is first
    assert reads == ["svn"]
