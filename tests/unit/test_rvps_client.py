"""The remote RVPS client: the ids a snapshot fetches (those the policies name), how long it
keeps them, and how it fails; against an in-process RVPS server on a loopback port."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import trio

from tests.e2e.harness import free_port
from trustee.as_server.grpc_as import ReferenceValueServicer
from trustee.as_server.grpc_run import RVPS_WORDS
from trustee.attestation.rvps import ReferenceValueStore, RvpsError
from trustee.grpc_api import reference_pb2_grpc
from trustee.grpc_api.bridge import TrioPortal
from trustee.remote_as.rvps_client import RemoteReferenceValues, channel_target, named_ids
from trustee.storage.memory import MemoryStore


def test_the_ids_a_policy_names() -> None:
    text = r"""
    allow if input.sample.svn in query_reference_value("svn")
    x := query_reference_value( "a\"b" )
    y := query_reference_value(concat("", ["computed"]))
    old if input.x == data.reference.launch_digest
    old if input.y == data.reference["tcb-level"]
    """
    assert named_ids(text) == {"svn", 'a"b', "launch_digest", "tcb-level"}


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("rvps:50003", ("rvps:50003", False)),
        ("http://rvps:50003", ("rvps:50003", False)),
        ("https://rvps:50003/", ("rvps:50003", True)),
    ],
)
def test_addresses_with_or_without_a_scheme(address: str, target: tuple[str, bool]) -> None:
    assert channel_target(address) == target


class Calls(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.methods.append(handler_call_details.method.rsplit("/", 1)[1])
        return continuation(handler_call_details)


@dataclass
class Rvps:
    address: str
    calls: Calls
    store: ReferenceValueStore
    policies: list[bytes] = field(default_factory=list)

    async def sources(self) -> list[bytes]:
        return self.policies


@pytest.fixture
async def rvps() -> AsyncIterator[Rvps]:
    calls = Calls()
    server = grpc.server(ThreadPoolExecutor(max_workers=8), interceptors=[calls])
    store = ReferenceValueStore(MemoryStore())
    portal = TrioPortal(trio.lowlevel.current_trio_token(), 10)
    servicer = ReferenceValueServicer(store, portal, RVPS_WORDS)
    reference_pb2_grpc.add_ReferenceValueProviderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        await nursery.start(portal.serve)
        server.start()
        try:
            yield Rvps(f"127.0.0.1:{port}", calls, store)
        finally:
            await trio.to_thread.run_sync(lambda: server.stop(0).wait())
            nursery.cancel_scope.cancel()


def message(values: dict[str, Any]) -> bytes:
    payload = base64.b64encode(json.dumps(values).encode()).decode()
    return json.dumps({"version": "0.1.0", "type": "sample", "payload": payload}).encode()


POLICY = b'allow if input.a in query_reference_value("a")\nb := query_reference_value("b")\n'


async def test_a_snapshot_holds_what_the_policies_name_for_a_while(rvps: Rvps) -> None:
    await rvps.store.register(message({"a": [1], "b": {"k": "v"}, "unnamed": 3}))
    rvps.policies = [POLICY]
    remote = RemoteReferenceValues(rvps.address, rvps.sources, ttl=0.5)
    first = await remote.snapshot()
    assert {k: json.loads(v) for k, v in first.items()} == {"a": [1], "b": {"k": "v"}}
    assert sorted(rvps.calls.methods) == ["QueryReferenceValue"] * 2
    # Within the TTL the same object comes back (the native form is built once per object).
    assert await remote.snapshot() is first
    assert len(rvps.calls.methods) == 2
    await rvps.store.register(message({"a": [2]}))
    await trio.sleep(0.6)
    assert json.loads((await remote.snapshot())["a"]) == [2]


async def test_concurrent_evaluations_share_one_refresh(rvps: Rvps) -> None:
    await rvps.store.register(message({"a": [1], "b": 2}))
    rvps.policies = [POLICY]
    remote = RemoteReferenceValues(rvps.address, rvps.sources)
    snapshots: list[dict[str, str]] = []
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(lambda: _append(snapshots, remote.snapshot()))
    assert len(snapshots) == 20 and all(s is snapshots[0] for s in snapshots)
    assert len(rvps.calls.methods) == 2


async def _append(into: list[dict[str, str]], snapshot: Any) -> None:
    into.append(await snapshot)


async def test_registering_through_the_client_is_seen_at_once(rvps: Rvps) -> None:
    rvps.policies = [POLICY]
    remote = RemoteReferenceValues(rvps.address, rvps.sources, ttl=3600)
    assert await remote.snapshot() == {}
    await remote.register(message({"a": ["x"]}))
    assert json.loads((await remote.snapshot())["a"]) == ["x"]
    assert await remote.query("a") == ["x"]
    assert await remote.query("nothing") is None
    with pytest.raises(RvpsError, match=r"RVPS at .* \(register\): ABORTED: Register reference"):
        await remote.register(b"{}")


async def test_an_unreachable_rvps_fails_fast_naming_it() -> None:
    address = f"http://127.0.0.1:{free_port()}"

    async def sources() -> list[bytes]:
        return [POLICY]

    remote = RemoteReferenceValues(address, sources, timeout=2)
    with trio.fail_after(10), pytest.raises(RvpsError, match=f"RVPS at {address} unreachable"):
        await remote.snapshot()
    with pytest.raises(RvpsError, match="unreachable"):
        await remote.query("a")
