"""The standalone RVPS (`trustee rvps serve`, `rvps`) as a real process on reference.proto, and
Attestation Services (the gRPC AS and the KBS's built-in one) whose `rvps_config` is
`GrpcRemote`: a policy that needs a reference value passes once the RVPS holds it, an RVPS
that goes away fails evaluations with a reason naming it, and one that comes back heals them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio

from tests.e2e.grpc_harness import RVPS, RunningGrpc, aborted, as_argv, run_grpc, rvps_argv
from tests.e2e.harness import DEV_CONFIG, free_port, run_kbs, run_module
from tests.e2e.test_grpc_as import evaluate, evidence_text, sample_message, set_policy
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jws import split_compact
from trustee.grpc_api import attestation_pb2 as pb
from trustee.grpc_api import reference_pb2, reference_pb2_grpc
from trustee.grpc_api.bridge import unary

pytestmark = pytest.mark.e2e

# Trusts the sample evidence's svn only when the RVPS lists it.
RV_POLICY = """package policy
import rego.v1
default executables := 33
executables := 2 if input.sample.svn in query_reference_value("sample_svn")
trust_claims := {"executables": executables, "hardware": 2}
"""
# Generous: the AS refreshes its reference values every few seconds, and a reconnect follows
# a short backoff; the failure this bounds is a wait that never ends.
SETTLE_S = 30


async def register(rvps: RunningGrpc, values: dict[str, Any]) -> None:
    with rvps.channel() as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        request = reference_pb2.ReferenceValueRegisterRequest(message=sample_message(values))
        await unary(stub.RegisterReferenceValue, request, 10)


async def query(rvps: RunningGrpc, rv_id: str) -> Any | None:
    with rvps.channel() as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        request = reference_pb2.ReferenceValueQueryRequest(reference_value_id=rv_id)
        reply = await unary(stub.QueryReferenceValue, request, 10)
    if not reply.HasField("reference_value_results"):
        return None
    return json.loads(reply.reference_value_results)


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


async def test_register_and_query_on_the_records_file_form(tmp_path: Path) -> None:
    records = tmp_path / "reference_values.json"
    config = write_json(
        tmp_path / "rvps.json", {"storage": {"type": "LocalJson", "file_path": str(records)}}
    )
    async with run_grpc(rvps_argv(config), tmp_path / "rvps.log") as rvps:
        await register(rvps, {"svn": ["1", "2"], "launch": {"digest": "ab"}})
        assert await query(rvps, "svn") == ["1", "2"]
        assert await query(rvps, "launch") == {"digest": "ab"}
        assert await query(rvps, "unknown") is None
        assert {r["name"] for r in json.loads(records.read_text())} == {"svn", "launch"}
        with rvps.channel() as channel:
            stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
            for message in ("not json", json.dumps({"type": "nope", "payload": ""})):
                request = reference_pb2.ReferenceValueRegisterRequest(message=message)
                text = await aborted(unary(stub.RegisterReferenceValue, request, 10))
                assert text.startswith("Register reference value: "), text


def rvps_config(tmp_path: Path) -> Path:
    """Today's form: the storage backend table, LocalFs, so a restart keeps the values."""
    storage = {"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": str(tmp_path)}}}
    return write_json(tmp_path / "rvps.json", {"storage": storage})


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    with trio.move_on_after(SETTLE_S):
        while not await check():
            await trio.sleep(0.2)
        return
    raise AssertionError(f"not within {SETTLE_S} s: {what}")


async def executables(server: RunningGrpc) -> int | str:
    """The sample evidence's `executables` claim under RV_POLICY, or the refusal."""
    item = pb.IndividualAttestationRequest(
        tee="sample", evidence=evidence_text({"svn": "1", "report_data": ""})
    )
    try:
        token = await evaluate(server, item, policy_ids=["rv"])
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.details() or ""
    claims = split_compact(token).claims()
    value = claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["executables"]
    assert isinstance(value, int)
    return value


async def test_a_grpc_as_on_a_remote_rvps_fails_cleanly_and_heals(tmp_path: Path) -> None:
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    as_file = write_json(
        tmp_path / "as.json", {"rvps_config": {"type": "GrpcRemote", "address": address}}
    )
    rvps_dir, rvps_log = tmp_path / "rvps", tmp_path / "rvps.log"
    rvps_dir.mkdir()
    async with run_grpc(as_argv(as_file), tmp_path / "as.log") as grpc_as:
        await set_policy(grpc_as, "rv_cpu", b64url_encode(RV_POLICY.encode()))
        async with run_grpc(rvps_argv(rvps_config(rvps_dir)), rvps_log, port=port) as rvps:
            assert await executables(grpc_as) == 33  # the RVPS does not list the svn yet
            await register(rvps, {"sample_svn": ["1"]})

            async def affirmed() -> bool:
                return await executables(grpc_as) == 2

            await eventually(affirmed, "the registered value reaches the policy")
            # The AS's own reference.proto service forwards to the remote RVPS.
            with grpc_as.channel() as channel:
                stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
                message = sample_message({"via_as": ["yes"]})
                request = reference_pb2.ReferenceValueRegisterRequest(message=message)
                await unary(stub.RegisterReferenceValue, request, 10)
            assert await query(rvps, "via_as") == ["yes"]

        async def refused() -> bool:
            with trio.fail_after(SETTLE_S):  # each evaluation ends; none hangs
                outcome = await executables(grpc_as)
            return isinstance(outcome, str)

        await eventually(refused, "the evaluation fails once the RVPS is gone")
        reason = await executables(grpc_as)
        assert isinstance(reason, str)
        assert reason.startswith("Attestation evaluation failed: \n0: reference values: ")
        assert f"RVPS at {address} unreachable" in reason
        async with run_grpc(rvps_argv(rvps_config(rvps_dir)), rvps_log, port=port):
            await eventually(affirmed, "the AS heals when the RVPS is back")


async def test_a_kbs_on_a_remote_rvps(tmp_path: Path) -> None:
    port = free_port()

    def argv(chosen: int) -> list[str]:  # `rvps` with upstream's flags
        return [*RVPS, "-c", str(rvps_config(tmp_path)), "-a", f"127.0.0.1:{chosen}"]

    config = DEV_CONFIG + (
        f'[attestation_service.rvps_config]\ntype = "GrpcRemote"\naddress = "127.0.0.1:{port}"\n'
    )
    async with (
        run_grpc(argv, tmp_path / "rvps.log", port=port) as rvps,
        run_kbs(config, tmp_path) as kbs,
        kbs.client() as http,
    ):
        r = await http.post(
            "/kbs/v0/reference-value", content=sample_message({"sample_svn": ["1"]})
        )
        assert r.status_code == 200, r.text
        assert await query(rvps, "sample_svn") == ["1"]
        r = await http.get("/kbs/v0/reference-value/sample_svn")
        assert (r.status_code, r.json()) == (200, ["1"])
        r = await http.post(
            "/kbs/v0/attestation-policy",
            json={"policy_id": "default_cpu", "policy": b64url_encode(RV_POLICY.encode())},
        )
        assert r.status_code == 200, r.text
        code, token, err = await run_module("trustee.client.cli", "--url", kbs.url, "attest")
        assert code == 0, err
        claims = split_compact(token.strip()).claims()
        assert claims["submods"]["cpu0"]["ear.trustworthiness-vector"]["executables"] == 2
