"""What the suite needs is said: tests that need ../shared skip locally with a reason naming what
is missing and fail the run when CI=true (the reason survives a skip raised inside a trio test),
and CONTRIBUTING.md lists every system package CI installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.shared import (
    SEED_ENV,
    SEED_WHAT,
    VECTORS_ENV,
    VECTORS_WHAT,
    missing_message,
)

ROOT = Path(__file__).resolve().parents[2]

# Run in a child pytest with the project's configuration and conftest (its trio handling
# included), as in the real suite.
PROBE = """
import trio
from tests.support.shared import seed_dir, vector, vectors_dir


def test_vectors():
    vectors_dir()


async def test_seed_inside_trio():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_seed)


async def _seed():
    await trio.lowlevel.checkpoint()
    seed_dir()


def test_one_vector():
    vector("trustee/deps/verifier/test_data/tdx_quote_4.dat")
"""


def run_probe(tmp_path: Path, *, ci: bool, status: int) -> str:
    """The child's report, after checking its exit status."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTHONPATH")}
    env |= {VECTORS_ENV: str(tmp_path / "no-vectors"), SEED_ENV: str(tmp_path / "no-seed")}
    if ci:
        env["CI"] = "true"
    args = ["-q", "-rfs", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    args += ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(probe)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == status, result.stdout + result.stderr
    return result.stdout


def expected(tmp_path: Path) -> tuple[str, str]:
    return (
        missing_message(VECTORS_WHAT, tmp_path / "no-vectors", VECTORS_ENV),
        missing_message(SEED_WHAT, tmp_path / "no-seed", SEED_ENV),
    )


def test_missing_shared_folders_skip_locally_with_what_and_how(tmp_path: Path) -> None:
    out = run_probe(tmp_path, ci=False, status=0)
    assert "3 skipped" in out, out
    vectors, seed = expected(tmp_path)
    # Each reason is reported as written, the one raised inside trio included (pytest-trio
    # alone reports a bare "Skipped" there).
    reasons = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("SKIPPED")]
    assert sorted(reasons) == sorted([vectors, seed]), out
    assert "TRUSTEE_VECTORS_DIR" in vectors and "CONTRIBUTING.md" in vectors


def test_missing_shared_folders_fail_the_run_under_ci(tmp_path: Path) -> None:
    out = run_probe(tmp_path, ci=True, status=1)
    assert "3 failed" in out, out
    vectors, seed = expected(tmp_path)
    assert f"Failed: {vectors} [CI=true: required]" in out, out
    assert f"Failed: {seed} [CI=true: required]" in out, out


@pytest.mark.parametrize("name", ["vectors", "seed"])
def test_the_message_names_the_folder_the_variable_and_the_guide(name: str) -> None:
    path = Path("/nowhere") / name
    text = missing_message(f"shared {name}", path, "SOME_ENV")
    assert text == (
        f"shared {name} not found at {path}: set SOME_ENV to that folder, or place the `shared`"
        " folder beside the repository (CONTRIBUTING.md, 'Test data')"
    )


def test_rust_vector_tests_read_the_same_variable() -> None:
    # The Rust side (trustee-testvectors) asserts the same message text in its own tests.
    lib = ROOT / "rust" / "verifier" / "crates" / "trustee-testvectors" / "src" / "lib.rs"
    assert f'pub const ENV: &str = "{VECTORS_ENV}";' in lib.read_text()


def test_contributing_lists_every_system_package_ci_installs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^for tool in (.+); do$", ci, re.MULTILINE)
    assert match, "the tool loop of .ci/run"
    # `cc` is a command; the package that provides it is installed under its own name.
    packages = set(match.group(1).split()) - {"cc"}
    packages |= set(re.findall(r"missing\+=\(([\w-]+)\)", ci))
    assert {"gcc", "postgresql", "python3-venv", "redis-server"} <= packages
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    section = contributing.split("### System packages", 1)[1].split("\n### ", 1)[0]
    for package in sorted(packages):
        assert f"`{package}`" in section, f"CONTRIBUTING.md does not list {package}"
