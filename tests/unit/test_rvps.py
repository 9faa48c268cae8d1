"""Built-in RVPS: sample-extractor registration, record format, query, snapshot."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from trustee.attestation.rvps import ReferenceValueStore, RvpsError
from trustee.storage.kv import NS_REFERENCE_VALUE
from trustee.storage.memory import MemoryStore

EXPIRATION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def sample_message(values: Any, **fields: Any) -> bytes:
    payload = base64.b64encode(json.dumps(values).encode()).decode()
    message: dict[str, Any] = {"version": "0.1.0", "type": "sample", "payload": payload}
    message.update(fields)
    return json.dumps({k: v for k, v in message.items() if v is not None}).encode()


def make() -> tuple[MemoryStore, ReferenceValueStore]:
    store = MemoryStore()
    return store, ReferenceValueStore(store)


async def test_register_stores_upstream_records() -> None:
    store, rvps = make()
    values = {
        "svn": ["1"],
        "launch_digest": ["abcde"],
        "major_version": 1,
        "debug": False,
        "nested": {"a": [1, 2]},
    }
    names = await rvps.register(sample_message(values))
    assert sorted(names) == sorted(values)
    assert await store.list(NS_REFERENCE_VALUE) == sorted(values)
    now = datetime.now(UTC)
    for name, value in values.items():
        raw = await store.get(NS_REFERENCE_VALUE, name)
        assert raw is not None
        record = json.loads(raw)
        assert list(record) == ["version", "name", "expiration", "value"]
        assert record["version"] == "0.1.0"
        assert record["name"] == name
        assert record["value"] == value
        assert EXPIRATION_RE.match(record["expiration"]), record["expiration"]
        expires = datetime.strptime(record["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        # about 12 months from now
        assert 360 <= (expires - now).days <= 367


async def test_query_returns_only_the_value() -> None:
    _, rvps = make()
    await rvps.register(sample_message({"svn": ["1"], "major_version": 1, "flag": True}))
    assert await rvps.query("svn") == ["1"]
    assert await rvps.query("major_version") == 1
    assert await rvps.query("flag") is True
    assert await rvps.query("unknown") is None


async def test_register_overwrites() -> None:
    _, rvps = make()
    await rvps.register(sample_message({"svn": ["1"]}))
    await rvps.register(sample_message({"svn": ["2", "3"]}))
    assert await rvps.query("svn") == ["2", "3"]


async def test_version_defaults_to_0_1_0() -> None:
    _, rvps = make()
    await rvps.register(sample_message({"svn": ["1"]}, version=None))
    assert await rvps.query("svn") == ["1"]


@pytest.mark.parametrize("version", ["0.2.0", "0.1", "1.0.0", "", 1])
async def test_other_message_versions_rejected(version: Any) -> None:
    store, rvps = make()
    with pytest.raises(RvpsError, match="version"):
        await rvps.register(sample_message({"svn": ["1"]}, version=version))
    assert await store.list(NS_REFERENCE_VALUE) == []


@pytest.mark.parametrize("kind", ["in-toto", "slsa", "Sample"])
async def test_unknown_extractor(kind: str) -> None:
    _, rvps = make()
    with pytest.raises(RvpsError, match=f"Could not find extractor for {kind}$"):
        await rvps.register(sample_message({"svn": ["1"]}, type=kind))


@pytest.mark.parametrize(
    "payload",
    [
        "not base64!",
        "eyJzdm4iOiBbIjEiXX0-",  # URL-safe alphabet is not standard base64
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'["svn", "1"]').decode(),
        base64.b64encode(b'"svn"').decode(),
        base64.b64encode(b"1").decode(),
        base64.b64encode(b"null").decode(),
    ],
)
async def test_bad_payload_rejected(payload: str) -> None:
    store, rvps = make()
    message = json.dumps({"version": "0.1.0", "type": "sample", "payload": payload}).encode()
    with pytest.raises(RvpsError):
        await rvps.register(message)
    assert await store.list(NS_REFERENCE_VALUE) == []


@pytest.mark.parametrize(
    "message",
    [
        b"not json",
        b"[]",
        b'"x"',
        b'{"version": "0.1.0", "type": "sample"}',
        b'{"version": "0.1.0", "payload": "e30="}',
        b'{"version": "0.1.0", "type": "sample", "payload": {"svn": ["1"]}}',
        b"\xff\xfe",
    ],
)
async def test_bad_message_rejected(message: bytes) -> None:
    _, rvps = make()
    with pytest.raises(RvpsError):
        await rvps.register(message)


async def test_empty_payload_object_registers_nothing() -> None:
    store, rvps = make()
    assert await rvps.register(sample_message({})) == []
    assert await store.list(NS_REFERENCE_VALUE) == []


async def test_snapshot_refreshes_after_register() -> None:
    _, rvps = make()
    assert await rvps.snapshot() == {}
    await rvps.register(sample_message({"svn": ["1"], "major_version": 1}))
    snapshot = await rvps.snapshot()
    assert {k: json.loads(v) for k, v in snapshot.items()} == {"svn": ["1"], "major_version": 1}
    assert all(isinstance(v, str) for v in snapshot.values())
    await rvps.register(sample_message({"svn": ["2"], "launch_digest": ["abcde"]}))
    snapshot = await rvps.snapshot()
    assert {k: json.loads(v) for k, v in snapshot.items()} == {
        "svn": ["2"],
        "major_version": 1,
        "launch_digest": ["abcde"],
    }


async def test_snapshot_reads_records_already_in_storage() -> None:
    store = MemoryStore()
    record = {
        "version": "0.1.0",
        "name": "svn",
        "expiration": "1970-01-01T00:00:00Z",
        "value": ["1"],
    }
    await store.set(NS_REFERENCE_VALUE, "svn", json.dumps(record).encode())
    rvps = ReferenceValueStore(store)
    # expiration is not enforced on query
    assert await rvps.query("svn") == ["1"]
    assert json.loads((await rvps.snapshot())["svn"]) == ["1"]


async def test_corrupt_record_is_an_error() -> None:
    store = MemoryStore()
    await store.set(NS_REFERENCE_VALUE, "svn", b"{not json")
    await store.set(NS_REFERENCE_VALUE, "old", json.dumps({"name": "old"}).encode())
    rvps = ReferenceValueStore(store)
    with pytest.raises(RvpsError, match="svn"):
        await rvps.query("svn")
    with pytest.raises(RvpsError, match="old"):
        await rvps.query("old")


async def test_uri_style_reference_value_ids() -> None:
    # Upstream's RVPS suggests ids like `rvps:///<ns>/…/<name>[:tag]` (opaque, exact match).
    # Upstream's default Memory backend stores them; only LocalFs restricts key characters.
    _, rvps = make()
    rv_id = "rvps:///github.com/confidential-containers/tdx/mr_td:v0.18.0"
    await rvps.register(sample_message({rv_id: ["aa" * 48]}))
    assert await rvps.query(rv_id) == ["aa" * 48]
    assert await rvps.query("rvps:///github.com/confidential-containers/tdx/mr_td") is None
    assert json.loads((await rvps.snapshot())[rv_id]) == ["aa" * 48]
