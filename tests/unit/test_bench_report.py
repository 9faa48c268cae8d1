"""`trustee bench report`: the table, figure and page people compare attestation stacks by."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from trustee.bench.report_cli import main
from trustee.bench.report_plots import PALETTE, SIZE_PX, panel_box
from trustee.bench.results import FORMAT, write_results


def _kbs(label: str, per_second: list[int], cdf: list[list[float]], **extra: Any) -> dict[str, Any]:
    ok = sum(per_second)
    return {
        "format": FORMAT,
        "kind": "kbs",
        "label": label,
        "command": ["trustee", "bench", "kbs", "--url", f"http://{label}:8080", "--label", label],
        "started": "2026-12-08T01:00:00Z",
        "duration_s": len(per_second),
        "warmup_s": 2,
        "machine": {"hostname": "bench-host", "cpus": 2, "cpu_model": "Test CPU"},
        "versions": {"trustee": "0.1.0", "core": "0.1.0"},
        "target": {"url": f"http://{label}:8080", "protocol": "kbs/v0", "tee": "tdx"},
        "load": {"mode": "closed", "clients": 16, "rate": None, "procs": 1},
        "totals": {"flows": ok + 3, "ok": ok, "errors": 3, "flows_per_s": ok / len(per_second)},
        "errors": {"timeout": 1, "http_401/-": 2},
        "latency_ms": {"count": ok, "p50": 4.0, "p90": 9.0, "p99": 30.0, "p99_9": 90.0},
        "latency_cdf": cdf,
        "timeline": [{"t": t, "ok": n, "errors": 0} for t, n in enumerate(per_second)],
        "cpu": {"generator": {"cores": 0.4}, "server": None},
        "warnings": [],
        **extra,
    }


STEADY = _kbs("ours", [200] * 10, [[1.0, 0.1], [4.0, 0.5], [9.0, 0.9], [30.0, 0.99], [90, 1]])
# A second stack, half as fast, that stalls for three seconds: its CDF has a long flat tail.
STALLING = _kbs(
    "upstream",
    [100, 100, 100, 0, 0, 0, 100, 100, 100, 100],
    [[2.0, 0.2], [8.0, 0.6], [20.0, 0.95], [3000.0, 1.0]],
    cpu={"generator": {"cores": 0.3}, "server": {"cores": 1.5, "rss_mib_max": 210}},
    warnings=["the generator used 90% of a core"],
)
VERIFY = {
    "format": FORMAT,
    "kind": "verify",
    "label": "tdx-verify",
    "command": ["trustee", "bench", "verify", "--tee", "tdx"],
    "target": {"tee": "tdx", "evidence": "quote.dat"},
    "per_call_us": {"ours": 800.0, "dcap_qvl": 1000.0},
    "ratio": 0.8,
}


def _files(tmp_path: Path, *runs: dict[str, Any]) -> list[str]:
    paths = []
    for i, run in enumerate(runs):
        path = tmp_path / f"run{i}.json"
        write_results(path, run)
        paths.append(str(path))
    return paths


def _palette_colours(image: Image.Image, box: tuple[int, int, int, int]) -> set[str]:
    """The palette colours drawn in `box`, each counted only with enough pixels to be a line."""
    counts = image.convert("RGB").crop(box).getcolors(maxcolors=SIZE_PX[0] * SIZE_PX[1])
    assert counts is not None
    seen = {"#" + bytes(rgb).hex(): n for n, rgb in counts if isinstance(rgb, tuple)}
    return {c for c in PALETTE if seen.get(c, 0) >= 20}


def test_png_has_the_configured_size_and_one_line_per_run_in_each_panel(tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    assert main([*_files(tmp_path, STEADY, STALLING), "--out", str(out)]) == 0
    image = Image.open(out)
    assert image.size == SIZE_PX
    for panel in ("throughput", "cdf"):
        assert _palette_colours(image, panel_box(panel)) == set(PALETTE[:2]), panel


def test_a_run_without_series_draws_no_line_and_the_panel_says_so(tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    no_cdf = {**STALLING, "latency_cdf": []}
    assert main([*_files(tmp_path, STEADY, no_cdf, VERIFY), "--out", str(out)]) == 0
    image = Image.open(out)
    assert _palette_colours(image, panel_box("throughput")) == set(PALETTE[:2])
    assert _palette_colours(image, panel_box("cdf")) == {PALETTE[0]}


def _page(tmp_path: Path, *runs: dict[str, Any]) -> str:
    out = tmp_path / "report.html"
    assert main([*_files(tmp_path, *runs), "--out", str(out), "--title", "ours vs upstream"]) == 0
    return out.read_text()


def test_html_page_holds_table_ratio_image_and_run_details(tmp_path: Path) -> None:
    page = _page(tmp_path, STEADY, STALLING, VERIFY)
    assert "<title>ours vs upstream</title>" in page
    rows = re.findall(r"<tr>(.*?)</tr>", page)
    steady_row = next(r for r in rows if "<td>ours</td>" in r)
    stalling_row = next(r for r in rows if "<td>upstream</td>" in r)
    assert "<td>1.00×</td>" in steady_row
    assert "<td>0.35×</td>" in stalling_row  # 70 flows/s over 200
    assert "1.50 / 210 MiB" in stalling_row
    assert "3 (http_401/-: 2, timeout: 1)" in stalling_row
    # The verify run has its own table; the baseline is a kbs run, so there is no ratio to show.
    verify_row = next(r for r in rows if "<td>tdx-verify</td>" in r)
    assert "<td>800.0</td><td>1,000.0</td><td>0.80</td><td>—</td>" in verify_row
    (image,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert Image.open(io.BytesIO(base64.b64decode(image))).size == SIZE_PX
    assert "the generator used 90% of a core" in page
    assert "trustee bench kbs --url http://upstream:8080" in page
    assert not re.search(r'(src|href)="(?!data:)', page), "the page loads something from outside"


def test_verify_runs_compare_per_call_time_with_the_first(tmp_path: Path) -> None:
    slower = {**VERIFY, "label": "tdx-older", "per_call_us": {"ours": 1200.0}}
    out = tmp_path / "report.md"
    assert main([*_files(tmp_path, VERIFY, slower), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| tdx-older | tdx | 1,200.0 | — | — | 1.50× |" in text


def test_markdown_has_one_row_per_file_and_each_runs_provenance(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    unlabelled = {k: v for k, v in STALLING.items() if k != "label"}
    assert main([*_files(tmp_path, STEADY, unlabelled, STEADY), "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3  # the header, then one row per file
    assert rows[2].startswith("| run1.json | http://upstream:8080 (kbs/v0, tdx) | closed 16 ")
    assert text.count("- machine: bench-host, 2 CPUs, Test CPU") == 3
    assert "- command: `trustee bench kbs --url http://ours:8080 --label ours`" in text
    assert "- versions: core 0.1.0, trustee 0.1.0" in text


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trustee bench report: "), err
    return err


def test_bad_inputs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (good,) = _files(tmp_path, STEADY)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    err = _one_line_error(capsys, [good, str(other), "--out", str(tmp_path / "r.md")])
    assert f"{other}: not a {FORMAT} results file" in err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "garbage.json: not JSON" in _one_line_error(capsys, [str(garbage), "--out", "r.md"])
    bad_cdf = _files(tmp_path, {**STEADY, "latency_cdf": [[1.0, 2.0]]})
    assert "latency_cdf[0] is not [ms" in _one_line_error(capsys, [*bad_cdf, "--out", "r.md"])
    bad_timeline = _files(tmp_path, {**STEADY, "timeline": [{"t": 0}]})
    err = _one_line_error(capsys, [*bad_timeline, "--out", "r.md"])
    assert "timeline[0] is not {t, ok}" in err
    huge = _files(tmp_path, {**STEADY, "timeline": [{"t": 0, "ok": 1}] * 100_001})
    assert "at most 100000" in _one_line_error(capsys, [*huge, "--out", "r.md"])
    missing = str(tmp_path / "missing.json")
    assert "missing.json" in _one_line_error(capsys, [missing, "--out", "r.md"])
    assert ".html, .md, .png" in _one_line_error(capsys, [good, "--out", "report.pdf"])
    assert "no results file" in _one_line_error(capsys, ["--out", "report.md"])
    assert "--out" in _one_line_error(capsys, [good])
    assert not (tmp_path / "r.md").exists()


def test_the_trustee_command_runs_the_report(tmp_path: Path) -> None:
    files = _files(tmp_path, STEADY, STALLING)
    out = tmp_path / "r.md"
    done = subprocess.run(
        [sys.executable, "-m", "trustee.cli", "bench", "report", *files, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "| upstream |" in out.read_text()


def test_matplotlib_is_loaded_by_the_report_plots_only() -> None:
    script = (
        "import sys\n"
        "import trustee.cli, trustee.bench.cli, trustee.bench.results\n"
        "import trustee.bench.report_cli, trustee.bench.report_table\n"
        "import trustee.bench.report_markdown, trustee.bench.report_html\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL', 'numpy')])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
