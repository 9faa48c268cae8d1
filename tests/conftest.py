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
