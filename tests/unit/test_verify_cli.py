"""`trustee verify` on the real TDX/SNP vectors: claims on success, the failing check otherwise."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.shared import vectors_dir
from trustee import _core
from trustee.cli import main

TDX = "trustee/deps/verifier/test_data"
SNP = "trustee/deps/verifier/test_data/snp"
ANCHORS = "trustee/deps/verifier/src/snp"
QVL = "dcap-qvl/sample"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else out), err


def process(*argv: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """`trustee verify` as a user runs it: its own process, this checkout's code."""
    path = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "trustee.cli", "verify", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": path},
    )


def quote6_collateral_dir(tmp_path: Path) -> Path:
    """Quote 6's TCB info and QE identity, with the Intel issuer chains and CRLs of the
    dcap-qvl collateral (the TCB signing certificate is the same)."""
    v = vectors_dir()
    qvl = json.loads((v / QVL / "tdx_quote_collateral.json").read_text())
    quote = (v / TDX / "tdx_quote_6.dat").read_bytes()
    evidence = json.dumps({"quote": __import__("base64").b64encode(quote).decode()}).encode()
    _fmspc, ca, _pce, _tee = _core.tdx_collateral_key(evidence)
    d = tmp_path / "collateral"
    d.mkdir()
    (d / "tcbInfo.json").write_bytes((v / TDX / "tcbInfo.json").read_bytes())
    (d / "enclaveIdentity.json").write_bytes((v / TDX / "enclaveIdentity.json").read_bytes())
    (d / "tcb_info_issuer_chain.pem").write_text(qvl["tcb_info_issuer_chain"])
    (d / f"pck_crl_{ca}.der").write_text(qvl["pck_crl"])
    (d / f"pck_crl_issuer_chain_{ca}.pem").write_text(qvl["pck_crl_issuer_chain"])
    (d / "root_ca_crl.der").write_text(qvl["root_ca_crl"])
    return d


def test_tdx_quote6_with_its_collateral_is_out_of_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = vectors_dir()
    collateral = quote6_collateral_dir(tmp_path)
    code, claims, err = run(
        capsys,
        "--tee=tdx",
        f"--evidence={v / TDX / 'tdx_quote_6.dat'}",
        f"--collateral={collateral}",
        "--at=2025-11-01T00:00:00Z",
    )
    assert code == 0, err
    assert claims["tcb_status"] == "OutOfDate"
    assert claims["advisory_ids"] == []
    assert claims["tcb_date"] == "2018-01-04T00:00:00Z"
    assert claims["quote"]["header"]["version"] == "0400"
    assert claims["init_data"].startswith("889abf4718f0")


def test_tdx_dcap_qvl_sample_is_up_to_date_inside_its_window(
    capsys: pytest.CaptureFixture[str],
) -> None:
    v = vectors_dir()
    args = [
        "--tee=tdx",
        f"--evidence={v / QVL / 'tdx_quote'}",
        f"--collateral={v / QVL / 'tdx_quote_collateral.json'}",
    ]
    code, claims, err = run(capsys, *args, "--at=2025-06-19T11:16:03Z")
    assert code == 0, err
    assert (claims["tcb_status"], claims["advisory_ids"]) == ("UpToDate", [])
    assert claims["collateral_expiration_status"] == "0"
    # Outside the collateral's window the verdict stands, the expiry becomes a claim.
    code, claims, err = run(capsys, *args, "--at=2025-09-01T00:00:00Z")
    assert code == 0, err
    assert claims["collateral_expiration_status"] == "1"


def test_tdx_report_data_and_tampering_fail_with_their_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = vectors_dir()
    base = [
        "--tee=tdx",
        f"--collateral={v / QVL / 'tdx_quote_collateral.json'}",
        "--at=2025-06-19T11:16:03Z",
    ]
    code, out, err = run(
        capsys, *base, f"--evidence={v / QVL / 'tdx_quote'}", "--report-data=" + "ab" * 48
    )
    assert code == 1 and "REPORT_DATA mismatch" in err and out == ""
    quote = bytearray((v / QVL / "tdx_quote").read_bytes())
    quote[48 + 100] ^= 1  # a byte of the TD report body, covered by the quote signature
    tampered = tmp_path / "tampered.dat"
    tampered.write_bytes(bytes(quote))
    code, _, err = run(capsys, *base, f"--evidence={tampered}")
    assert code == 1 and "quote signature" in err, err


