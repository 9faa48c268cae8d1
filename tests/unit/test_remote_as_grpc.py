"""The `coco_as_grpc` client against a real grpcio server in this process: the messages it
sends, its error mapping, its deadline, and that waiting for the AS never blocks trio."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import HealthServicer

from tests.e2e.harness import free_port
from tests.unit.test_remote_as_clients import HANG_S, REQUESTS, token
from trustee import jsonfast
from trustee.attestation.as_wire import to_json
from trustee.attestation.backend import (
    AttestationFailure,
    BackendRefused,
    BackendUnavailable,
    PolicyRefused,
)
from trustee.attestation.rvps import RvpsError
from trustee.config.model import RemoteAsConfig
from trustee.crypto.b64 import b64url_encode
from trustee.grpc_api import (
    attestation_pb2,
    attestation_pb2_grpc,
    reference_pb2,
    reference_pb2_grpc,
)
from trustee.kbs.guest_reasons import guest_reason
from trustee.remote_as.grpc_client import GrpcAs, attestation_request, target


class Servicer(
    attestation_pb2_grpc.AttestationServiceServicer,
    reference_pb2_grpc.ReferenceValueProviderServiceServicer,
):
    """Records what it is sent; `mode` says how it answers."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.mode = "ok"
        self.values: dict[str, str] = {}

    def _answer(self, request: Any, context: grpc.ServicerContext) -> None:
        self.seen.append(request)
        if self.mode == "refuse":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tee `x` not supported")
        if self.mode == "hang":
            time.sleep(3)

    def AttestationEvaluate(self, request: Any, context: Any) -> Any:
        self._answer(request, context)
        return attestation_pb2.AttestationResponse(attestation_token=token())

    def SetAttestationPolicy(self, request: Any, context: Any) -> Any:
        self._answer(request, context)
        return attestation_pb2.SetPolicyResponse()

    def GetAttestationChallenge(self, request: Any, context: Any) -> Any:
        return attestation_pb2.ChallengeResponse()

    def RegisterReferenceValue(self, request: Any, context: Any) -> Any:
        self._answer(request, context)
        return reference_pb2.ReferenceValueRegisterResponse()

    def QueryReferenceValue(self, request: Any, context: Any) -> Any:
        self._answer(request, context)
        value = self.values.get(request.reference_value_id)
        return reference_pb2.ReferenceValueQueryResponse(reference_value_results=value)


@contextmanager
def grpc_as(health: HealthServicer | None = None, port: int = 0) -> Iterator[tuple[str, Servicer]]:
    servicer = Servicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    attestation_pb2_grpc.add_AttestationServiceServicer_to_server(servicer, server)
    reference_pb2_grpc.add_ReferenceValueProviderServiceServicer_to_server(servicer, server)
    if health is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def client(address: str, timeout_ms: int = 2000, pool_size: int = 100) -> GrpcAs:
    return GrpcAs(
        RemoteAsConfig(
            type="coco_as_grpc", address=address, timeout_ms=timeout_ms, pool_size=pool_size
        )
    )


def test_as_addr_becomes_grpcio_target() -> None:
    assert target("http://127.0.0.1:50004") == ("127.0.0.1:50004", False)
    assert target("https://as.svc") == ("as.svc:443", True)
    assert target("http://[::1]:9") == ("[::1]:9", False)


def test_the_message_carries_what_the_rest_body_carries() -> None:
    message = attestation_request(REQUESTS, ["default", "other"])
    rest = to_json(REQUESTS, ["default", "other"])
    assert list(message.policy_ids) == rest["policy_ids"]
    first, second = message.verification_requests
    doc0, doc1 = rest["verification_requests"]
    assert (first.tee, first.evidence, first.runtime_data_hash_algorithm) == (
        doc0["tee"],
        doc0["evidence"],
        "sha384",
    )
    assert json.loads(first.structured_runtime_data) == doc0["runtime_data"]["structured"]
    assert first.init_data_toml == doc0["init_data"]["init_data_toml"]
    assert second.WhichOneof("runtime_data") == "raw_runtime_data"
    assert second.raw_runtime_data == doc1["runtime_data"]["raw"]
    assert second.init_data_digest == doc1["init_data"]["init_data_digest"]
    assert second.runtime_data_hash_algorithm == "sha512"


