"""Simulated TDX and SNP guests attest through the real server and receive secrets.

`trustee simulate init` makes a test PKI (TDX: root, PCK chain, QE, TCB signing key and
collateral; SNP: ARK, ASK, VCEK); the server trusts it only through
`verifier_config.insecure_test_roots` and says so loudly. The guest is the real `trustee-client`
process with TRUSTEE_SIMULATED_TEE set; every protocol generation is exercised. Resource
policies judge the hardware claims (TCB status, launch digest).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs, run_module
from tests.e2e.simulated import (
    PROTOCOLS,
    annotated_evidence,
    denied_by_policy,
    secret_in_every_generation,
    simulate,
    simulated_pkis,
    store_secret_and_policy,
    trusting,
)
from trustee.client.attesters import AttesterSet
from trustee.client.generations import GENERATIONS, Challenge
from trustee.crypto.jws import split_compact
from trustee.simulate import SimulatedTdxAttester, TdxTestPki

SECRET = b"released to attested hardware"
PATH = "default/hardware/secret"
GOOD = hashlib.sha384(b"the launch digest we expect").hexdigest()
OTHER = hashlib.sha384(b"some other image").hexdigest()


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_module(*argv, env=env)


def config(tdx: Path, snp: Path) -> str:
    return DEV_CONFIG + trusting(tdx, snp)


def guest(tee: str, directory: Path, measurement: str) -> dict[str, str]:
    return {
        "TRUSTEE_SIMULATED_TEE": tee,
        "TRUSTEE_SIMULATED_PKI": str(directory / "pki"),
        "TRUSTEE_SIMULATED_MEASUREMENT": measurement,
    }


def measurement_policy(tee: str, digest: str) -> str:
    field = {"tdx": "quote.body.mr_td", "snp": "measurement"}[tee]
    evidence = f'input.submods.cpu0["ear.veraison.annotated-evidence"].{tee}.{field}'
    return (
        "package policy\nimport rego.v1\ndefault allow := false\n"
        f'allow if {evidence} == "{digest}"\n'
    )


async def admin_setup(kbs: RunningKbs, policy: str) -> None:
    await store_secret_and_policy(kbs, PATH, SECRET, policy)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return simulated_pkis(tmp_path_factory.mktemp("simulated"))


@pytest.mark.parametrize("tee", ["tdx", "snp"])
async def test_simulated_guest_gets_the_secret_for_its_launch_digest(
    tee: str, pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    directory = tdx if tee == "tdx" else snp
    async with run_kbs(config(tdx, snp), tmp_path) as kbs:
        await admin_setup(kbs, measurement_policy(tee, GOOD))
        await secret_in_every_generation(kbs, PATH, SECRET, guest(tee, directory, GOOD))
        # Another launch digest, same genuine (simulated) hardware: the policy says no.
        await denied_by_policy(kbs, PATH, guest(tee, directory, OTHER))
        # The token carries the hardware claims the policies judged.
        evidence = await annotated_evidence(kbs, guest(tee, directory, GOOD), tee)
        if tee == "tdx":
            assert evidence["quote"]["body"]["mr_td"] == GOOD
            assert evidence["tcb_status"] == "UpToDate"
            assert evidence["collateral_expiration_status"] == "0"
        else:
            assert evidence["measurement"] == GOOD
            assert evidence["vmpl"] == 0
        log = kbs.log_text()
        assert "INSECURE" in log and "insecure_test_roots" in log


async def test_untrusted_pki_is_refused_with_the_failing_check(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    stranger = tmp_path / "stranger"
    await simulate("tdx", stranger)
    async with run_kbs(config(tdx, snp), tmp_path) as kbs:
        await admin_setup(kbs, measurement_policy("tdx", GOOD))
        code, _, err = await run(
            "trustee.client.cli", "--url", kbs.url, "attest", env=guest("tdx", stranger, GOOD)
        )
        assert code != 0
        log = kbs.log_text()
        assert "root" in log.lower() and "tdx verification failed" in log, log[-2000:]
        # The server keeps serving genuine guests.
        code, out, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tdx", tdx, GOOD),
        )  # fmt: skip
        assert code == 0, err
        assert base64.b64decode(out) == SECRET


async def attest_as(kbs: RunningKbs, protocol: str, pki: Path) -> httpx.Response:
    """/auth and /attest as a TDX guest of `pki` speaking `protocol`: the /attest answer. (The
    attester is made here: the client keeps the first PKI it loads for the process.)"""
    generation = GENERATIONS[protocol]
    tdx = SimulatedTdxAttester(TdxTestPki.load(pki), measurement=bytes.fromhex(GOOD))
    attesters = AttesterSet(primary=tdx)
    jwk = generation.tee_public_jwk(generation.generate_tee_key())
    async with kbs.client() as http:
        r = await http.post("/kbs/v0/auth", json=generation.auth_request(attesters.primary.tee))
        assert r.status_code == 200, r.text
        body = generation.attestation(Challenge.parse(r.content), jwk, attesters, None)
        return await http.post("/kbs/v0/attest", json=body)


async def test_a_remade_pki_is_refused_with_the_failing_check_in_every_generation(
    tmp_path: Path,
) -> None:
    sim = tmp_path / "sim"
    await simulate("tdx", sim)
    text = DEV_CONFIG + (
        "[attestation_service.verifier_config]\n"
        f'insecure_test_roots = ["{sim / "tdx-test-root.pem"}"]\n'
        f'collateral = "{sim / "tdx-collateral.json"}"\n'
    )
    async with run_kbs(text, tmp_path) as kbs:
        assert (await attest_as(kbs, "0.4.0", sim / "pki")).status_code == 200
        # The server trusts this PKI: making another one over it takes --force.
        code, out, err = await run(
            "trustee.cli", "simulate", "init", "--tee", "tdx", "--dir", str(sim)
        )
        assert (code, out) == (2, "")
        assert err == (
            f"trustee simulate init: {sim} holds a simulated PKI already; --force replaces it\n"
        )
        code, _, err = await run(
            "trustee.cli", "simulate", "init", "--tee", "tdx", "--dir", str(sim), "--force"
        )
        assert code == 0, err
        root = x509.load_pem_x509_certificate((sim / "tdx-test-root.pem").read_bytes())
        fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
        for protocol in PROTOCOLS:
            r = await attest_as(kbs, protocol, sim / "pki")
            assert r.status_code == 401, protocol
            assert r.json() == {
                "type": "https://github.com/confidential-containers/kbs/errors/AttestationError",
                "detail": "Attestation error: RCAR handshake Attest failed",
                "reason": "evidence[0] (tdx): Verifier evaluate failed: tdx verification failed: "
                "PCK certificate chain root check failed: root certificate SHA-256 "
                f"{fingerprint} is not a trusted root fingerprint",
            }, protocol


async def test_without_test_roots_simulated_evidence_is_rejected(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    text = config(tdx, snp).replace("insecure_test_roots", "# insecure_test_roots")
    async with run_kbs(text, tmp_path) as kbs:
        for tee, directory in (("tdx", tdx), ("snp", snp)):
            code, _, _ = await run(
                "trustee.client.cli", "--url", kbs.url, "attest", env=guest(tee, directory, GOOD)
            )
            assert code != 0, tee
        assert "INSECURE" not in kbs.log_text()


TCB_POLICY = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if input.submods.cpu0["ear.veraison.annotated-evidence"].tdx.tcb_status == "UpToDate"\n'
)


async def test_out_of_date_tdx_platform_is_denied_by_a_tcb_policy(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    behind = tmp_path / "behind"
    code, _, err = await run(
        "trustee.cli", "simulate", "init", "--tee", "tdx", "--dir", str(behind),
        "--tcb-status", "OutOfDate",
    )  # fmt: skip
    assert code == 0, err
    text = config(tdx, snp).replace(
        f'"{tdx / "tdx-test-root.pem"}"',
        f'"{tdx / "tdx-test-root.pem"}", "{behind / "tdx-test-root.pem"}"',
    )
    # One collateral file per server here, so the out-of-date platform gets its own server.
    text = text.replace(str(tdx / "tdx-collateral.json"), str(behind / "tdx-collateral.json"))
    async with run_kbs(text, tmp_path) as kbs:
        await admin_setup(kbs, TCB_POLICY)
        code, token, err = await run(
            "trustee.client.cli", "--url", kbs.url, "attest", env=guest("tdx", behind, GOOD)
        )
        assert code == 0, err  # attestation succeeds: the TCB status is a claim for policy
        claims = split_compact(token.strip()).claims()
        tdx_claims = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]
        assert tdx_claims["tcb_status"] == "OutOfDate"
        assert tdx_claims["advisory_ids"] == ["INTEL-SA-00000"]
        code, _, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tdx", behind, GOOD),
        )  # fmt: skip
        assert code != 0 and "PolicyDeny" in err, err


INIT_DATA = """version = "0.1.0"
algorithm = "sha256"
[data]
"aa.toml" = '''
[token_configs]
[token_configs.kbs]
url = "http://127.0.0.1:8080"
'''
"""


@pytest.mark.parametrize("tee", ["tdx", "snp"])
async def test_init_data_is_bound_to_the_hardware_field(
    tee: str, pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    # TDX binds the digest in MRCONFIGID (48 bytes), SNP in HOST_DATA (32 bytes); the server
    # checks the field against the digest of the TOML the guest sent, then exposes its claims.
    tdx, snp = pkis
    async with run_kbs(config(tdx, snp), tmp_path) as kbs:
        code, token, err = await run(
            "trustee.client.cli", "--url", kbs.url, "attest", INIT_DATA,
            env=guest(tee, tdx if tee == "tdx" else snp, GOOD),
        )  # fmt: skip
        assert code == 0, f"{err}\n{kbs.log_text()[-2000:]}"
        claims = split_compact(token.strip()).claims()
        annotated = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
        digest = hashlib.sha256(INIT_DATA.encode()).hexdigest()
        field = (
            annotated[tee]["quote"]["body"]["mr_config_id"]
            if tee == "tdx"
            else annotated[tee]["host_data"]
        )
        assert field.startswith(digest)
        assert "aa.toml" in json.dumps(annotated.get("init_data_claims"))


async def test_collateral_fetch_is_audited_and_counted(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    log = tmp_path / "audit.jsonl"
    text = config(tdx, snp) + f'\n[[audit.sinks]]\ntype = "file"\npath = "{log}"\n'
    async with run_kbs(text, tmp_path) as kbs:
        for _ in range(2):
            code, _, err = await run(
                "trustee.client.cli", "--url", kbs.url, "attest", env=guest("tdx", tdx, GOOD)
            )
            assert code == 0, err
        async with kbs.client() as http:
            metrics = (await http.get("/metrics")).text
    assert 'trustee_collateral_fetches_total{outcome="fetched",tee="tdx"} 1.0' in metrics
    fetched = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"org.trustee-py.collateral.fetched"' in line
    ]
    assert len(fetched) == 1  # the second attestation used the cached collateral
    assert fetched[0]["data"]["tee"] == "tdx"
