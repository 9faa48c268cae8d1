"""The client picks the simulated TDX/SNP attester from its environment, loads the saved PKI once
per process, and its evidence verifies against the files `trustee simulate init` wrote."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.unit.test_simulate_store import check_snp_report, check_tdx_quote
from trustee import _core as core
from trustee.client import attesters
from trustee.client.attesters import (
    SampleAttester,
    SampleDeviceAttester,
    detect_attesters,
)
from trustee.client.cli import main as client_main
from trustee.client.kbs import KbsClientError
from trustee.simulate import SimulatedSnpAttester, SimulatedTdxAttester, simulate_main
from trustee.simulate.snp_layout import report_from_json
from trustee.simulate.tdx_layout import TD_REPORT, field, split_quote


def _init(tee: str, directory: Path) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        assert simulate_main(["init", "--tee", tee, "--dir", str(directory)]) == 0
    return directory


@pytest.fixture(scope="module")
def tdx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _init("tdx", tmp_path_factory.mktemp("sim-tdx"))


@pytest.fixture(scope="module")
def snp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _init("snp", tmp_path_factory.mktemp("sim-snp"))


def env_for(tee: str, directory: Path, **extra: str) -> dict[str, str]:
    return {"TRUSTEE_SIMULATED_TEE": tee, "TRUSTEE_SIMULATED_PKI": str(directory / "pki"), **extra}


def test_without_the_variable_the_sample_fallback_is_unchanged() -> None:
    found = detect_attesters({})
    assert isinstance(found.primary, SampleAttester) and found.devices == ()
    assert isinstance(detect_attesters({"TRUSTEE_SIMULATED_TEE": ""}).primary, SampleAttester)
    with_device = detect_attesters({"ENABLE_SAMPLE_DEVICE": ""})
    assert [type(d) for d in with_device.devices] == [SampleDeviceAttester]


@pytest.mark.parametrize(
    ("init_digest", "mr_config_id"),
    [
        (hashlib.sha256(b"i").digest(), hashlib.sha256(b"i").digest() + bytes(16)),
        (hashlib.sha384(b"i").digest(), hashlib.sha384(b"i").digest()),
        (hashlib.sha512(b"i").digest(), hashlib.sha512(b"i").digest()[:48]),
        (None, bytes(48)),
    ],
)
def test_tdx_attester_from_env_binds_and_verifies(
    tdx_dir: Path, init_digest: bytes | None, mr_config_id: bytes
) -> None:
    found = detect_attesters(env_for("tdx", tdx_dir, ENABLE_SAMPLE_DEVICE="1"))
    attester = found.primary
    assert isinstance(attester, SimulatedTdxAttester) and attester.tee == "tdx"
    assert [type(d) for d in found.devices] == [SampleDeviceAttester]
    report_data = hashlib.sha384(b"nonce").digest()
    quote = base64.b64decode(attester.evidence(report_data, init_digest)["quote"])
    check_tdx_quote(quote, tdx_dir / "tdx-test-root.pem", tdx_dir / "tdx-collateral.json")
    body = split_quote(quote).body
    assert field(body, TD_REPORT, "report_data") == report_data + bytes(16)
    assert field(body, TD_REPORT, "mr_config_id") == mr_config_id


@pytest.mark.parametrize(("ca_env", "include_ca"), [(None, False), ("0", False), ("1", True)])
def test_snp_attester_from_env_binds_and_verifies(
    snp_dir: Path, ca_env: str | None, include_ca: bool
) -> None:
    extra = {} if ca_env is None else {"TRUSTEE_SIMULATED_SNP_CA": ca_env}
    attester = detect_attesters(env_for("snp", snp_dir, **extra)).primary
    assert isinstance(attester, SimulatedSnpAttester) and attester.tee == "snp"
    assert attester.include_ca is include_ca
    init_digest = hashlib.sha384(b"i").digest()
    evidence = attester.evidence(bytes(range(64)) + b"extra", init_digest)
    chain = evidence["cert_chain"]
    assert [entry["cert_type"] for entry in chain] == (
        ["VCEK", "ASK", "ARK"] if include_ca else ["VCEK"]
    )
    vcek = x509.load_der_x509_certificate(bytes(chain[0]["data"]))
    report = report_from_json(evidence["attestation_report"])
    check_snp_report(report, vcek, snp_dir / "snp-test-ark-ask.pem")
    assert report[0x50:0x90] == bytes(range(64))
    assert report[0xC0:0xE0] == init_digest[:32]


def test_pki_is_loaded_once_per_process(tdx_dir: Path) -> None:
    env = env_for("tdx", tdx_dir)
    first = detect_attesters(env).primary
    second = detect_attesters(env).primary
    assert isinstance(first, SimulatedTdxAttester) and isinstance(second, SimulatedTdxAttester)
    assert first.pki is second.pki


def test_real_verifier_accepts_the_evidence(tdx_dir: Path, snp_dir: Path) -> None:
    core = pytest.importorskip("trustee._core", reason="the Rust extension is not built")
    if not hasattr(core, "Verifiers"):
        pytest.skip("this build of trustee._core has no Verifiers class")
    report_data = hashlib.sha384(b"nonce").digest()
    init_digest = hashlib.sha256(b"init-data").digest()
    now = int(time.time())

    tdx_root = x509.load_pem_x509_certificate((tdx_dir / "tdx-test-root.pem").read_bytes())
    verifiers = core.Verifiers([hashlib.sha256(tdx_root.public_bytes(Encoding.DER)).digest()])
    tdx = detect_attesters(env_for("tdx", tdx_dir)).primary
    evidence = json.dumps(tdx.evidence(report_data, init_digest)).encode()
    collateral = (tdx_dir / "tdx-collateral.json").read_bytes()
    (tdx_claims,) = verifiers.verify(
        "tdx", evidence, report_data, init_digest, now, tdx_collateral=collateral
    )
    # Claims show the whole 64-byte field, zero padding included.
    assert json.loads(tdx_claims.json)["report_data"] == (report_data + bytes(16)).hex()

    pinned = x509.load_pem_x509_certificates((snp_dir / "snp-test-ark-ask.pem").read_bytes())
    ders = [c.public_bytes(Encoding.DER) for c in pinned]
    verifiers = core.Verifiers([hashlib.sha256(d).digest() for d in ders])
    snp = detect_attesters(env_for("snp", snp_dir)).primary
    evidence = json.dumps(snp.evidence(report_data, init_digest)).encode()
    (snp_claims,) = verifiers.verify("snp", evidence, report_data, init_digest, now, snp_certs=ders)
    assert json.loads(snp_claims.json)["host_data"] == init_digest.hex()


# -- bad environments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TRUSTEE_SIMULATED_TEE": "cca"}, r"TRUSTEE_SIMULATED_TEE is 'cca', expected 'tdx', "),
        (
            {"TRUSTEE_SIMULATED_TEE": "tdx"},
            r"TRUSTEE_SIMULATED_TEE=tdx needs TRUSTEE_SIMULATED_PKI set",
        ),
        (
            {"TRUSTEE_SIMULATED_TEE": "snp", "TRUSTEE_SIMULATED_PKI": "/nonexistent/pki"},
            r"TRUSTEE_SIMULATED_PKI: /nonexistent/pki/pki\.json: missing",
        ),
    ],
)
def test_bad_environment_is_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(KbsClientError, match=r"^simulated attester: " + message) as info:
        detect_attesters(env)
    assert "\n" not in str(info.value)


def test_sgx_attester_from_env_binds_and_verifies(tmp_path: Path) -> None:
    sgx_dir = _init("sgx", tmp_path)
    mr_enclave = bytes(range(32))
    env = env_for("sgx", sgx_dir, TRUSTEE_SIMULATED_MEASUREMENT=mr_enclave.hex())
    sgx = detect_attesters(env).primary
    assert sgx.tee == "sgx"
    report_data, init_digest = hashlib.sha384(b"nonce").digest(), hashlib.sha256(b"i").digest()
    evidence = json.dumps(sgx.evidence(report_data, init_digest)).encode()
    root = x509.load_pem_x509_certificate((sgx_dir / "sgx-test-root.pem").read_bytes())
    verifiers = core.Verifiers([hashlib.sha256(root.public_bytes(Encoding.DER)).digest()])
    (claims,) = verifiers.verify(
        "sgx",
        evidence,
        report_data,
        init_digest,
        int(time.time()),
        tdx_collateral=(sgx_dir / "sgx-collateral.json").read_bytes(),
    )
    body = json.loads(claims.json)["body"]
    assert body["mr_enclave"] == mr_enclave.hex()
    assert body["config_id"] == init_digest.ljust(64, b"\0").hex()
    with pytest.raises(KbsClientError, match=r"must be 64 hex digits \(32 bytes\) for sgx"):
        detect_attesters(env_for("sgx", sgx_dir, TRUSTEE_SIMULATED_MEASUREMENT="00" * 48))


def test_wrong_kind_and_bad_ca_flag(tdx_dir: Path, snp_dir: Path) -> None:
    with pytest.raises(KbsClientError, match=r"pki\.json: kind is 'tdx', expected 'snp'"):
        detect_attesters(env_for("snp", tdx_dir))
    with pytest.raises(KbsClientError, match=r"TRUSTEE_SIMULATED_SNP_CA is 'yes', expected"):
        detect_attesters(env_for("snp", snp_dir, TRUSTEE_SIMULATED_SNP_CA="yes"))


def test_client_cli_reports_a_bad_environment_as_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRUSTEE_SIMULATED_TEE", "cca")
    # Detection fails before any request, so the unreachable URL is never contacted.
    assert client_main(["--url", "http://127.0.0.1:9", "attest"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "trustee-client: simulated attester: TRUSTEE_SIMULATED_TEE is 'cca', expected 'tdx', "
        "'snp', 'sgx', 'az-snp-vtpm', 'az-tdx-vtpm' or 'tpm'\n"
    )


def test_detector_table_puts_simulation_before_the_catch_all() -> None:
    detectors = [detect for detect, _ in attesters.PRIMARY_DETECTORS]
    assert detectors[-1]({}) is True
    assert not any(detect({}) for detect in detectors[:-1])
