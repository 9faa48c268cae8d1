"""`trustee bench verify`: the verdict first, then warm, cold and dcap-qvl figures in a results
file; real TDX/SNP vectors and simulated SGX/TPM guests, with tiny iteration counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.shared import vector
from trustee.bench.results import read_results
from trustee.bench.verify_cli import summary
from trustee.cli import main

QVL = "dcap-qvl/sample"
SNP_E2E = "trustee/attestation-service/tests/e2e/evidence.json"
TINY = ("--iterations=3", "--rounds=1")


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bench", "verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def tdx_sample() -> list[str]:
    """The options for dcap-qvl's sample TDX quote, judged when its collateral was valid."""
    return [
        "--tee=tdx",
        f"--evidence={vector(QVL + '/tdx_quote')}",
        f"--collateral={vector(QVL + '/tdx_quote_collateral.json')}",
        "--at=2025-06-19T11:16:03Z",
    ]


def measured(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> dict[str, Any]:
    """The results file of a passing run, checked against what went to stdout."""
    out_file = tmp_path / "results.json"
    code, out, err = bench(capsys, *argv, *TINY, f"--out={out_file}")
    assert code == 0, err
    results = read_results(out_file)
    assert json.loads(out) == results  # not a terminal: stdout is the same JSON
    assert results["kind"] == "verify"
    assert results["command"][:3] == ["trustee", "bench", "verify"]
    us, rate = results["per_call_us"], results["calls_per_s"]
    assert us["ours_warm"] > 0 and us["ours_cold"] > 0 and us["ours"] == us["ours_warm"]
    assert rate["ours_warm"] == pytest.approx(1e6 / us["ours_warm"], rel=0.01)
    assert results["iterations"]["ours_cold"] == 3 and results["rounds"] == 1
    assert {"trustee", "core"} <= results["versions"].keys()
    assert results["machine"]["cpus"] >= 1
    return results


def test_tdx_sample_has_ours_and_dcap_qvl_and_their_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dcap_qvl", reason="dcap-qvl is not installed (the dev extra has it)")
    results = measured(
        capsys,
        tmp_path,
        *tdx_sample(),
        "--label=sample quote",
    )
    us = results["per_call_us"]
    assert us["dcap_qvl"] > 0
    assert results["ratio"] == pytest.approx(us["dcap_qvl"] / us["ours_warm"], rel=0.01)
    assert results["versions"]["dcap_qvl"]
    assert results["label"] == "sample quote"
    assert results["target"]["at"] == "2025-06-19T11:16:03Z"
    assert results["target"]["tcb_status"] == "UpToDate"
    # Both verdicts agreed, and nothing was left out.
    assert results["warnings"] == [] and results["notes"] == []


def test_snp_e2e_evidence_offline_has_no_baseline_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = measured(
        capsys, tmp_path, "--tee=snp", f"--evidence={vector(SNP_E2E)}", "--at=2025-07-01T00:00:00Z"
    )
    assert "dcap_qvl" not in results["per_call_us"] and "ratio" not in results
    assert results["notes"] == ["no dcap-qvl figure: snp evidence is not DCAP"]
    assert results["label"] == "snp"


def test_simulated_sgx_quote_is_timed_with_dcap_qvl_under_the_test_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dcap_qvl", reason="dcap-qvl is not installed (the dev extra has it)")
    from trustee.simulate.sgx import SgxTestPki

    pki = SgxTestPki.shared()
    (tmp_path / "quote.dat").write_bytes(pki.quote(b"bench"))
    (tmp_path / "root.pem").write_text(pki.root_pem)
    (tmp_path / "collateral.json").write_text(json.dumps(pki.collateral()))
    sgx = (
        "--tee=sgx",
        f"--evidence={tmp_path / 'quote.dat'}",
        f"--collateral={tmp_path / 'collateral.json'}",
        f"--report-data={b'bench'.hex()}",
    )
    results = measured(capsys, tmp_path, *sgx, f"--insecure-test-root={tmp_path / 'root.pem'}")
    assert results["per_call_us"]["dcap_qvl"] > 0 and results["ratio"] > 0
    # Without the test root our verdict fails: nothing is timed.
    code, out, err = bench(capsys, *sgx, *TINY)
    assert (code, out) == (1, "") and len(err.splitlines()) == 1, err


def test_simulated_tpm_guest_has_warm_and_cold_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trustee.simulate.tpm import TpmTestPki, tpm_evidence

    nonce = b"\x07" * 32
    evidence = tmp_path / "tpm.json"
    evidence.write_text(json.dumps(tpm_evidence(TpmTestPki.generate().ak, nonce)))
    results = measured(capsys, tmp_path, "--tee=tpm", f"--evidence={evidence}")
    assert results["notes"] == ["no dcap-qvl figure: tpm evidence is not DCAP"]
    assert results["target"]["tee"] == "tpm"


def test_duration_calibrates_calls_per_round(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = bench(
        capsys,
        "--tee=snp",
        f"--evidence={vector(SNP_E2E)}",
        "--at=2025-07-01T00:00:00Z",
        "--duration=0.02",
        "--rounds=2",
    )
    assert code == 0, err
    results = json.loads(out)
    assert set(results["iterations"]) == {"ours_warm", "ours_cold"}
    assert all(n >= 1 for n in results["iterations"].values()) and results["rounds"] == 2


def test_failing_verdict_exits_1_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "results.json"
    code, out, err = bench(
        capsys,
        *tdx_sample(),
        "--report-data=" + "ab" * 48,
        *TINY,
        f"--out={out_file}",
    )
    assert (code, out) == (1, "")
    assert err.startswith("trustee bench verify: ") and "REPORT_DATA mismatch" in err
    assert len(err.splitlines()) == 1
    assert not out_file.exists() and list(tmp_path.iterdir()) == []


def test_every_evidence_option_of_trustee_verify_is_taken(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Declared once for both commands: an init-data expectation is checked here too.
    code, out, err = bench(
        capsys,
        *tdx_sample(),
        "--init-data-hash=" + "cd" * 48,
        *TINY,
    )
    assert (code, out) == (1, "")
    assert err.startswith("trustee bench verify: tdx MRCONFIGID mismatch"), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--evidence=x"], "--tee"),
        (["--tee=sev", "--evidence=x"], "invalid choice"),
        (["--tee=snp", "--evidence=x", "--rounds=0"], "--rounds: 0 is not between 1 and 1000"),
        (["--tee=snp", "--evidence=x", "--iterations=many"], "not a number: 'many'"),
        (["--tee=snp", "--evidence=x", "--duration=1", "--iterations=2"], "not allowed with"),
        (["--tee=snp", "--evidence=x", "--duration=99999"], "--duration"),
        (["--tee=snp", "--evidence=/dev/null", "--collateral=c"], "applies to TDX, SGX"),
        (["--tee=tdx", "--evidence=/nonexistent/q"], "/nonexistent/q"),
        (["--tee=tdx", "--evidence=/dev/null", "--at=yesterday"], "--at"),
        (["--tee=tdx", "--evidence=/dev/null", "--report-data=zz"], "--report-data: not hex"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = bench(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("trustee bench verify: ") and message in err, err
    assert len(err.splitlines()) == 1


def test_terminal_summary_names_every_figure() -> None:
    results = {
        "label": "lab",
        "target": {"tee": "tdx", "at": "2025-06-19T11:16:03Z"},
        "per_call_us": {"ours_warm": 90.0, "ours_cold": 700.0, "dcap_qvl": 800.0},
        "calls_per_s": {"ours_warm": 11111.1, "ours_cold": 1428.6, "dcap_qvl": 1250.0},
        "ratio": 8.889,
        "notes": [],
        "warnings": ["verdicts differ: ours UpToDate [], dcap-qvl OutOfDate []"],
    }
    text = summary(results)
    assert "ours, warm" in text and "11111.1 calls/s" in text and "ours, cold" in text
    assert "dcap-qvl / ours warm: 8.89" in text
    assert "warning: verdicts differ" in text


def test_dcap_qvl_baseline_says_when_verdicts_differ_or_it_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("dcap_qvl", reason="dcap-qvl is not installed (the dev extra has it)")
    from trustee.bench.verify_rate import dcap_qvl_baseline, prepare_offline, verdict

    prepared = prepare_offline(
        "tdx",
        vector(QVL + "/tdx_quote"),
        collateral=vector(QVL + "/tdx_quote_collateral.json"),
        at="2025-06-19T11:16:03Z",
    )
    ours = verdict(prepared)
    assert dcap_qvl_baseline(prepared, ours).warnings == []
    differing = dcap_qvl_baseline(prepared, {**ours, "tcb_status": "OutOfDate"})
    assert differing.call is not None
    assert differing.warnings == ["verdicts differ: ours OutOfDate [], dcap-qvl UpToDate []"]
    monkeypatch.setitem(sys.modules, "dcap_qvl", None)  # as if not installed
    missing = dcap_qvl_baseline(prepared, ours)
    assert missing.call is None and missing.note == "no dcap-qvl figure: dcap-qvl is not installed"


def test_a_real_process_fails_without_traceback(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    junk = tmp_path / "junk.json"
    junk.write_text('{"quote": "AAAA"}')
    argv = ["bench", "verify", "--tee=tdx", f"--evidence={junk}", f"--collateral={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, "-m", "trustee.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    assert proc.stderr.startswith("trustee bench verify: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
