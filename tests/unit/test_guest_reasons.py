"""A refused guest hears the check that failed, in upstream's error body; what the server keeps
to itself (policy text, computed values, store hosts, collateral sources) stays in its log."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from tests.unit.test_attestation_service import (
    POLICY_HEAD,
    Env,
    make_env,
    primary_runtime_data,
    sample_request,
)
from tests.unit.test_kbs_tokens import BASE, attest_reply, prepared, request
from trustee import _core
from trustee.attestation.service import AttestationFailure, AttestationService
from trustee.crypto.jwk import generate_tee_key
from trustee.kbs.guest_reasons import guest_reason
from trustee.protocol import binding
from trustee.protocol.rcar import EvidenceRequest
from trustee.simulate import SimulatedTdxAttester
from trustee.storage.kv import StorageError
from trustee.storage.sessions import SessionStoreUnavailable

SECRET_VALUE = "c0ffee-reference-value"
ATTEST_FAILED = {
    "type": "https://github.com/confidential-containers/kbs/errors/AttestationError",
    "detail": "Attestation error: RCAR handshake Attest failed",
}
CPU0 = "evidence[0] (sample) → cpu0"
AUTH = b'{"version":"0.4.0","tee":"sample","extra-params":""}'
CONFIG = BASE + "[attestation_token]\ninsecure_header_jwk = true\n"


async def refusal(env: Env, req: EvidenceRequest | None = None) -> AttestationFailure:
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([req or sample_request()], ["default"])
    return info.value


async def test_a_failed_evidence_check_reaches_the_guest_whole() -> None:
    env = await make_env()
    failure = await refusal(env, sample_request(report_data=base64.b64encode(b"\1" * 48).decode()))
    expected = binding.runtime_data_digest(primary_runtime_data()).hex()
    assert guest_reason(failure) == (
        "evidence[0] (sample): Verifier evaluate failed: sample report data mismatch: evidence "
        f"has {'01' * 48}, expected {expected}"
    )


async def test_the_guests_own_init_data_error_reaches_it_whole() -> None:
    env = await make_env()
    failure = await refusal(env, sample_request(init_data_toml="version = 1\n"))
    assert guest_reason(failure) == failure.reason
    assert failure.reason.startswith("evidence[0] (sample): init-data: ")


async def test_a_policy_error_does_not_show_the_policy_text() -> None:
    # regorus quotes the line it stopped at, and this one holds a reference value.
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu",
        POLICY_HEAD + f'trust_claims := {{"hardware": to_number("{SECRET_VALUE}")}}\n',
    )
    failure = await refusal(env)
    assert SECRET_VALUE in failure.reason
    assert guest_reason(failure) == (
        f"{CPU0}: policy default_cpu: evaluation failed (details in the server log)"
    )


async def test_a_computed_trust_claim_is_not_shown() -> None:
    env = await make_env()
    await env.policies.set_policy(
        "default_cpu", POLICY_HEAD + f'trust_claims := {{"hardware": "{SECRET_VALUE}"}}\n'
    )
    failure = await refusal(env)
    assert SECRET_VALUE in failure.reason
    assert guest_reason(failure) == (
        f"{CPU0}: policy default_cpu: its result is not a valid appraisal "
        "(details in the server log)"
    )


async def test_a_missing_policy_and_an_unreachable_store_are_named_without_their_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = await make_env()
    with pytest.raises(AttestationFailure) as info:
        await env.service.evaluate([sample_request()], ["other"])
    assert guest_reason(info.value) == (
        f"{CPU0}: attestation policy not available (details in the server log)"
    )

    async def unreachable() -> dict[str, str]:
        raise StorageError("redis get 10.1.2.3:6379: Connection refused")

    monkeypatch.setattr(env.rvps, "snapshot", unreachable)
    failure = await refusal(env)
    assert "10.1.2.3" in failure.reason
    assert guest_reason(failure) == "reference values: not available (details in the server log)"


async def test_missing_collateral_is_named_without_the_servers_sources() -> None:
    env = await make_env()
    runtime_data = primary_runtime_data()
    digest = binding.runtime_data_digest(runtime_data)
    evidence = SimulatedTdxAttester().evidence(digest, None)
    req = EvidenceRequest("tdx", evidence, runtime_data, "sha384", None)
    failure = await refusal(env, req)
    assert "verifier_config" in failure.reason
    assert guest_reason(failure) == (
        "evidence[0] (tdx): Verifier evaluate failed: the collateral to verify it is not "
        "available (details in the server log)"
    )


def _failure(reason: str, cause: BaseException) -> AttestationFailure:
    try:
        raise AttestationFailure(reason) from cause
    except AttestationFailure as exc:
        return exc


def test_a_policy_limit_is_said_and_an_unknown_shape_is_not() -> None:
    limit = _core.PolicyLimitError("policy evaluation exceeded its time limit of 1000 ms")
    failure = _failure(f"{CPU0}: policy default_cpu: {limit}", limit)
    assert guest_reason(failure) == failure.reason
    # A reason that does not end with its cause's text cannot be cut safely.
    failure = _failure("reference values are gone", StorageError("postgres://kbs:pw@db/kbs"))
    assert guest_reason(failure) == "attestation failed: not available (details in the server log)"


async def test_the_attest_body_carries_the_check_and_the_log_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kbs = await prepared(CONFIG)
    assert isinstance(kbs.attestation, AttestationService)
    await kbs.attestation.policies.set_policy(
        "default_cpu", POLICY_HEAD + f'trust_claims := {{"hardware": "{SECRET_VALUE}"}}\n'
    )
    caplog.set_level(logging.INFO, logger="trustee.kbs")
    _, reply = await attest_reply(kbs, generate_tee_key())
    assert reply.status == 401
    assert json.loads(reply.body) == {
        **ATTEST_FAILED,
        "reason": f"{CPU0}: policy default_cpu: its result is not a valid appraisal "
        "(details in the server log)",
    }
    assert SECRET_VALUE not in reply.body.decode()
    assert any(SECRET_VALUE in message for message in caplog.messages)


async def test_a_session_store_outage_names_the_store_not_its_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kbs = await prepared('session_storage_type = "Memory"\n' + CONFIG)
    caplog.set_level(logging.INFO, logger="trustee.kbs")

    async def down(*_args: object) -> None:
        raise SessionStoreUnavailable("redis 10.1.2.3:6379: Connection refused")

    monkeypatch.setattr(kbs.sessions, "insert", down)
    monkeypatch.setattr(kbs.sessions, "get", down)
    auth = await kbs.handle(request("POST", "auth", AUTH))
    attest = await kbs.handle(request("POST", "attest", b"{}", "0" * 32))
    assert json.loads(auth.body) == {
        "type": ATTEST_FAILED["type"],
        "detail": "Attestation error: RCAR handshake Auth failed: session store unavailable",
        "reason": "session store unavailable",
    }
    assert json.loads(attest.body) == {**ATTEST_FAILED, "reason": "session store unavailable"}
    logged = [m for m in caplog.messages if "10.1.2.3" in m]
    assert len(logged) == 2 and all("session store unavailable: redis" in m for m in logged)
