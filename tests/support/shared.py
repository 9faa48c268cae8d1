"""Where the tests find the `shared` folder beside the repository: the upstream test vectors
(`shared/vectors`) and the deployment blog's objects (`shared/seed`).

Locally a test that needs an absent folder skips, and the reason names the folder and how to
provide it; under `CI=true` the same message fails the run, so CI never passes on skipped tests.
The Rust vector tests (crate `trustee-testvectors`) read the same variable and print or panic
with the same message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS_ENV = "TRUSTEE_VECTORS_DIR"
SEED_ENV = "TRUSTEE_SEED_DIR"
VECTORS_WHAT = "shared test vectors"
SEED_WHAT = "shared deployment seed"


def missing_message(what: str, path: Path, env: str) -> str:
    return (
        f"{what} not found at {path}: set {env} to that folder, or place the `shared` folder"
        " beside the repository (CONTRIBUTING.md, 'Test data')"
    )


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message} [CI=true: required]", pytrace=False)
    pytest.skip(message)


def _configured(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else default


def vectors_path() -> Path:
    """The vectors folder the tests use, whether or not it exists."""
    return _configured(VECTORS_ENV, ROOT.parent / "shared" / "vectors")


def seed_path() -> Path:
    """The seed folder the tests use, whether or not it exists."""
    return _configured(SEED_ENV, ROOT.parent / "shared" / "seed")


def _folder(path: Path, what: str, env: str) -> Path:
    if not path.is_dir():
        missing(missing_message(what, path, env))
    return path


def _file(folder: Path, relative: str, what: str, env: str) -> Path:
    path = folder / relative
    if not path.is_file():
        missing(missing_message(f"{what} {relative}", path, env))
    return path


def vectors_dir() -> Path:
    return _folder(vectors_path(), VECTORS_WHAT, VECTORS_ENV)


def vector(relative: str) -> Path:
    return _file(vectors_dir(), relative, "test vector", VECTORS_ENV)


def seed_dir() -> Path:
    return _folder(seed_path(), SEED_WHAT, SEED_ENV)


def seed_file(name: str) -> Path:
    return _file(seed_dir(), name, "seed file", SEED_ENV)