def test_tdx_event_log_is_replayed_against_the_rtmrs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Quote 4's RTMRs match CCEL_data; the dcap-qvl quote's do not, so the replay fails there.
    v = vectors_dir()
    code, _, err = run(
        capsys,
        "--tee=tdx",
        f"--evidence={v / QVL / 'tdx_quote'}",
        f"--eventlog={v / TDX / 'CCEL_data'}",
        f"--collateral={v / QVL / 'tdx_quote_collateral.json'}",
        "--at=2025-06-19T11:16:03Z",
    )
    assert code == 1 and "replay" in err, err


def _pem_bundle(tmp_path: Path, first_der: Path, *pems: Path) -> Path:
    text = ssl.DER_cert_to_PEM_cert(first_der.read_bytes())
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(text + "".join(p.read_text() for p in pems))
    return bundle


def test_snp_v2_report_with_vcek_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    bundle = _pem_bundle(
        tmp_path, v / SNP / "test-vcek.der", v / ANCHORS / "milan_ask_ark_asvk.pem"
    )
    args = [
        "--tee=snp",
        f"--evidence={v / SNP / 'test-report.bin'}",
        f"--vcek={bundle}",
        "--at=2024-01-01T00:00:00Z",
    ]
    code, claims, err = run(capsys, *args)
    assert code == 0, err
    assert claims["reported_tcb_snp"] == 8 and claims["vmpl"] == 0
    # The VCEK alone: the Milan ASK/ARK are built in.
    code, alone, err = run(capsys, *args[:2], f"--vcek={v / SNP / 'test-vcek.der'}", args[3])
    assert code == 0, err
    assert alone == claims
    # After the VCEK's notAfter.
    code, _, err = run(capsys, *args[:3], "--at=2040-01-01T00:00:00Z")
    assert code == 1 and "SEV-VCEK" in err


def test_snp_vlek_report_needs_nonzero_vmpl_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = vectors_dir()
    bundle = _pem_bundle(
        tmp_path, v / SNP / "test-vlek.der", v / ANCHORS / "milan_ask_ark_asvk.pem"
    )
    args = [
        "--tee=snp",
        f"--evidence={v / SNP / 'test-vlek-report.bin'}",
        f"--vcek={bundle}",
        "--at=2025-06-01T00:00:00Z",
    ]
    code, _, err = run(capsys, *args)
    assert code == 1 and "VMPL" in err
    code, claims, err = run(capsys, *args, "--allow-nonzero-vmpl")
    assert code == 0, err
    assert claims["vmpl"] == 1 and claims["signing_key"] == "VLEK"


