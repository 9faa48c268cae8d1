"""Shared test configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT.parent / "shared" / "vectors"


def vectors_dir() -> Path:
    if not VECTORS.is_dir():
        pytest.skip("the shared test vectors (../shared/vectors) are not present beside the repo")
    return VECTORS
