"""`make run` and `make test` build the extension only when something it is built from changed,
and quietly: the Makefile run for real, with stand-ins for the venv's python, maturin and
trustee."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = "building the Rust extension and installing the package"

FAKE_MATURIN = """#!/bin/sh
echo "maturin $*" >> "$(dirname "$0")/../calls"
i=0; while [ $i -lt 80 ]; do echo "pip says $i"; i=$((i+1)); done
if [ -n "$FAKE_FAIL" ]; then echo "error: the build failed" >&2; exit 1; fi
"""
FAKE_TOOL = '#!/bin/sh\necho "$(basename "$0") $*" >> "$(dirname "$0")/../calls"\n'

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make (GNU make)")


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, text in (("maturin", FAKE_MATURIN), ("python", FAKE_TOOL), ("trustee", FAKE_TOOL)):
        (venv / "bin" / name).write_text(text)
        (venv / "bin" / name).chmod(0o755)
    (venv / ".deps-stamp").touch()  # the venv's own set-up is done
    (venv / "calls").touch()
    return venv


def make_run(venv: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "run", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=60,
    )


def builds(venv: Path) -> int:
    return (venv / "calls").read_text().count("maturin develop")


def test_run_builds_once_then_only_after_a_change(venv: Path) -> None:
    first = make_run(venv)
    assert first.returncode == 0, first.stderr
    assert builds(venv) == 1
    assert ANNOUNCE in first.stdout and "pip says" not in first.stdout + first.stderr

    again = make_run(venv)
    assert again.returncode == 0, again.stderr
    assert builds(venv) == 1
    assert ANNOUNCE not in again.stdout
    assert (venv / "calls").read_text().count("trustee serve") == 2

    # A source newer than the last build (as after an edit) builds again.
    os.utime(venv / ".built-stamp", (0, 0))
    assert make_run(venv).returncode == 0
    assert builds(venv) == 2


def test_a_failed_build_shows_its_output_and_is_tried_again(venv: Path) -> None:
    failed = make_run(venv, FAKE_FAIL="1")
    assert failed.returncode != 0
    assert "pip says 79" in failed.stdout and "error: the build failed" in failed.stdout
    assert "trustee serve" not in (venv / "calls").read_text()
    assert make_run(venv).returncode == 0
    assert builds(venv) == 2
