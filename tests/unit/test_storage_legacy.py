"""v0.11-era storage: the LocalFs plain resource tree and the RVPS
LocalJson reference-value file.

PlainTreeStore: `<dir>/<repo>/<type>/<tag>` holds the secret's bytes, symlinks followed (Kubernetes
Secret volumes), `prepare()` creates `<dir>/default`. ReferenceValueFile: a JSON array of records
with `hash-value` (old) or `value`, expired records skipped, edits picked up, `set` rewrites the
array; the built-in RVPS snapshot follows the file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import seed_file, seed_path
from trustee.attestation.rvps import ReferenceValueStore
from trustee.plugins.base import PluginError, PluginRequest
from trustee.plugins.resource import ResourcePlugin
from trustee.storage.kv import NS_REFERENCE_VALUE, NS_REPOSITORY, StorageError
from trustee.storage.plaintree import PlainTreeStore
from trustee.storage.rvfile import ReferenceValueFile

SEED_DIR = seed_path()
NS = NS_REFERENCE_VALUE
FUTURE = "2099-01-01T00:00:00Z"
PAST = "2000-01-01T00:00:00Z"


def kubernetes_secret_volume(mount: Path, files: dict[str, bytes]) -> None:
    """What kubelet's AtomicWriter leaves in a Secret volume mount point.

    <mount>/..2025_01_12_10_00_00.123456789/<key>  (the real files)
    <mount>/..data -> ..2025_01_12_10_00_00.123456789
    <mount>/<key>  -> ..data/<key>
    """
    mount.mkdir(parents=True, exist_ok=True)
    stamp = "..2025_01_12_10_00_00.123456789"
    (mount / stamp).mkdir()
    for name, content in files.items():
        (mount / stamp / name).write_bytes(content)
    (mount / "..data").symlink_to(stamp)
    for name in files:
        (mount / name).symlink_to(Path("..data") / name)


# --- PlainTreeStore ---------------------------------------------------------------------------


def test_prepare_creates_the_root_and_default(tmp_path: Path) -> None:
    root = tmp_path / "opt" / "kbs" / "repository"
    store = PlainTreeStore(root)
    store.prepare()
    assert (root / "default").is_dir()
    # Idempotent, and existing content is kept.
    (root / "default" / "k").mkdir()
    store.prepare()
    assert (root / "default" / "k").is_dir()


def test_prepare_fails_with_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create resource repository"):
        PlainTreeStore(blocker / "repo").prepare()


async def test_round_trip_uses_the_plain_tree(tmp_path: Path) -> None:
    store = PlainTreeStore(tmp_path)
    assert await store.get(NS_REPOSITORY, "default/key/1") is None
    assert await store.set(NS_REPOSITORY, "default/key/1", b"one")
    # A plain file per resource (not the HEAD `\x2F` flat layout), namespace ignored.
    assert (tmp_path / "default" / "key" / "1").read_bytes() == b"one"
    assert not list(tmp_path.rglob("*x2F*"))
    assert await store.get(NS_REPOSITORY, "default/key/1") == b"one"
    assert await store.get("any-namespace", "default/key/1") == b"one"

    assert not await store.set(NS_REPOSITORY, "default/key/1", b"two", overwrite=False)
    assert await store.get(NS_REPOSITORY, "default/key/1") == b"one"
    assert await store.set(NS_REPOSITORY, "default/key/1", b"three")
    assert await store.get(NS_REPOSITORY, "default/key/1") == b"three"

    # Writes create <repo>/<type> as needed; binary content survives.
    blob = bytes(range(256))
    assert await store.set(NS_REPOSITORY, "newrepo/newtype/tag", blob)
    assert (tmp_path / "newrepo" / "newtype" / "tag").read_bytes() == blob

    assert await store.delete(NS_REPOSITORY, "default/key/1")
    assert not await store.delete(NS_REPOSITORY, "default/key/1")
    assert await store.get(NS_REPOSITORY, "default/key/1") is None
    # No temporary files are left behind.
    assert not [p for p in tmp_path.rglob(".tmp-*")]


async def test_files_placed_by_an_operator_are_served(tmp_path: Path) -> None:
    (tmp_path / "default" / "kbsres1").mkdir(parents=True)
    (tmp_path / "default" / "kbsres1" / "key1").write_bytes(b"res1val1")
    store = PlainTreeStore(tmp_path)
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"res1val1"


async def test_kubernetes_secret_volume_is_served(tmp_path: Path) -> None:
    # The seed: Secret kbsres1 mounted at <repository>/default/kbsres1 (key1 = res1val1).
    root = tmp_path / "repository"
    store = PlainTreeStore(root)
    store.prepare()
    kubernetes_secret_volume(root / "default" / "kbsres1", {"key1": b"res1val1", "key2": b"v2"})
    assert (root / "default" / "kbsres1" / "key1").is_symlink()
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"res1val1"
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key2") == b"v2"
    assert await store.list(NS_REPOSITORY) == ["default/kbsres1/key1", "default/kbsres1/key2"]

    # kubelet updates the Secret by swapping ..data: the new value is served at once.
    new = root / "default" / "kbsres1" / "..2025_02_01_00_00_00.000000001"
    new.mkdir()
    (new / "key1").write_bytes(b"rotated")
    (new / "key2").write_bytes(b"v2")
    tmp_link = root / "default" / "kbsres1" / "..data_tmp"
    tmp_link.symlink_to(new.name)
    os.replace(tmp_link, root / "default" / "kbsres1" / "..data")
    assert await store.get(NS_REPOSITORY, "default/kbsres1/key1") == b"rotated"


async def test_symlinked_type_directory_is_served(tmp_path: Path) -> None:
    elsewhere = tmp_path / "mounted"
    elsewhere.mkdir()
    (elsewhere / "tag").write_bytes(b"linked")
    root = tmp_path / "repository"
    (root / "default").mkdir(parents=True)
    (root / "default" / "linked").symlink_to(elsewhere, target_is_directory=True)
    store = PlainTreeStore(root)
    assert await store.get(NS_REPOSITORY, "default/linked/tag") == b"linked"
    assert "default/linked/tag" in await store.list(NS_REPOSITORY)


async def test_directories_and_dangling_links_are_not_resources(tmp_path: Path) -> None:
    store = PlainTreeStore(tmp_path)
    await store.set(NS_REPOSITORY, "default/key/1", b"x")
    assert await store.get(NS_REPOSITORY, "default/key") is None
    assert await store.get(NS_REPOSITORY, "default") is None
    assert await store.get(NS_REPOSITORY, "default/key/1/deeper") is None
    (tmp_path / "default" / "key" / "dangling").symlink_to(tmp_path / "nowhere")
    assert await store.get(NS_REPOSITORY, "default/key/dangling") is None


@pytest.mark.parametrize(
    "bad",
    [
        "../outside/x",
        "default/../../outside",
        "default/key/..",
        "/etc/passwd",
        "default//x",
        "default/./x",
        "default/key/",
        "default\\..\\..\\x",
        "default/key/a b",
        "default/key/x\x00y",
        "",
    ],
)
async def test_path_tricks_are_rejected(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "repository"
    store = PlainTreeStore(root)
    store.prepare()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_bytes(b"secret outside the repository")
    assert await store.get(NS_REPOSITORY, bad) is None
    with pytest.raises(StorageError):
        await store.set(NS_REPOSITORY, bad, b"pwned")
    with pytest.raises(StorageError):
        await store.delete(NS_REPOSITORY, bad)
    assert (tmp_path / "outside" / "x").read_bytes() == b"secret outside the repository"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "repository"]


async def test_list(tmp_path: Path) -> None:
    store = PlainTreeStore(tmp_path)
    assert await store.list(NS_REPOSITORY) == []
    store.prepare()
    for key in ("default/b/2", "default/a/1", "other/t/x"):
        await store.set(NS_REPOSITORY, key, b"v")
    kubernetes_secret_volume(tmp_path / "default" / "kbsres1", {"key1": b"res1val1"})
    # Things that are not <repo>/<type>/<tag> files are not listed.
    (tmp_path / "toplevel").write_bytes(b"depth 1")
    (tmp_path / "default" / "depth2").write_bytes(b"depth 2")
    (tmp_path / "default" / "a" / "dir").mkdir()
    (tmp_path / "default" / "a" / "dir" / "depth4").write_bytes(b"depth 4")
    (tmp_path / "default" / "a" / ".tmp-abc").write_bytes(b"half-written")
    assert await store.list(NS_REPOSITORY) == [
        "default/a/1",
        "default/b/2",
        "default/kbsres1/key1",
        "other/t/x",
    ]


async def test_unreadable_entry_is_a_plugin_error_not_an_os_error(tmp_path: Path) -> None:
    # Read failures other than "absent" (a symlink loop here; EACCES on a Secret file with a
    # restrictive defaultMode alike) must reach the plugin as StorageError → PluginError
    # (401 PluginInternalError, v0.11), never as a raw OSError (HTTP 500).
    store = PlainTreeStore(tmp_path)
    (tmp_path / "default" / "loop").mkdir(parents=True)
    (tmp_path / "default" / "loop" / "key").symlink_to("key")
    with contextlib.suppress(StorageError):
        assert await store.get(NS_REPOSITORY, "default/loop/key") is None
    plugin = ResourcePlugin(store)
    with pytest.raises(PluginError):
        await plugin.handle(
            PluginRequest(method="GET", path=["default", "loop", "key"], query={}, body=b"")
        )


async def test_resource_plugin_over_the_tree_refuses_hidden_segments(tmp_path: Path) -> None:
    store = PlainTreeStore(tmp_path)
    kubernetes_secret_volume(tmp_path / "default" / "kbsres1", {"key1": b"res1val1"})
    plugin = ResourcePlugin(store)
    ok = await plugin.handle(
        PluginRequest(method="GET", path=["default", "kbsres1", "key1"], query={}, body=b"")
    )
    assert ok == b"res1val1"
    for path in (["default", "kbsres1", "..data"], ["default", ".hidden", "x"]):
        with pytest.raises(PluginError):
            await plugin.handle(PluginRequest(method="GET", path=path, query={}, body=b""))
    with pytest.raises(PluginError):
        await plugin.handle(
            PluginRequest(method="POST", path=["default", "kbsres1", ".x"], query={}, body=b"v")
        )
    assert not (tmp_path / "default" / "kbsres1" / ".x").exists()


# --- ReferenceValueFile -------------------------------------------------------------------------


def old_record(name: str, values: list[str], expiration: str = FUTURE) -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "name": name,
        "expiration": expiration,
        "hash-value": [{"alg": "sha256", "value": v} for v in values],
    }


def new_record(name: str, value: Any, expiration: str = FUTURE) -> dict[str, Any]:
    return {"version": "0.1.0", "name": name, "expiration": expiration, "value": value}


def write_records(path: Path, records: list[dict[str, Any]], bump: int = 0) -> None:
    """Write the file and move its mtime (`bump` seconds ahead) so the change is visible."""
    path.write_text(json.dumps(records, indent=2))
    if bump:
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


async def test_seed_empty_array_file(tmp_path: Path) -> None:
    path = tmp_path / "reference-values.json"
    path.write_text("[\n]")  # the seed ConfigMap's content
    seed = SEED_DIR / "reference-values.json"
    if seed.is_file():
        assert json.loads(seed.read_text()) == json.loads(path.read_text())
    rv = ReferenceValueFile(path)
    assert await rv.list(NS) == []
    assert await rv.get(NS, "svn") is None
    assert await ReferenceValueStore(rv).snapshot() == {}


async def test_the_seed_file_itself_loads() -> None:
    seed = seed_file("reference-values.json")
    rv = ReferenceValueFile(seed)
    assert await rv.list(NS) == []


async def test_missing_and_empty_files_have_no_values(tmp_path: Path) -> None:
    rv = ReferenceValueFile(tmp_path / "absent.json")
    assert await rv.list(NS) == []
    assert rv.stamp() is None
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    assert await ReferenceValueFile(empty).list(NS) == []


async def test_old_hash_value_records_become_value_lists(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    write_records(path, [old_record("svn", ["1", "2"]), old_record("launch_digest", ["abcde"])])
    rv = ReferenceValueFile(path)
    assert await rv.list(NS) == ["launch_digest", "svn"]
    raw = await rv.get(NS, "svn")
    assert raw is not None
    record = json.loads(raw)
    assert record["value"] == ["1", "2"]
    assert "hash-value" not in record
    assert record["name"] == "svn" and record["expiration"] == FUTURE
    store = ReferenceValueStore(rv)
    assert await store.query("svn") == ["1", "2"]
    assert await store.query("nope") is None
    snapshot = await store.snapshot()
    assert {k: json.loads(v) for k, v in snapshot.items()} == {
        "svn": ["1", "2"],
        "launch_digest": ["abcde"],
    }


async def test_value_records_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    write_records(path, [new_record("major_version", 1), new_record("svn", ["3"])])
    store = ReferenceValueStore(ReferenceValueFile(path))
    assert await store.query("major_version") == 1
    assert await store.query("svn") == ["3"]


async def test_expired_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    write_records(
        path,
        [
            old_record("old", ["x"], expiration=PAST),
            new_record("old_new", ["x"], expiration=PAST),
            old_record("live", ["y"]),
            {"version": "0.1.0", "name": "no_expiry", "value": ["z"]},
        ],
    )
    rv = ReferenceValueFile(path)
    assert await rv.list(NS) == ["live", "no_expiry"]
    assert await rv.get(NS, "old") is None
    assert await rv.get(NS, "old_new") is None
    snapshot = await ReferenceValueStore(rv).snapshot()
    assert sorted(snapshot) == ["live", "no_expiry"]


async def test_records_without_a_name_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    path.write_text(json.dumps([{"value": ["x"]}, "junk", 3, old_record("svn", ["1"])]))
    assert await ReferenceValueFile(path).list(NS) == ["svn"]


@pytest.mark.parametrize("content", ['{"svn": ["1"]}', "[", "not json"])
async def test_malformed_file_is_a_storage_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "rv.json"
    path.write_text(content)
    with pytest.raises(StorageError, match=str(path)):
        await ReferenceValueFile(path).list(NS)


async def test_file_edit_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    write_records(path, [old_record("svn", ["1"])])
    rv = ReferenceValueFile(path)
    store = ReferenceValueStore(rv)
    assert await store.query("svn") == ["1"]
    first = await store.snapshot()
    assert json.loads(first["svn"]) == ["1"]

    # Same size, new content: only the mtime tells.
    write_records(path, [old_record("svn", ["2"])], bump=5)
    assert await store.query("svn") == ["2"]
    assert json.loads((await store.snapshot())["svn"]) == ["2"]

    write_records(path, [old_record("svn", ["2"]), old_record("launch_digest", ["abcde"])], bump=10)
    assert sorted(await store.snapshot()) == ["launch_digest", "svn"]

    path.unlink()
    assert await store.snapshot() == {}
    assert await rv.list(NS) == []


async def test_snapshot_drops_records_that_expire_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file does not change, time passes: a record past its expiration must stop counting,
    # in the policy-evaluation snapshot as in a direct query (v0.11 checked on every query).
    import trustee.storage.rvfile as rvfile

    real = datetime
    offset = [timedelta(0)]

    class Clock(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) + offset[0]

    monkeypatch.setattr(rvfile, "datetime", Clock)
    soon = (real.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "rv.json"
    write_records(path, [old_record("svn", ["1"], expiration=soon), old_record("keep", ["k"])])
    store = ReferenceValueStore(ReferenceValueFile(path))
    assert sorted(await store.snapshot()) == ["keep", "svn"]
    offset[0] = timedelta(hours=2)
    assert await store.query("svn") is None
    assert sorted(await store.snapshot()) == ["keep"]


async def test_set_writes_an_array(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rv.json"
    rv = ReferenceValueFile(path)
    assert await rv.set(NS, "svn", json.dumps(new_record("svn", ["1"])).encode())
    doc = json.loads(path.read_text())
    assert doc == [new_record("svn", ["1"])]

    # Other records (old form included) are kept as written; the same name is replaced.
    write_records(path, [old_record("launch_digest", ["abcde"]), new_record("svn", ["1"])], 5)
    assert await rv.set(NS, "svn", json.dumps(new_record("svn", ["2"])).encode())
    doc = json.loads(path.read_text())
    assert isinstance(doc, list)
    assert doc == [old_record("launch_digest", ["abcde"]), new_record("svn", ["2"])]
    assert await ReferenceValueStore(rv).query("svn") == ["2"]

    assert not await rv.set(
        NS, "svn", json.dumps(new_record("svn", ["3"])).encode(), overwrite=False
    )
    assert json.loads(path.read_text())[-1]["value"] == ["2"]
    assert await rv.set(NS, "other", b"{}", overwrite=False) is True

    with pytest.raises(StorageError):
        await rv.set(NS, "bad", b"not json")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]


async def test_delete_rewrites_the_array(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    write_records(path, [old_record("a", ["1"]), old_record("b", ["2"])])
    rv = ReferenceValueFile(path)
    assert await rv.delete(NS, "a")
    assert not await rv.delete(NS, "a")
    assert [r["name"] for r in json.loads(path.read_text())] == ["b"]


async def test_register_through_the_rvps_lands_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rv.json"
    path.write_text("[\n]")
    store = ReferenceValueStore(ReferenceValueFile(path))
    assert await store.snapshot() == {}
    payload = base64.b64encode(json.dumps({"svn": ["1"]}).encode()).decode()
    names = await store.register(
        json.dumps({"version": "0.1.0", "type": "sample", "payload": payload}).encode()
    )
    assert names == ["svn"]
    doc = json.loads(path.read_text())
    assert isinstance(doc, list) and len(doc) == 1
    assert doc[0]["name"] == "svn" and doc[0]["value"] == ["1"]
    assert json.loads((await store.snapshot())["svn"]) == ["1"]
    # A fresh reader (a restart) sees the same value.
    assert await ReferenceValueStore(ReferenceValueFile(path)).query("svn") == ["1"]