def test_snp_e2e_evidence_json_offline(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    args = [
        "--tee=snp",
        f"--evidence={v / 'trustee/attestation-service/tests/e2e/evidence.json'}",
        f"--vcek={v / ANCHORS / 'genoa_ask_ark_asvk.pem'}",
        "--at=2025-07-01T00:00:00Z",
    ]
    code, claims, err = run(capsys, *args)
    assert code == 0, err
    assert claims["measurement"].startswith("6a6519d7")
    assert claims["reported_tcb_microcode"] == 25


def test_snp_e2e_evidence_verifies_offline_with_nothing_supplied(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evidence carries only its VCEK; AMD's ASK/ARK are built in, so nothing is fetched."""

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("trustee verify tried to reach the network")

    monkeypatch.setattr("socket.socket.connect", no_network)
    monkeypatch.setattr("socket.create_connection", no_network)
    evidence = vectors_dir() / "trustee/attestation-service/tests/e2e/evidence.json"
    report_data = bytes(json.loads(evidence.read_text())["attestation_report"]["report_data"])
    args = ["--tee=snp", f"--evidence={evidence}", "--at=2025-07-01T00:00:00Z"]
    code, claims, err = run(capsys, *args, f"--report-data={report_data.hex()}")
    assert code == 0, err
    assert claims["product"] == "Genoa" and claims["report_data"] == report_data.hex()
    assert claims["measurement"].startswith("6a6519d7")
    # Still bound: another report data is refused.
    code, _, err = run(capsys, *args, "--report-data=" + "00" * 64)
    assert code == 1 and "report" in err.lower(), err
    code, _, err = run(capsys, *args, "--report-data=00")
    assert code == 1 and "eport" in err


def test_az_snp_vtpm_evidence_offline(capsys: pytest.CaptureFixture[str]) -> None:
    v = vectors_dir()
    args = [
        "--tee=az-snp-vtpm",
        f"--evidence={v / 'trustee/deps/verifier/test_data/az-snp-vtpm/evidence-v1.json'}",
        "--at=2025-07-01T00:00:00Z",
    ]
    code, claims, err = run(capsys, *args, "--report-data=6368616c6c656e6765")
    assert code == 0, err
    assert claims["report_data"] == "6368616c6c656e6765"
    assert claims["tpm"]["pcr00"].startswith("e15c4479")
    code, _, err = run(capsys, *args, "--report-data=6368616c6c656e6766")
    assert code == 1 and "TPM quote nonce mismatch" in err
    # The quote nonce is the session's report data: without it there is nothing to check.
    code, _, err = run(capsys, *args)
    assert code == 1 and "expected report data" in err


def test_tpm_ak_certificate_is_certified_by_a_given_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustee.simulate.tpm import TpmTestPki, tpm_evidence

    pki = TpmTestPki.generate()
    nonce = b"\x07" * 32
    evidence = tmp_path / "tpm.json"
    evidence.write_text(json.dumps(tpm_evidence(pki.ak, nonce, ak_cert=pki.ak_cert)))
    root = tmp_path / "ak-root.pem"
    root.write_text(pki.ca_pem)
    args = ["--tee=tpm", f"--evidence={evidence}", f"--report-data={nonce.hex()}"]
    code, claims, err = run(capsys, *args, f"--tpm-ak-root={root}")
    assert code == 0, err
    assert claims["ak_certified"] is True and "TPM AK Root CA" in claims["ak_cert_issuer"]
    # Without the root the certificate is checked but certifies nothing.
    code, claims, err = run(capsys, *args)
    assert code == 0 and claims["ak_certified"] is False, err
    # Another CA's root: the server would refuse the guest, and so does the offline check.
    other = tmp_path / "other.pem"
    other.write_text(TpmTestPki.generate().ca_pem)
    code, _, err = run(capsys, *args, f"--tpm-ak-root={other}")
    assert code == 1 and "not certified by a configured root" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tee=tdx", "--evidence=/nonexistent/q"], "/nonexistent/q"),
        (["--tee=snp", "--evidence=/dev/null", "--collateral=x"], "applies to TDX, SGX and"),
        (["--tee=tpm", "--evidence=/dev/null", "--vcek=x"], "--vcek applies to SNP evidence"),
        (["--tee=sgx", "--evidence=/dev/null", "--vcek=x"], "SNP evidence only"),
        (["--tee=snp", "--evidence=/dev/null", "--tpm-ak-root=x"], "tpm evidence only"),
        (["--tee=tpm", "--evidence=/dev/null"], "tpm evidence must be the attester's JSON"),
        (["--tee=tdx", "--evidence=/dev/null", "--report-data=zz"], "--report-data"),
        (["--tee=tdx", "--evidence=/dev/null", "--at=yesterday"], "--at"),
        (["--tee=snp", "--evidence=/dev/null"], "1184-byte report"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert err.startswith("trustee verify: ")


def test_a_real_process_reports_failure_without_traceback(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"quote": "AAAA"}')
    proc = process("--tee=tdx", f"--evidence={junk}", f"--collateral={tmp_path}")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (
        "trustee verify: malformed tdx evidence: quote parse failed: quote truncated: "
        "header.att_key_type needs 2 bytes at offset 2, 1 available\n"
    )


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    # `trustee verify … | head`: the reader is gone before the claims are written.
    v = vectors_dir()
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = process(
            "--tee=tdx",
            f"--evidence={v / QVL / 'tdx_quote'}",
            f"--collateral={v / QVL / 'tdx_quote_collateral.json'}",
            "--at=2025-06-19T11:16:03Z",
            stdout=write_end,
        )
    finally:
        os.close(write_end)
    # The verdict stands (exit 0: verified); nothing is said about the closed pipe.
    assert (proc.returncode, proc.stderr) == (0, "")


def test_validity_errors_name_times_in_rfc3339(tmp_path: Path) -> None:
    v = vectors_dir()
    bundle = _pem_bundle(
        tmp_path, v / SNP / "test-vcek.der", v / ANCHORS / "milan_ask_ark_asvk.pem"
    )
    proc = process(
        "--tee=snp",
        f"--evidence={v / SNP / 'test-report.bin'}",
        f"--vcek={bundle}",
        "--at=2040-01-01T00:00:00Z",
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "trustee verify: snp verification failed: certificate SEV-VCEK not valid at "
        "2040-01-01T00:00:00Z (valid from 2023-01-24T17:58:26Z to 2030-01-24T17:58:26Z)\n"
    )


def test_expired_collateral_warning_only_when_expired_at_the_time_judged() -> None:
    v = vectors_dir()
    collateral = v / QVL / "tdx_quote_collateral.json"
    args = ["--tee=tdx", f"--evidence={v / QVL / 'tdx_quote'}", f"--collateral={collateral}"]
    # Inside the collateral's window (long past by the wall clock): nothing to warn about.
    proc = process(*args, "--at=2025-06-19T11:16:03Z")
    assert (proc.returncode, proc.stderr) == (0, "")
    proc = process(*args, "--at=2025-09-01T00:00:00Z")
    assert proc.returncode == 0
    assert proc.stderr == (
        "trustee verify: warning: TDX collateral for FMSPC B0C06F000000 (platform CA) from "
        f"BundleFileSource({str(collateral)!r}): fetched value expired at 2025-07-19T10:00:35Z\n"
    )


def test_collateral_directory_missing_a_file_names_what_it_must_hold(tmp_path: Path) -> None:
    v = vectors_dir()
    proc = process("--tee=tdx", f"--evidence={v / QVL / 'tdx_quote'}", f"--collateral={tmp_path}")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "trustee verify: TDX collateral for FMSPC B0C06F000000 (platform CA): collateral "
        f"directory {tmp_path}: none of tcbInfo-B0C06F000000.json, tcbInfo.json exists; it "
        "must hold B0C06F000000.json, or tcbInfo.json (or tcbInfo-B0C06F000000.json), "
        "enclaveIdentity.json, tcb_info_issuer_chain.pem, pck_crl_platform.der (or .pem), "
        "pck_crl_issuer_chain_platform.pem and root_ca_crl.der (or .pem)\n"
    )


def test_sgx_raw_quote_with_simulated_collateral(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustee.simulate.sgx import SgxTestPki

    pki = SgxTestPki.shared()
    quote = tmp_path / "quote.dat"
    quote.write_bytes(pki.quote(b"offline"))
    root = tmp_path / "root.pem"
    root.write_text(pki.root_pem)
    (tmp_path / "sgx").mkdir()
    collateral = tmp_path / "sgx" / "sgx-collateral.json"
    collateral.write_text(json.dumps(pki.collateral()))
    common = (f"--evidence={quote}", f"--insecure-test-root={root}")
    code, claims, err = run(capsys, "--tee=sgx", *common, f"--collateral={collateral}")
    assert code == 0, err
    assert claims["tcb_status"] == "UpToDate"
    assert claims["report_data"] == b"offline".ljust(64, b"\0").hex()
    # A directory keeps SGX collateral in its sgx/ folder.
    code, claims, err = run(capsys, "--tee=sgx", *common, f"--collateral={tmp_path}")
    assert code == 1 and "tcbInfo.json" in err, err
    (tmp_path / "sgx" / f"{pki.platform_pki.platform.fmspc.hex().upper()}.json").write_text(
        collateral.read_text()
    )
    code, claims, err = run(capsys, "--tee=sgx", *common, f"--collateral={tmp_path}")
    assert code == 0, err
    code, _, err = run(capsys, "--tee=tdx", *common, f"--collateral={collateral}")
    assert code == 1 and "version 3 is an SGX quote" in err, err
