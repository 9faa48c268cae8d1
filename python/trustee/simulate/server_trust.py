"""The files a KBS needs to accept a simulated PKI's evidence, and nothing it must not see."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from trustee.simulate.azure import AzSnpVtpmPki, AzTdxVtpmPki
from trustee.simulate.sgx import SgxTestPki
from trustee.simulate.snp import SnpTestPki
from trustee.simulate.store import SimulationError
from trustee.simulate.tdx import TdxTestPki
from trustee.simulate.tpm import TpmTestPki

TDX_ROOT_FILE = "tdx-test-root.pem"
TDX_COLLATERAL_FILE = "tdx-collateral.json"
SGX_ROOT_FILE = "sgx-test-root.pem"
SGX_COLLATERAL_FILE = "sgx-collateral.json"
SNP_ROOTS_FILE = "snp-test-ark-ask.pem"
TPM_AK_FILE = "tpm-trusted-ak.txt"
TPM_AK_ROOT_FILE = "tpm-ak-root.pem"
# What a TPM guest's `ak_public` is checked against in the policy.
TPM_AK_REFERENCE_VALUE = "trusted_aks"

TrustedPki = TdxTestPki | SgxTestPki | SnpTestPki | AzSnpVtpmPki | AzTdxVtpmPki | TpmTestPki


def write_server_trust(
    pki: TrustedPki,
    directory: str | os.PathLike[str],
    now: datetime.datetime | None = None,
    *,
    tcb_status: str = "UpToDate",
) -> dict[str, Path]:
    """Write the server's trust files; returns their paths by role.

    TDX and SGX: `test_roots` (the root certificate alone) and `collateral` (dcap-qvl JSON
    form, the TEE's documents, valid from an hour before `now` for 30 days, rating the platform
    `tcb_status`). SNP: `test_roots` (ASK then ARK). The Azure vTPM guests: their hardware's
    files. TPM: `trusted_ak` (the AK public key as the verifier reports it, to register as
    reference value `trusted_aks`) and `ak_root` (the test AK CA, for `tpm_ak_roots`).
    """
    target = Path(directory)
    try:
        # Default permissions: these files are public and the server may run as another user.
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SimulationError(f"{target}: cannot create directory: {exc.strerror or exc}") from None
    files: dict[str, tuple[Path, str]]
    if isinstance(pki, AzSnpVtpmPki | AzTdxVtpmPki):
        pki = pki.snp if isinstance(pki, AzSnpVtpmPki) else pki.tdx
    if isinstance(pki, TpmTestPki):
        files = {
            "trusted_ak": (target / TPM_AK_FILE, pki.ak.spki_b64 + "\n"),
            "ak_root": (target / TPM_AK_ROOT_FILE, pki.ca_pem),
        }
    elif isinstance(pki, SgxTestPki):
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
