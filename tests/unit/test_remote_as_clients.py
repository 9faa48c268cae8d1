"""The remote Attestation Service clients against real sockets: what they send, and how an AS
that is down, slow or refusing becomes the backend's errors (and what the guest is told)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.harness import free_port
from tests.support.receivers import HttpReceiver
from trustee.attestation.as_wire import to_json
from trustee.attestation.backend import (
    AttestationFailure,
    BackendRefused,
    BackendUnavailable,
    PolicyRefused,
)
from trustee.attestation.rvps import RvpsError
from trustee.config.model import RemoteAsConfig
from trustee.crypto.jws import sign_compact
from trustee.kbs.guest_reasons import guest_reason
from trustee.protocol.rcar import EvidenceRequest
from trustee.remote_as.common import PROBE_CACHE_S
from trustee.remote_as.rest import RestAs

CLAIMS = {"submods": {"cpu0": {"ear.status": "affirming"}}, "exp": 4_000_000_000}
REQUESTS = [
    EvidenceRequest(
        tee="sample",
        evidence={"svn": "1", "report_data": "AA=="},
        runtime_data={"nonce": "n", "tee-pubkey": {"kty": "EC"}},
        hash_algorithm="sha384",
        init_data_toml='version = "0.1.0"\n',
    ),
    EvidenceRequest(
        tee="sampledevice",
        evidence={"svn": "2"},
        runtime_data=None,
        hash_algorithm="sha512",
        raw_runtime_data=b"\x01\x02",
        init_data_digest=b"\xab" * 32,
    ),
]
# What a hung AS is compared with: a client that waits for it would wait this long and more.
HANG_S = 30.0

Answer = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]


def token(claims: dict[str, Any] = CLAIMS) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return sign_compact({"alg": "ES256"}, json.dumps(claims).encode(), key)


def config(address: str, timeout_ms: int = 2000, kind: str = "coco_as_restful") -> RemoteAsConfig:
    return RemoteAsConfig(type=kind, address=address, timeout_ms=timeout_ms)  # type: ignore[arg-type]


@asynccontextmanager
async def scripted_as(answer: Answer) -> AsyncIterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """An HTTP server on loopback that answers each request with `answer(method, target,
    body)`; yields its URL and the requests it saw."""
    seen: list[tuple[str, str, bytes]] = []

    async def serve(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            # A client that hangs up mid-answer (one too large for it) ends the connection.
            with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
                while True:
                    request, body = await HttpReceiver._read_request(conn, stream)
                    if request is None:
                        return
                    method, target = request.method.decode(), request.target.decode()
                    seen.append((method, target, body))
                    status, reply = await answer(method, target, body)
                    head = h11.Response(
                        status_code=status, headers=[("content-length", str(len(reply)))]
                    )
                    for event in (head, h11.Data(data=reply), h11.EndOfMessage()):
                        await stream.send_all(conn.send(event) or b"")
                    conn.start_next_cycle()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", seen
        nursery.cancel_scope.cancel()


async def issuing(method: str, target: str, body: bytes) -> tuple[int, bytes]:
    return (200, token().encode()) if target == "/attestation" else (200, b"")


async def test_rest_sends_upstreams_bodies_and_reads_the_token() -> None:
    async with scripted_as(issuing) as (url, seen):
        client = RestAs(config(url))
        appraised = await client.evaluate(REQUESTS, ["default"])
        await client.set_policy("default_cpu", "package policy\n")
        await client.aclose()
    assert appraised.claims == CLAIMS
    assert json.loads(appraised.claims_json) == CLAIMS
    (m1, t1, b1), (m2, t2, b2) = seen
    assert (m1, t1) == ("POST", "/attestation")
    assert json.loads(b1) == to_json(REQUESTS, ["default"])
    assert json.loads(b1)["verification_requests"][1]["init_data"] == {
        "init_data_digest": base64.urlsafe_b64encode(b"\xab" * 32).decode().rstrip("=")
    }
    assert (m2, t2) == ("POST", "/policy")
    policy = base64.urlsafe_b64encode(b"package policy\n").decode().rstrip("=")
    assert json.loads(b2) == {"policy_id": "default_cpu", "policy": policy}


async def test_an_unreachable_as_fails_fast_naming_it_and_the_guest_is_told_less() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = RestAs(config(url))
    started = time.monotonic()
    with pytest.raises(AttestationFailure) as info:
        await client.evaluate(REQUESTS, ["default"])
    assert time.monotonic() - started < HANG_S
    failure = info.value
    assert isinstance(failure.__cause__, BackendUnavailable)
    assert failure.reason.startswith(f"Attestation Service at {url}: attestation failed: ")
    assert guest_reason(failure) == (
        "the Attestation Service is unavailable (details in the server log)"
    )
    with pytest.raises(PolicyRefused, match=f"Attestation Service at {url}: set policy failed"):
        await client.set_policy("p", "package policy\n")
    assert (await client.unready() or "").startswith(f"Attestation Service at {url}: ")


async def test_a_slow_as_fails_within_the_timeout() -> None:
    async def hang(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        await trio.sleep(HANG_S * 2)
        return 200, b""

    async with scripted_as(hang) as (url, _):
        client = RestAs(config(url, timeout_ms=300))
        started = time.monotonic()
        with pytest.raises(AttestationFailure) as info:
            await client.evaluate(REQUESTS, ["default"])
        elapsed = time.monotonic() - started
        await client.aclose()
    assert elapsed < HANG_S
    assert info.value.reason == (
        f"Attestation Service at {url}: attestation got no answer within 300 ms"
    )
    assert isinstance(info.value.__cause__, BackendUnavailable)


async def failure_of(status: int, answer: bytes) -> tuple[str, AttestationFailure, str]:
    """What evaluating and setting a policy give against an AS that answers every request
    with `status` and `answer`: its URL, the attestation failure, the policy refusal."""

    async def reply(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return status, answer

    async with scripted_as(reply) as (url, _):
        client = RestAs(config(url))
        with pytest.raises(AttestationFailure) as info:
            await client.evaluate(REQUESTS, ["default"])
        try:
            await client.set_policy("p", "package policy\n")
            refused = ""
        except PolicyRefused as exc:
            refused = str(exc)
        await client.aclose()
    return url, info.value, refused


async def test_a_refusal_is_quoted_for_the_log_and_withheld_from_the_guest() -> None:
    said = b"An internal error occured: \n0: attestation report evaluate\n1: policy line 3"
    url, failure, refused = await failure_of(500, said)
    assert failure.reason == f"Attestation Service at {url}: attestation refused (500): " + (
        said.decode()
    )
    assert isinstance(failure.__cause__, BackendRefused)
    assert guest_reason(failure) == (
        "the Attestation Service refused the evidence (details in the server log)"
    )
    assert "set policy refused (500): An internal error occured" in refused


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"not a token", "answered with an unusable token: a compact JWS has 3"),
        (token({"exp": 4_000_000_000}).encode(), "answered with a token without `submods`"),
        (b"x" * (2 << 20), "attestation: the answer exceeds"),
    ],
)
async def test_an_unusable_answer_is_a_refusal(answer: bytes, why: str) -> None:
    _, failure, _ = await failure_of(200, answer)
    assert why in failure.reason
    assert isinstance(failure.__cause__, BackendRefused)


async def test_rest_has_no_reference_value_api_and_says_so() -> None:
    client = RestAs(config("http://as.example:8080"))
    message = (
        "the REST Attestation Service at http://as.example:8080 has no reference value API; "
        "register reference values with its RVPS, or use coco_as_grpc, whose AS serves the "
        "RVPS API too"
    )
    with pytest.raises(RvpsError) as info:
        await client.register_reference_value(b"{}")
    assert str(info.value) == message
    with pytest.raises(RvpsError) as info:
        await client.query_reference_value("svn")
    assert str(info.value) == message
    assert client.reissue("{}") is None and await client.stored_policy("default_cpu") is None


async def test_readiness_is_cached_between_probes() -> None:
    async def healthy(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        return 200, b""

    now = [0.0]
    async with scripted_as(healthy) as (url, seen):
        client = RestAs(config(url), monotonic=lambda: now[0])
        assert await client.unready() is None
        assert await client.unready() is None
        assert [t for _, t, _ in seen] == ["/healthz"]
        now[0] += PROBE_CACHE_S
        assert await client.unready() is None
        assert [t for _, t, _ in seen] == ["/healthz", "/healthz"]
        await client.aclose()
