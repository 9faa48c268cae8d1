"""A simulated SGX enclave attests through the real server and receives a secret.

`trustee simulate init --tee sgx` makes the test PKI (the DCAP root, PCK chain and quoting
enclave of the TDX simulation) and the server's trust files (the test root, SGX collateral
signed by the test TCB-signing key); the server trusts them only through
`verifier_config.insecure_test_roots`. The guest is the real `trustee-client` process with
TRUSTEE_SIMULATED_TEE=sgx, in every protocol generation; a resource policy judges MRENCLAVE.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs
from tests.e2e.simulated import (
    annotated_evidence,
    denied_by_policy,
    get_secret,
    secret_in_every_generation,
    simulate,
    store_secret_and_policy,
)

SECRET = b"released to an attested enclave"
PATH = "default/enclave/secret"
GOOD = hashlib.sha256(b"the enclave we expect").hexdigest()
OTHER = hashlib.sha256(b"some other enclave").hexdigest()
EVIDENCE = 'input.submods.cpu0["ear.veraison.annotated-evidence"].sgx'
POLICY = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    f'allow if {{\n    {EVIDENCE}.body.mr_enclave == "{GOOD}"\n'
    f'    {EVIDENCE}.tcb_status == "UpToDate"\n}}\n'
)


def config(sgx: Path) -> str:
    return (
        DEV_CONFIG
        + f"""
[attestation_service.verifier_config]
insecure_test_roots = ["{sgx / "sgx-test-root.pem"}"]
collateral = "{sgx / "sgx-collateral.json"}"
"""
    )


def enclave(directory: Path, mr_enclave: str) -> dict[str, str]:
    return {
        "TRUSTEE_SIMULATED_TEE": "sgx",
        "TRUSTEE_SIMULATED_PKI": str(directory / "pki"),
        "TRUSTEE_SIMULATED_MEASUREMENT": mr_enclave,
    }


async def admin_setup(kbs: RunningKbs) -> None:
    await store_secret_and_policy(kbs, PATH, SECRET, POLICY)


@pytest.fixture(scope="module")
def sgx_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("simulated") / "sgx"
    trio.run(simulate, "sgx", directory)
    return directory


async def test_simulated_enclave_gets_the_secret_in_every_generation(
    sgx_pki: Path, tmp_path: Path
) -> None:
    async with run_kbs(config(sgx_pki), tmp_path) as kbs:
        await admin_setup(kbs)
        await secret_in_every_generation(kbs, PATH, SECRET, enclave(sgx_pki, GOOD))
        # The token carries the SGX claims the policy judged.
        evidence = await annotated_evidence(kbs, enclave(sgx_pki, GOOD), "sgx")
        assert evidence["body"]["mr_enclave"] == GOOD
        assert evidence["tcb_status"] == "UpToDate"
        assert evidence["collateral_expiration_status"] == "0"


async def test_another_mrenclave_is_denied_by_the_policy(sgx_pki: Path, tmp_path: Path) -> None:
    async with run_kbs(config(sgx_pki), tmp_path) as kbs:
        await admin_setup(kbs)
        # Same genuine (simulated) platform, another enclave: attestation passes, policy says no.
        await denied_by_policy(kbs, PATH, enclave(sgx_pki, OTHER))
        code, out, err = await get_secret(kbs, PATH, enclave(sgx_pki, GOOD))
        assert code == 0, err
        assert base64.b64decode(out) == SECRET
