"""The gRPC Attestation Service (`trustee as serve --grpc`, `grpc-as`) as a real process, called
through the committed attestation.proto / reference.proto stubs: sample, simulated TDX and
simulated SNP evidence with structured and raw runtime data and init-data, tokens signed by the
configured key, upstream's ABORTED messages for bad input, policies set over gRPC, its RVPS."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.grpc_harness import GRPC_AS, RunningGrpc, aborted, as_argv, run_grpc
from tests.e2e.pki import Pki, make_pki
from tests.e2e.simulated import simulated_pkis
from trustee.client.attesters import SampleAttester
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jws import split_compact, verify_signature
from trustee.grpc_api import attestation_pb2 as pb
from trustee.grpc_api import attestation_pb2_grpc, reference_pb2, reference_pb2_grpc
from trustee.grpc_api.bridge import unary
from trustee.protocol import binding
from trustee.simulate import SimulatedSnpAttester, SimulatedTdxAttester, SnpTestPki, TdxTestPki

pytestmark = pytest.mark.e2e

MEASUREMENT = hashlib.sha384(b"the image").digest()
RUNTIME = {"tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "BB"}, "nonce": "n0"}


def init_toml(algorithm: str) -> str:
    return f'version = "0.1.0"\nalgorithm = "{algorithm}"\n\n[data]\n"aa.toml" = "x = 1"\n'


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pki]:
    base = tmp_path_factory.mktemp("grpc-as")
    simulated_pkis(base)
    return base, make_pki(base / "pki")


def as_config(base: Path, pki: Pki) -> Path:
    path = base / "as-config.json"
    doc = {
        "rvps_config": {"type": "BuiltIn"},
        "attestation_token_broker": {
            "duration_min": 5,
            "signer": {"key_path": str(pki.signer_key), "cert_path": str(pki.signer_chain)},
        },
        "verifier_config": {
            "insecure_test_roots": [
                str(base / "tdx" / "tdx-test-root.pem"),
                str(base / "snp" / "snp-test-ark-ask.pem"),
            ],
            "collateral": str(base / "tdx" / "tdx-collateral.json"),
        },
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
async def grpc_as(setup: tuple[Path, Pki], tmp_path: Path) -> AsyncIterator[RunningGrpc]:
    base, pki = setup
    async with run_grpc(as_argv(as_config(base, pki)), tmp_path / "as.log") as server:
        yield server


def evidence_text(evidence: Any) -> str:
    return b64url_encode(json.dumps(evidence).encode())


def attester(tee: str, base: Path) -> Any:
    if tee == "tdx":
        return SimulatedTdxAttester(TdxTestPki.load(base / "tdx" / "pki"), measurement=MEASUREMENT)
    if tee == "snp":
        return SimulatedSnpAttester(SnpTestPki.load(base / "snp" / "pki"))
    return SampleAttester()


async def evaluate(server: RunningGrpc, *items: pb.IndividualAttestationRequest, **kw: Any) -> str:
    with server.channel() as channel:
        stub = attestation_pb2_grpc.AttestationServiceStub(channel)
        request = pb.AttestationRequest(verification_requests=items, **kw)
        reply = await unary(stub.AttestationEvaluate, request, 60)
    return reply.attestation_token


def verified_claims(token: str, pki: Pki) -> dict[str, Any]:
    parsed = split_compact(token)
    key = serialization.load_pem_private_key(pki.signer_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    verify_signature("ES256", key.public_key(), parsed.signing_input, parsed.signature)
    return parsed.claims()


@pytest.mark.parametrize("tee", ["sample", "tdx", "snp"])
async def test_structured_runtime_data_and_init_data_toml(
    tee: str, setup: tuple[Path, Pki], grpc_as: RunningGrpc
) -> None:
    base, pki = setup
    algorithm = {"snp": "sha256", "tdx": "sha384", "sample": "sha384"}[tee]
    toml = init_toml(algorithm)
    init_digest = hashlib.new(algorithm, toml.encode()).digest()
    report_data = binding.runtime_data_digest(RUNTIME, "sha384")
    evidence = attester(tee, base).evidence(report_data, init_digest)
    item = pb.IndividualAttestationRequest(
        tee=tee,
        evidence=evidence_text(evidence),
        structured_runtime_data=json.dumps(RUNTIME),
        init_data_toml=toml,
        runtime_data_hash_algorithm="sha384",
    )
    claims = verified_claims(await evaluate(grpc_as, item), pki)
    cpu0 = claims["submods"]["cpu0"]
    annotated = cpu0["ear.veraison.annotated-evidence"]
    assert annotated["runtime_data_claims"] == RUNTIME
    assert annotated["init_data_claims"] == {"aa.toml": {"x": 1}}
    assert cpu0["ear.appraisal-policy-id"] == "default"
    if tee == "tdx":
        assert annotated["tdx"]["quote"]["body"]["mr_td"] == MEASUREMENT.hex()
        assert annotated["tdx"]["tcb_status"] == "UpToDate"
    if tee == "snp":
        assert annotated["snp"]["vmpl"] == 0


@pytest.mark.parametrize("tee", ["sample", "tdx", "snp"])
async def test_raw_runtime_data_and_init_data_digest(
    tee: str, setup: tuple[Path, Pki], grpc_as: RunningGrpc
) -> None:
    base, pki = setup
    raw = hashlib.sha512(b"the verifier's nonce").digest()  # 64 bytes, as given
    digest = hashlib.sha256(b"an init-data document").digest()
    evidence = attester(tee, base).evidence(raw, digest)
    item = pb.IndividualAttestationRequest(
        tee=tee,
        evidence=evidence_text(evidence),
        raw_runtime_data=b64url_encode(raw),
        init_data_digest=b64url_encode(digest),
    )
    claims = verified_claims(await evaluate(grpc_as, item, policy_ids=["default"]), pki)
    assert "cpu0" in claims["submods"]
    # The same evidence does not stand for other runtime data.
    other = item.__deepcopy__()
    other.raw_runtime_data = b64url_encode(bytes(64))
    message = await aborted(evaluate(grpc_as, other))
    assert message.startswith("Attestation evaluation failed: \n0: evidence[0]")


SAMPLE_OK = evidence_text({"svn": "1", "report_data": ""})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tee": "nope"}, "parse TEE type: Unsupported TEE type: nope"),
        ({"evidence": "!!"}, "Illegal input Evidence: "),
        ({"evidence": b64url_encode(b"not json")}, "failed to parse tee evidence: "),
        ({"structured_runtime_data": "{"}, "parse structured runtime data: "),
        ({"raw_runtime_data": "*"}, "base64 decode runtime data: "),
        ({"init_data_digest": "*"}, "base64 decode init data: "),
        ({"runtime_data_hash_algorithm": "md5"}, "parse runtime data HashAlgorithm failed: "),
        ({"init_data_toml": "not toml ["}, "Attestation evaluation failed: \n0: "),
    ],
)
async def test_bad_requests_are_aborted_with_upstreams_words(
    fields: dict[str, str], message: str, grpc_as: RunningGrpc
) -> None:
    item = pb.IndividualAttestationRequest(**{"tee": "sample", "evidence": SAMPLE_OK, **fields})
    details = await aborted(evaluate(grpc_as, item))
    assert details.startswith(message), details


async def test_no_evidence_and_unknown_policy_fail_the_evaluation(grpc_as: RunningGrpc) -> None:
    assert await aborted(evaluate(grpc_as)) == (
        "Attestation evaluation failed: \n0: No verification requests provided."
    )
    item = pb.IndividualAttestationRequest(tee="sample", evidence=SAMPLE_OK)
    message = await aborted(evaluate(grpc_as, item, policy_ids=["absent"]))
    assert "Policy `absent_cpu.rego` not found" in message


STRICT = """package policy
import rego.v1
default executables := 33
executables := 2 if input.sample.svn == "1"
trust_claims := {"executables": executables, "hardware": 2}
"""


async def set_policy(server: RunningGrpc, policy_id: str, text: str) -> None:
    with server.channel() as channel:
        stub = attestation_pb2_grpc.AttestationServiceStub(channel)
        request = pb.SetPolicyRequest(policy_id=policy_id, policy=text)
        await unary(stub.SetAttestationPolicy, request, 30)


async def test_a_policy_set_over_grpc_judges_the_next_evaluation(
    setup: tuple[Path, Pki], grpc_as: RunningGrpc
) -> None:
    _, pki = setup
    await set_policy(grpc_as, "strict_cpu", b64url_encode(STRICT.encode()))
    for svn, executables in (("1", 2), ("7", 33)):
        item = pb.IndividualAttestationRequest(
            tee="sample", evidence=evidence_text({"svn": svn, "report_data": ""})
        )
        claims = verified_claims(await evaluate(grpc_as, item, policy_ids=["strict"]), pki)
        cpu0 = claims["submods"]["cpu0"]
        assert cpu0["ear.appraisal-policy-id"] == "strict"
        assert cpu0["ear.trustworthiness-vector"]["executables"] == executables
    for text, words in (
        ("*not base64*", "Set Attestation Policy Failed: "),
        (b64url_encode(b"package policy\nallow if {"), "does not compile"),
    ):
        message = await aborted(set_policy(grpc_as, "broken_cpu", text))
        assert message.startswith("Set Attestation Policy Failed: ")
        assert words in message


async def test_challenges_as_upstream_answers_them(grpc_as: RunningGrpc) -> None:
    with grpc_as.channel() as channel:
        stub = attestation_pb2_grpc.AttestationServiceStub(channel)
        request = pb.ChallengeRequest(inner={"tee": "tdx", "tee_params": ""})
        reply = await unary(stub.GetAttestationChallenge, request, 10)
        assert reply.attestation_challenge == ""
        for inner, message in (
            ({"tee_params": ""}, "Error parse inner_tee tee"),
            ({"tee": "tdx"}, "Error parse inner_tee tee_params"),
            ({"tee": "x", "tee_params": ""}, "Error parse TEE type: Unsupported TEE type: x"),
        ):
            request = pb.ChallengeRequest(inner=inner)
            assert await aborted(unary(stub.GetAttestationChallenge, request, 10)) == message


def sample_message(values: dict[str, Any]) -> str:
    payload = base64.b64encode(json.dumps(values).encode()).decode()
    return json.dumps({"version": "0.1.0", "type": "sample", "payload": payload})


async def test_the_as_rvps_registers_and_answers_queries(grpc_as: RunningGrpc) -> None:
    with grpc_as.channel() as channel:
        stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(channel)
        register = reference_pb2.ReferenceValueRegisterRequest(
            message=sample_message({"svn": ["1"]})
        )
        await unary(stub.RegisterReferenceValue, register, 10)
        query = reference_pb2.ReferenceValueQueryRequest(reference_value_id="svn")
        reply = await unary(stub.QueryReferenceValue, query, 10)
        assert json.loads(reply.reference_value_results) == ["1"]
        query = reference_pb2.ReferenceValueQueryRequest(reference_value_id="unknown")
        assert not (await unary(stub.QueryReferenceValue, query, 10)).HasField(
            "reference_value_results"
        )
        bad = reference_pb2.ReferenceValueRegisterRequest(message="{}")
        message = await aborted(unary(stub.RegisterReferenceValue, bad, 10))
        assert message.startswith("Register reference value: ")


async def test_grpc_as_with_upstreams_flags_over_tls(
    setup: tuple[Path, Pki], tmp_path: Path
) -> None:
    base, pki = setup

    def argv(port: int) -> list[str]:
        return [
            *GRPC_AS, "-c", str(as_config(base, pki)), "-s", f"127.0.0.1:{port}",
            "-t", str(pki.https_cert), "-k", str(pki.https_key),
        ]  # fmt: skip

    async with run_grpc(argv, tmp_path / "grpc-as.log", ca=pki.ca_cert) as server:
        item = pb.IndividualAttestationRequest(tee="sample", evidence=SAMPLE_OK)
        verified_claims(await evaluate(server, item), pki)
        with grpc.insecure_channel(server.address) as plain:
            stub = attestation_pb2_grpc.AttestationServiceStub(plain)
            request = pb.AttestationRequest(verification_requests=[item])
            with pytest.raises(grpc.RpcError):
                await unary(stub.AttestationEvaluate, request, 5)


async def test_evaluations_are_audited_to_the_as_own_sinks(
    setup: tuple[Path, Pki], tmp_path: Path
) -> None:
    base, pki = setup
    config = as_config(base, pki)
    audit_log = tmp_path / "audit.jsonl"
    doc = json.loads(config.read_text())
    doc["audit"] = {"sinks": [{"type": "file", "path": str(audit_log)}]}
    config.write_text(json.dumps(doc))
    async with run_grpc(as_argv(config), tmp_path / "as.log") as server:
        item = pb.IndividualAttestationRequest(tee="sample", evidence=SAMPLE_OK)
        token = await evaluate(server, item)
        await aborted(evaluate(server, item, policy_ids=["absent"]))
        await set_policy(server, "strict_cpu", b64url_encode(STRICT.encode()))
    # SIGINT stopped the server cleanly, and its sinks were flushed first.
    assert server.process.returncode == 0
    assert "received SIGINT, shutting down" in server.log_text()
    events = [json.loads(line) for line in audit_log.read_text().splitlines()]
    kinds = [e["type"].removeprefix("org.trustee-py.") for e in events]
    assert kinds == ["attestation.verified", "token.issued", "attestation.failed", "policy.changed"]
    assert {e["source"] for e in events} == {"trustee-py/as"}  # as the REST front end's
    verified, issued, failed, changed = (e["data"] for e in events)
    assert (verified["tee"], verified["verifier"], verified["generation"]) == (
        "sample",
        "cpu0:sample",
        None,
    )
    assert verified["ear_status"] == verified_claims(token, pki)["submods"]["cpu0"]["ear.status"]
    assert issued["jti"] == hashlib.sha256(token.encode()).hexdigest()[:32]
    assert failed["policy_id"] == "absent"
    assert "Policy `absent_cpu.rego` not found" in failed["reason"]
    assert changed["policy_id"] == "strict_cpu"
