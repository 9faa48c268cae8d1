"""Shared test configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"


def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        why = "the shared test vectors (../shared/vectors) are not present beside the repo"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI must provide them")
        pytest.skip(why)
    return VECTORS


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test under tests/e2e starts real processes: `-m "not e2e"` runs the rest alone.
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
