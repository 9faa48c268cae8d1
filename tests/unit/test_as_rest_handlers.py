"""The REST Attestation Service's handlers, sans I/O: routing, upstream's status codes and
texts, and the service behind them (an in-memory AS with upstream's default config)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from trustee.as_assemble import assemble_as
from trustee.as_server.rest_handlers import (
    MAX_BODY,
    AsReply,
    RestAs,
    Route,
    internal_error,
    is_json,
    too_large,
)
from trustee.audit.dispatcher import AuditDispatcher, SinkSpec
from trustee.audit.memory import MemorySink
from trustee.client.attesters import SampleAttester
from trustee.config.as_file import AsConfig
from trustee.crypto.b64 import b64url_encode
from trustee.protocol import binding

JSON = "application/json"


async def service() -> RestAs:
    return RestAs(await assemble_as(AsConfig()))


async def call(rest: RestAs, method: str, path: str, doc: Any = None) -> AsReply:
    found = rest.route(method, path)
    assert isinstance(found, Route), found
    return await rest.call(found, json.dumps(doc).encode(), JSON, "rid")


def sample_request(runtime_data: Any, *, evidence_for: Any = None) -> dict[str, Any]:
    report = binding.runtime_data_digest(evidence_for or runtime_data, "sha384")
    evidence = SampleAttester().evidence(report, None)
    return {
        "tee": "sample",
        "evidence": b64url_encode(json.dumps(evidence).encode()),
        "runtime_data": {"structured": runtime_data},
    }


def test_upstreams_error_texts() -> None:
    assert internal_error(["a", "b"]).body == b"An internal error occured: \n0: a\n1: b"
    assert internal_error(["a"]).status == 500
    assert too_large(5_000_000).body == (
        f"JSON payload (5000000 bytes) is larger than allowed (limit: {MAX_BODY} bytes).".encode()
    )
    assert too_large(None).body == f"JSON payload has exceeded limit ({MAX_BODY} bytes).".encode()


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("json", False),
        (None, False),
    ],
)
def test_json_content_types(content_type: str | None, accepted: bool) -> None:
    assert is_json(content_type) is accepted


async def test_routes_and_methods() -> None:
    rest = await service()
    for method, path in [
        ("POST", "/attestation"),
        ("POST", "/policy"),
        ("GET", "/policy"),
        ("GET", "/policy/default_cpu"),
        ("POST", "/challenge"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/jwks"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ]:
        assert isinstance(rest.route(method, path), Route), (method, path)
    for method, path, status in [
        ("GET", "/attestation", 405),
        ("PUT", "/policy", 405),
        ("POST", "/policy/x", 405),
        ("GET", "/policy/", 404),
        ("GET", "/policy/a/b", 404),
        ("GET", "/kbs/v0/auth", 404),
        ("HEAD", "/healthz", 405),
    ]:
        found = rest.route(method, path)
        assert isinstance(found, AsReply) and found.status == status, (method, path)
        assert found.body == b""


async def test_attestation_issues_a_token_and_refuses_with_the_chain() -> None:
    rest = await service()
    doc = {"verification_requests": [sample_request({"nonce": "1"})], "policy_ids": []}
    reply = await call(rest, "POST", "/attestation", doc)
    assert reply.status == 200, reply.body
    assert reply.body.count(b".") == 2
    other = {"verification_requests": [sample_request({"n": 2}, evidence_for={"n": 3})]}
    reply = await call(rest, "POST", "/attestation", {**other, "policy_ids": ["default"]})
    assert reply.status == 500
    assert reply.body.startswith(
        b"An internal error occured: \n0: attestation report evaluate\n1: evidence[0] (sample)"
    )
    found = rest.route("POST", "/attestation")
    assert isinstance(found, Route)
    refused = await rest.call(found, json.dumps(doc).encode(), "text/plain", "rid")
    assert (refused.status, refused.body) == (400, b"Content type error")
    reply = await call(rest, "POST", "/attestation", {"policy_ids": []})
    assert reply.body == b"Json deserialize error: missing field `verification_requests`"


async def test_audit_events_carry_the_request_id_and_source() -> None:
    standalone = await assemble_as(AsConfig())
    sink = MemorySink()
    dispatcher = AuditDispatcher([SinkSpec(sink)])
    standalone.audit = dispatcher
    rest = RestAs(standalone)
    doc = {"verification_requests": [sample_request({"nonce": "1"})], "policy_ids": []}
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        assert (await call(rest, "POST", "/attestation", doc)).status == 200
        await dispatcher.aclose(5)
    sent = sink.events
    assert [e.type for e in sent] == [
        "org.trustee-py.attestation.verified",
        "org.trustee-py.token.issued",
    ]
    assert {e.source for e in sent} == {"trustee-py/as"}
    assert {e.request_id for e in sent} == {"rid"}


async def test_policy_set_list_get() -> None:
    rest = await service()
    rego = 'package policy\ntrust_claims := {"hardware": 2}\n'
    upload = {"policy_id": "mine_cpu", "policy": b64url_encode(rego.encode())}
    assert (await call(rest, "POST", "/policy", upload)).status == 200
    listed = json.loads((await call(rest, "GET", "/policy")).body)
    assert {"policy-id": "mine_cpu"} in listed and {"policy-id": "default_cpu"} in listed
    assert (await call(rest, "GET", "/policy/mine_cpu")).body == rego.encode()
    bad = {"policy_id": "bad_cpu", "policy": b64url_encode(b"package policy\nx := {")}
    reply = await call(rest, "POST", "/policy", bad)
    assert reply.status == 500
    assert reply.body.startswith(b"An internal error occured: \n0: set policy\n1: Failed to load")
    reply = await call(rest, "POST", "/policy", {"policy_id": "../x", "policy": "eA"})
    assert reply.status == 500 and b"invalid policy id" in reply.body
    reply = await call(rest, "GET", "/policy/nope")
    assert reply.body.endswith(b"2: Policy `nope.rego` not found")


async def test_challenge_and_jwks() -> None:
    rest = await service()
    for tee in ("snp", "sgx"):
        reply = await call(rest, "POST", "/challenge", {"tee": tee, "tee_params": ""})
        assert (reply.status, reply.body) == (200, b""), tee
    reply = await call(rest, "POST", "/challenge", {"tee": "cca", "tee_params": ""})
    assert reply.status == 500 and reply.body.startswith(
        b"An internal error occured: \n0: generate challenge\n1: "
    )
    jwks = json.loads((await call(rest, "GET", "/jwks")).body)
    assert jwks == rest.service.broker.jwks()
