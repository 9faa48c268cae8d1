"""Native offload: same answers as the inline calls, on threads that leave the event loop free."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding

from tests.unit.test_client_simulated_attesters import _init as simulated_init
from tests.unit.test_client_simulated_attesters import env_for
from trustee import _core, offload, offload_threads
from trustee.attestation.ear import EarBroker, Signer
from trustee.attestation.hardware import HardwareVerifier
from trustee.client.attesters import detect_attesters
from trustee.config.errors import ConfigError
from trustee.config.model import TokenBrokerConfig
from trustee.crypto.b64 import b64url_decode, b64url_encode
from trustee.crypto.jwk import TeeKeyKind, generate_tee_key, public_key_from_jwk, tee_public_jwk
from trustee.crypto.jws import split_compact, verify_signature
from trustee.policy.engine import CompiledPolicy, PolicyEvalError
from trustee.protocol.jwe import JweError, concat_kdf, decrypt, encrypt
from trustee.sealing import seal

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RULES = ["data.policy.trust_claims", "data.policy.extensions"]

# Long enough that a blocked event loop would be obvious (tens of ms in regorus).
SLOW_POLICY = """package policy
import rego.v1
n := count([x | some x in numbers.range(1, input.n); x % 7 == 0])
"""


@pytest.fixture
async def running(nursery: trio.Nursery) -> AsyncIterator[offload.Offload]:
    # These tests make one call at a time, which the adaptive mode would run inline.
    offload.DEFAULT.adaptive = False
    # Independent of this machine's cores and of TRUSTEE_OFFLOAD_THREADS in the environment.
    offload.DEFAULT.threads = 2
    await nursery.start(offload.DEFAULT.run)
    assert offload.DEFAULT.active
    try:
        yield offload.DEFAULT
    finally:
        offload.DEFAULT.adaptive = True


def sample_claims(svn: str = "1") -> dict[str, Any]:
    return {
        "sample": {
            "svn": svn,
            "launch_digest": "abcde",
            "debug": False,
            "platform_version": {"major": 1, "minor": 2},
        }
    }


REFERENCE_VALUES = {
    "svn": json.dumps(["1"]),
    "launch_digest": json.dumps(["abcde"]),
    "major_version": json.dumps(1),
    "minimum_minor_version": json.dumps(1),
}


def test_submitting_without_a_pool_is_refused_clearly() -> None:
    if _core.offload_started():
        pytest.skip("the pool of this process is already started")
    with pytest.raises(RuntimeError, match="offload pool is not started"):
        _core.Policy("package p\nx := 1\n").submit_evaluate(1, "{}", None, ["data.p.x"])


async def test_default_cpu_offloaded_equals_inline(running: offload.Offload) -> None:
    policy = CompiledPolicy((POLICIES / "default_cpu.rego").read_text())
    for svn, rvs in (("1", REFERENCE_VALUES), ("2", REFERENCE_VALUES), ("1", {})):
        inline = policy.evaluate(sample_claims(svn), None, RULES, rvs.get)
        offloaded = await policy.evaluate_offloaded(sample_claims(svn), None, RULES, rvs)
        assert offloaded == inline
    affirmed = await policy.evaluate_offloaded(sample_claims(), None, RULES, REFERENCE_VALUES)
    assert affirmed[0].value["executables"] == 3 and affirmed[0].value["hardware"] == 2


async def test_outcome_kinds_and_errors_cross_the_thread(running: offload.Offload) -> None:
    policy = CompiledPolicy(
        "package policy\nimport rego.v1\nallow if input.ok\nx := 1 if input.a\nx := 2 if input.b\n"
    )
    outcomes = await policy.evaluate_offloaded(
        {"ok": True}, None, ["data.policy.allow", "data.policy.x", "data.policy.nope"]
    )
    assert [o.kind for o in outcomes] == ["value", "undefined", "absent"]
    with pytest.raises(PolicyEvalError) as inline_err:
        policy.evaluate({"a": 1, "b": 1}, None, ["data.policy.x"])
    with pytest.raises(PolicyEvalError) as offloaded_err:
        await policy.evaluate_offloaded({"a": 1, "b": 1}, None, ["data.policy.x"])
    assert str(offloaded_err.value) == str(inline_err.value)


async def test_event_loop_keeps_running_during_a_long_evaluation(
    running: offload.Offload,
) -> None:
    policy = CompiledPolicy(SLOW_POLICY)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.002)
            ticks += 1

    started = time.perf_counter()
    async with trio.open_nursery() as inner:
        inner.start_soon(ticker)
        (outcome,) = await policy.evaluate_offloaded({"n": 400_000}, None, ["data.policy.n"])
        inner.cancel_scope.cancel()
    elapsed = time.perf_counter() - started
    assert outcome.value == 400_000 // 7
    # Inline, the loop would be blocked for the whole evaluation and `ticks` would stay 0.
    assert elapsed > 0.02, "the policy was too fast to tell"
    assert ticks >= 3


async def test_many_concurrent_jobs_each_get_their_own_answer(running: offload.Offload) -> None:
    policy = CompiledPolicy("package policy\nimport rego.v1\ndouble := input.n * 2\n")
    results: dict[int, Any] = {}

    async def one(n: int) -> None:
        (outcome,) = await policy.evaluate_offloaded({"n": n}, None, ["data.policy.double"])
        results[n] = outcome.value

    async with trio.open_nursery() as inner:
        for n in range(300):
            inner.start_soon(one, n)
    assert results == {n: 2 * n for n in range(300)}


async def test_a_cancelled_wait_leaves_the_offload_working(running: offload.Offload) -> None:
    slow = CompiledPolicy(SLOW_POLICY)
    with trio.move_on_after(0.001):
        await slow.evaluate_offloaded({"n": 400_000}, None, ["data.policy.n"])
    quick = CompiledPolicy("package policy\nimport rego.v1\nok := true\n")
    (outcome,) = await quick.evaluate_offloaded({}, None, ["data.policy.ok"])
    assert outcome.value is True


async def test_adaptive_runs_a_lone_call_inline_and_offloads_when_busy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    adaptive = offload.Offload(threads=1)
    await nursery.start(adaptive.run)
    assert adaptive.active
    submitted: list[int] = []

    policy = _core.Policy("package p\nx := 1\n")

    def submit(job_id: int) -> _core.Job[list[_core.RuleOutcome]]:
        submitted.append(job_id)
        return policy.submit_evaluate(job_id, "{}", None, ["data.p.x"])

    def inline() -> list[_core.RuleOutcome]:
        return policy.evaluate("{}", None, ["data.p.x"])

    def pairs(outcomes: list[_core.RuleOutcome]) -> list[tuple[str, str]]:
        return [(o.kind, o.json) for o in outcomes]

    # Alone: nothing else is ready to run, so no hand-off.
    assert pairs(await adaptive.call(submit, inline)) == [("value", "1")]
    assert submitted == []

    # With another request in progress, calls are offloaded, and stay so for a while.
    monkeypatch.setattr(offload, "BUSY_WINDOW_S", 3600.0)
    adaptive.requests = 2
    assert pairs(await adaptive.call(submit, inline)) == [("value", "1")]
    assert len(submitted) == 1
    adaptive.requests = 1
    await adaptive.call(submit, inline)
    assert len(submitted) == 2
    # Once the window has passed, a lone request runs inline again.
    monkeypatch.setattr(time, "monotonic", lambda: adaptive._busy_until + 1)
    await adaptive.call(submit, inline)
    assert len(submitted) == 2


async def test_without_the_reader_calls_run_inline() -> None:
    idle = offload.Offload(threads=2)
    assert not idle.active
    assert await idle.call(lambda job_id: pytest.fail("must not submit"), lambda: 42) == 42


async def test_zero_threads_means_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(offload_threads.THREADS_ENV, "0")
    inline = offload.Offload()
    async with trio.open_nursery() as nursery:
        await nursery.start(inline.run)
        assert not inline.active


@pytest.mark.parametrize("raw", ["two", "-1", "1.5", "1_0", "٣", "65", str(10**30)])
def test_bad_thread_count_names_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(offload_threads.THREADS_ENV, raw)
    with pytest.raises(ConfigError, match=f"^{offload_threads.THREADS_ENV}: "):
        offload_threads.default_threads()


def test_default_thread_count_leaves_a_core_to_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(offload_threads.THREADS_ENV, raising=False)
    for cores, expected in ((1, 0), (2, 1), (3, 2), (64, offload_threads.MAX_DEFAULT_THREADS)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert offload_threads.default_threads() == expected
    # Several worker processes share the cores.
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [offload_threads.default_threads(w) for w in (1, 2, 4, 8)] == [4, 3, 1, 0]
    monkeypatch.setenv(offload_threads.THREADS_ENV, " 3 ")
    assert offload_threads.default_threads(8) == 3


async def test_one_reader_per_process(nursery: trio.Nursery) -> None:
    first, second = offload.Offload(threads=1), offload.Offload(threads=1)
    await nursery.start(first.run)
    await nursery.start(second.run)
    # The second would take ids whose waiting tasks it does not know: it stays off, and its
    # calls run inline.
    assert first.active and not second.active
    assert await second.call(lambda job_id: pytest.fail("must not submit"), lambda: 7) == 7


def test_reference_values_are_converted_once_per_snapshot() -> None:
    snapshot = dict(REFERENCE_VALUES)
    first = offload.reference_values(snapshot)
    assert offload.reference_values(snapshot) is first
    assert len(first) == len(REFERENCE_VALUES)
    assert offload.reference_values(dict(snapshot)) is not first


async def test_a_bad_reference_value_fails_only_the_policies_that_read_it(
    running: offload.Offload,
) -> None:
    # NaN is what json.dumps writes for a float('nan') registered through the RVPS.
    values = dict(REFERENCE_VALUES, unused="NaN")
    policy = CompiledPolicy((POLICIES / "default_cpu.rego").read_text())
    inline = policy.evaluate(sample_claims(), None, RULES, values.get)
    assert await policy.evaluate_offloaded(sample_claims(), None, RULES, values) == inline
    values = dict(values, svn="NaN")  # a new snapshot, as the RVPS makes on a change
    with pytest.raises(PolicyEvalError) as inline_err:
        policy.evaluate(sample_claims(), None, RULES, values.get)
    with pytest.raises(PolicyEvalError) as offloaded_err:
        await policy.evaluate_offloaded(sample_claims(), None, RULES, values)
    assert str(offloaded_err.value) == str(inline_err.value)
    assert 'reference value "svn" is not valid JSON' in str(offloaded_err.value)


# ---------------------------------------------------------------- sealing


def sealed_by_hand(
    jwk: dict[str, Any], plaintext: bytes, cek: bytes, iv: bytes, ephemeral: Any
) -> dict[str, str]:
    """The ECDH-ES+A256KW / A256GCM JWE from RFC 7516/7518 and `cryptography` primitives."""
    size = (ephemeral.curve.key_size + 7) // 8
    numbers = ephemeral.public_key().public_numbers()
    epk = {
        "crv": jwk["crv"],
        "kty": "EC",
        "x": b64url_encode(numbers.x.to_bytes(size, "big")),
        "y": b64url_encode(numbers.y.to_bytes(size, "big")),
    }
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "epk": epk}
    protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    peer = public_key_from_jwk(jwk)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    kek = concat_kdf(ephemeral.exchange(ec.ECDH(), peer), "ECDH-ES+A256KW", 256)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return {
        "protected": protected,
        "encrypted_key": b64url_encode(aes_key_wrap(kek, cek)),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(sealed[:-16]),
        "tag": b64url_encode(sealed[-16:]),
    }


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p521"])
def test_native_seal_is_byte_identical_to_the_reference(kind: TeeKeyKind) -> None:
    guest = generate_tee_key(kind)
    jwk = tee_public_jwk(guest)
    ephemeral = ec.generate_private_key(guest.curve)  # type: ignore[union-attr]
    size = (ephemeral.curve.key_size + 7) // 8
    scalar = ephemeral.private_numbers().private_value.to_bytes(size, "big")
    cek, iv = bytes(range(32)), bytes(range(12))
    reference = sealed_by_hand(jwk, b"secret", cek, iv, ephemeral)
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    native = _core.seal_ecdh_es(jwk["crv"], x, y, b"secret", cek, iv, scalar)
    assert native.members() == reference
    assert list(native.members()) == list(reference)
    assert (native.protected, native.tag) == (reference["protected"], reference["tag"])
    assert encrypt(b"secret", jwk, cek=cek, iv=iv, ephemeral_key=ephemeral) == reference


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p521", "rsa"])
async def test_seal_round_trips_offloaded(running: offload.Offload, kind: TeeKeyKind) -> None:
    guest = generate_tee_key(kind)
    sealed = await seal(b"the resource", tee_public_jwk(guest))
    assert list(sealed) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert decrypt(sealed, guest) == b"the resource"


async def test_seal_errors_are_the_reference_errors(running: offload.Offload) -> None:
    jwk = tee_public_jwk(generate_tee_key("ec-p256"))
    off_curve = dict(jwk, y=jwk["x"])
    short = dict(jwk, x=jwk["x"][:-2])
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    for raw_x, raw_y in ((x, x), (x[:-2], y)):
        # The native path refuses the key itself ...
        with pytest.raises(_core.CryptoError, match="TEE public key is invalid"):
            _core.seal_ecdh_es(jwk["crv"], raw_x, raw_y, b"s")
    words = (
        "TEE public key is invalid: EC JWK point is not on curve P-256",
        "TEE public key is invalid: JWK member 'x' is not base64url: base64url: impossible "
        "length 41 (a base64 text never has 4n+1)",
    )
    for bad, expected in zip((off_curve, short), words, strict=True):
        # ... and the caller gets the reference path's words.
        with pytest.raises(JweError) as reference:
            encrypt(b"s", bad)
        with pytest.raises(JweError) as native:
            await seal(b"s", bad)
        assert str(native.value) == str(reference.value) == expected
    # Not even text the binding can take (a lone surrogate from parsed JSON): same error.
    surrogate = dict(jwk, x=jwk["x"][:-1] + "\ud800")
    with pytest.raises(JweError) as reference:
        encrypt(b"s", surrogate)
    with pytest.raises(JweError) as native:
        await seal(b"s", surrogate)
    assert str(native.value) == str(reference.value)


# ---------------------------------------------------------------- hardware verification


@pytest.fixture(scope="module")
def snp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_init("snp", tmp_path_factory.mktemp("sim-snp"))


async def test_hardware_evidence_is_verified_off_the_loop(
    running: offload.Offload, snp_dir: Path
) -> None:
    pinned = x509.load_pem_x509_certificates((snp_dir / "snp-test-ark-ask.pem").read_bytes())
    hardware = HardwareVerifier(test_anchors=[c.public_bytes(Encoding.DER) for c in pinned])
    report_data, init_digest = hashlib.sha384(b"nonce").digest(), hashlib.sha256(b"i").digest()
    attester = detect_attesters(env_for("snp", snp_dir)).primary
    evidence = json.dumps(attester.evidence(report_data, init_digest)).encode()
    inputs = hardware.with_snp_certs([])
    before = running.offloaded
    (claims,) = await hardware.verify_offloaded("snp", evidence, report_data, init_digest)
    assert running.offloaded == before + 1
    assert json.loads(claims.json)["host_data"] == init_digest.hex()
    (inline,) = hardware.verify("snp", evidence, report_data, init_digest, inputs)
    assert (claims.json, claims.tee_class) == (inline.json, inline.tee_class)
    with pytest.raises(_core.VerifierError) as inline_err:
        hardware.verify("snp", evidence, bytes(64), init_digest, inputs)
    with pytest.raises(_core.VerifierError) as offloaded_err:
        await hardware.verify_offloaded("snp", evidence, bytes(64), init_digest)
    assert str(offloaded_err.value) == str(inline_err.value)
    # The sample verifiers take microseconds: a hand-off would cost more than it saves.
    offloaded = running.offloaded
    (sample,) = await hardware.verify_offloaded("sample", b'{"svn": "1"}', None, None)
    assert running.offloaded == offloaded and sample.tee_class == "cpu"


# ---------------------------------------------------------------- signing


async def test_offloaded_token_verifies_and_matches_the_inline_claims(
    running: offload.Offload,
) -> None:
    broker = EarBroker(TokenBrokerConfig(), Signer(ec.generate_private_key(ec.SECP256R1())))
    submods = {"cpu0": {"ear.status": "affirming"}}
    issued = await broker.issue_offloaded(submods, now=1_700_000_000)
    reference = broker.issue_full(submods, now=1_700_000_000)
    assert issued.claims == reference.claims and issued.claims_json == reference.claims_json
    parsed = split_compact(issued.token)
    assert parsed.header == split_compact(reference.token).header
    assert parsed.payload == reference.claims_json.encode()
    verify_signature(
        "ES256", broker.signer.key.public_key(), parsed.signing_input, parsed.signature
    )
    assert issued.token != reference.token  # ECDSA signatures are randomised


def test_signer_refuses_a_non_p256_key() -> None:
    with pytest.raises(_core.CryptoError, match="not a P-256 PKCS#8 key"):
        _core.Es256Signer(b"\x30\x00")


async def test_waiters_are_woken_with_an_error_when_the_reader_stops() -> None:
    reader = offload.Offload(threads=1, adaptive=False)
    slow = CompiledPolicy(SLOW_POLICY)
    async with trio.open_nursery() as outer:
        reader_scope = trio.CancelScope()

        async def run_reader(task_status: trio.TaskStatus[None]) -> None:
            with reader_scope:
                await reader.run(task_status=task_status)

        await outer.start(run_reader)
        assert reader.active
        caught: list[BaseException] = []

        async def waiter() -> None:
            try:
                await reader.call(
                    lambda job_id: slow._policy.submit_evaluate(
                        job_id, '{"n": 400000}', None, ["data.policy.n"]
                    ),
                    lambda: pytest.fail("must not run inline"),
                )
            except RuntimeError as exc:
                caught.append(exc)

        outer.start_soon(waiter)
        await trio.sleep(0.001)
        reader_scope.cancel()
    assert not reader.active
    assert [str(e) for e in caught] == ["the offload reader stopped while a job ran"]


async def test_the_app_counts_requests_until_their_answer_is_sent() -> None:
    from trustee.assemble import assemble
    from trustee.config import load_embedded_default
    from trustee.http.app import KbsApp

    kbs = await assemble(load_embedded_default())

    def counting(routes: Any) -> KbsApp:
        app = KbsApp(kbs)
        app.routes = routes
        return app

    seen: list[int] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(offload.DEFAULT.requests)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        # Teardown after the answer: a lone client's next request may already be in.
        seen.append(offload.DEFAULT.requests)
        if scope.get("path") == "/fail":
            raise RuntimeError("after the answer")

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        seen.append(offload.DEFAULT.requests)
        raise RuntimeError("before any answer")

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            seen.append(offload.DEFAULT.requests)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    assert offload.DEFAULT.requests == 0
    await counting(inner)({"type": "http", "path": "/"}, receive, send)
    assert seen == [1, 1, 0, 0] and offload.DEFAULT.requests == 0
    seen.clear()
    with pytest.raises(RuntimeError):
        await counting(inner)({"type": "http", "path": "/fail"}, receive, send)
    with pytest.raises(RuntimeError):
        await counting(failing)({"type": "http", "path": "/"}, receive, send)
    assert offload.DEFAULT.requests == 0
