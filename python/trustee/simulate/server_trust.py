"""The files a KBS needs to accept a simulated PKI's evidence, and nothing it must not see."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from trustee.simulate.sgx import SgxTestPki
from trustee.simulate.snp import SnpTestPki
from trustee.simulate.store import SimulationError
from trustee.simulate.tdx import TdxTestPki

TDX_ROOT_FILE = "tdx-test-root.pem"
TDX_COLLATERAL_FILE = "tdx-collateral.json"
SGX_ROOT_FILE = "sgx-test-root.pem"
SGX_COLLATERAL_FILE = "sgx-collateral.json"
SNP_ROOTS_FILE = "snp-test-ark-ask.pem"


def write_server_trust(
    pki: TdxTestPki | SgxTestPki | SnpTestPki,
    directory: str | os.PathLike[str],
    now: datetime.datetime | None = None,
    *,
    tcb_status: str = "UpToDate",
) -> dict[str, Path]:
    """Write the server's trust files; returns their paths by role.

    TDX and SGX: `test_roots` (the root certificate alone) and `collateral` (dcap-qvl JSON
    form, the TEE's documents, valid from an hour before `now` for 30 days, rating the platform
    `tcb_status`). SNP: `test_roots` (ASK then ARK).
    """
    target = Path(directory)
    try:
        # Default permissions: these files are public and the server may run as another user.
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"{target}: cannot create directory: {exc.strerror or exc}") from None
    files: dict[str, tuple[Path, str]]
    if isinstance(pki, SgxTestPki):
        collateral = json.dumps(pki.collateral(now, status=tcb_status), indent=2) + "\n"
        files = {
            "test_roots": (target / SGX_ROOT_FILE, pki.root_pem),
            "collateral": (target / SGX_COLLATERAL_FILE, collateral),
        }
    elif isinstance(pki, TdxTestPki):
        collateral = json.dumps(pki.collateral(now, status=tcb_status), indent=2) + "\n"
        files = {
            "test_roots": (target / TDX_ROOT_FILE, pki.root_pem),
            "collateral": (target / TDX_COLLATERAL_FILE, collateral),
        }
    elif isinstance(pki, SnpTestPki):
        files = {"test_roots": (target / SNP_ROOTS_FILE, pki.ask_ark_pem)}
    else:
        raise SimulationError(f"no server trust files for a {type(pki).__name__}")
    for path, text in files.values():
        try:
            path.write_text(text, encoding="ascii")
        except OSError as exc:
            raise SimulationError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return {role: path for role, (path, _) in files.items()}