async def test_evaluate_policy_and_reference_values_round_trip() -> None:
    with grpc_as() as (address, servicer):
        servicer.values["svn"] = jsonfast.dumps_str(["1", "2"])
        remote = client(address, pool_size=2)
        appraised = await remote.evaluate(REQUESTS, ["default"])
        await remote.set_policy("default_cpu", "package policy\n")
        await remote.register_reference_value(b'{"version":"0.1.0"}')
        assert await remote.query_reference_value("svn") == ["1", "2"]
        assert await remote.query_reference_value("unknown") is None
        await remote.evaluate(REQUESTS, ["default"])
        assert len(remote._channels) == 2  # the pool, opened as calls came
        await remote.aclose()
    assert appraised.claims["submods"] == {"cpu0": {"ear.status": "affirming"}}
    evaluate, policy, register, *_ = servicer.seen
    assert evaluate == attestation_request(REQUESTS, ["default"])
    assert (policy.policy_id, policy.policy) == (
        "default_cpu",
        b64url_encode(b"package policy\n"),
    )
    assert register.message == '{"version":"0.1.0"}'


async def test_a_refusal_keeps_the_as_words_for_the_log_only() -> None:
    with grpc_as() as (address, servicer):
        servicer.mode = "refuse"
        remote = client(address)
        with pytest.raises(AttestationFailure) as info:
            await remote.evaluate(REQUESTS, ["default"])
        with pytest.raises(PolicyRefused, match="set policy refused"):
            await remote.set_policy("p", "package policy\n")
        with pytest.raises(RvpsError, match=r"^Failed to register reference value: .*refused"):
            await remote.register_reference_value(b"{}")
        await remote.aclose()
    assert info.value.reason == (
        f"Attestation Service at {address}: attestation refused (INVALID_ARGUMENT): "
        "tee `x` not supported"
    )
    assert isinstance(info.value.__cause__, BackendRefused)
    assert guest_reason(info.value).startswith("the Attestation Service refused the evidence")


async def test_an_as_that_is_not_there_is_unavailable_and_unready() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    remote = client(address)
    started = time.monotonic()
    with pytest.raises(AttestationFailure) as info:
        await remote.evaluate(REQUESTS, ["default"])
    assert time.monotonic() - started < HANG_S
    assert isinstance(info.value.__cause__, BackendUnavailable)
    assert info.value.reason.startswith(
        f"Attestation Service at {address}: attestation failed: UNAVAILABLE"
    )
    assert (await remote.unready() or "").startswith(
        f"Attestation Service at {address}: health check failed: UNAVAILABLE"
    )
    await remote.aclose()


async def count(ticks: list[float]) -> None:
    while True:
        await trio.sleep(0.01)
        ticks.append(trio.current_time())


async def test_a_slow_as_times_out_and_trio_keeps_running_meanwhile() -> None:
    ticks: list[float] = []
    with grpc_as() as (address, servicer):
        servicer.mode = "hang"
        remote = client(address, timeout_ms=500)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(count, ticks)
            started = time.monotonic()
            with pytest.raises(AttestationFailure) as info:
                await remote.evaluate(REQUESTS, ["default"])
            elapsed = time.monotonic() - started
            nursery.cancel_scope.cancel()
        await remote.aclose()
    assert elapsed < HANG_S
    # A call that blocked the event loop would have let the ticker run not once.
    assert len(ticks) >= 5
    assert "attestation" in info.value.reason and str(address) in info.value.reason
    assert isinstance(info.value.__cause__, BackendUnavailable)


async def test_readiness_asks_grpc_health_when_the_as_serves_it() -> None:
    # Upstream's grpc-as has no health service: an answer of any kind means it is there.
    with grpc_as() as (address, _):
        remote = client(address)
        assert await remote.unready() is None
        await remote.aclose()
    health = HealthServicer()
    health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    with grpc_as(health) as (address, _):
        remote = client(address)
        assert await remote.unready() == (
            f"Attestation Service at {address}: health check: NOT_SERVING"
        )
        await remote.aclose()


async def test_an_as_restarted_on_its_port_serves_the_same_client_again() -> None:
    port = free_port()
    remote = client(f"http://127.0.0.1:{port}", pool_size=1)
    with grpc_as(port=port):
        await remote.evaluate(REQUESTS, ["default"])
    with pytest.raises(AttestationFailure):
        await remote.evaluate(REQUESTS, ["default"])
    # The channel has failed to reconnect for a while: it is in reconnect backoff, which the
    # client keeps short (grpcio's own grows to minutes over a longer outage).
    await trio.sleep(1.5)
    with pytest.raises(AttestationFailure):
        await remote.evaluate(REQUESTS, ["default"])
    with grpc_as(port=port):
        started = time.monotonic()
        with trio.fail_after(HANG_S):
            while True:
                try:
                    await remote.evaluate(REQUESTS, ["default"])
                    break
                except AttestationFailure:
                    await trio.sleep(0.1)
        healed = time.monotonic() - started
    await remote.aclose()
    assert healed < HANG_S / 2, healed
