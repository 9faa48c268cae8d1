"""Simulated vTPM guests (Azure SEV-SNP and TDX CVMs, a plain TPM) attest through the real
server and receive secrets.

`trustee simulate init --tee az-snp-vtpm|az-tdx-vtpm` makes the hardware test PKI plus the vTPM
keys; the server trusts the hardware only through `verifier_config.insecure_test_roots`. For
`--tee tpm` the admin registers the AK as reference value `trusted_aks` with the command init
prints, or the server lists the test AK CA init writes in `tpm_ak_roots` (the guest sends its AK
certificate). The guest is the real `trustee-client` process with
TRUSTEE_SIMULATED_TEE set, speaking every protocol generation (the legacy ones spell the Azure
TEEs without hyphens); resource policies judge the PCRs.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shlex
from pathlib import Path

import pytest
import trio
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs, run_module
from tests.e2e.simulated import (
    annotated_evidence,
    denied_by_policy,
    secret_in_every_generation,
    store_secret_and_policy,
    trusting,
)
from trustee.crypto.jws import split_compact
from trustee.protocol.tees import LEGACY_WIRE_SPELLING

SECRET = b"released to an attested vTPM guest"
PATH = "default/vtpm/secret"
GOOD = hashlib.sha256(b"the workload we expect").hexdigest()
OTHER = hashlib.sha256(b"some other workload").hexdigest()
TEES = ("az-snp-vtpm", "az-tdx-vtpm", "tpm")
EVIDENCE = 'input.submods.cpu0["ear.veraison.annotated-evidence"]'


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_module(*argv, env=env)


async def simulate(tee: str, directory: Path, into: dict[str, str]) -> None:
    code, out, err = await run(
        "trustee.cli", "simulate", "init", "--tee", tee, "--dir", str(directory)
    )
    assert code == 0, err
    into[tee] = out


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each vTPM TEE's init directory and the summary init printed."""
    base = tmp_path_factory.mktemp("vtpm")
    printed: dict[str, str] = {}

    async def make() -> None:
        async with trio.open_nursery() as nursery:
            for tee in TEES:
                nursery.start_soon(simulate, tee, base / tee, printed)

    trio.run(make)
    return {tee: (base / tee, printed[tee]) for tee in TEES}


def config(sims: dict[str, tuple[Path, str]]) -> str:
    return DEV_CONFIG + trusting(sims["az-tdx-vtpm"][0], sims["az-snp-vtpm"][0])


def guest(tee: str, directory: Path, pcr11: str) -> dict[str, str]:
    return {
        "TRUSTEE_SIMULATED_TEE": tee,
        "TRUSTEE_SIMULATED_PKI": str(directory / "pki"),
        "TRUSTEE_SIMULATED_PCRS": f"11={pcr11}",
    }


def policy(tee: str) -> str:
    if tee == "tpm":
        # The AK and PCR11 are judged by default_cpu against the reference values
        # trusted_aks and tpm_pcr11; the resource policy asks for its verdict.
        rule = 'input.submods.cpu0["ear.trustworthiness-vector"].executables == 3'
    else:
        rule = f'{EVIDENCE}["{tee}"].tpm.pcr11 == "{GOOD}"'
    return f"package policy\nimport rego.v1\ndefault allow := false\nallow if {rule}\n"


async def admin_setup(
    kbs: RunningKbs, tee: str, init_output: str, *, register_ak: bool = True
) -> None:
    await store_secret_and_policy(kbs, PATH, SECRET, policy(tee))
    if tee != "tpm":
        return
    # The command init printed, run as printed (against this server).
    (line,) = re.findall(
        r"^trustee-client config set-sample-reference-value .*$", init_output, re.M
    )
    argv = shlex.split(line)[1:]
    commands = [argv] if register_ak else []
    for args in [*commands, [*argv[:2], "tpm_pcr11", GOOD]]:
        code, out, err = await run("trustee.client.cli", "--url", kbs.url, *args)
        assert (code, out) == (0, "Reference Values Updated\n"), err


@pytest.mark.parametrize("tee", TEES)
async def test_vtpm_guest_gets_the_secret_for_its_pcrs_in_every_generation(
    tee: str, sims: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    directory, printed = sims[tee]
    async with run_kbs(config(sims), tmp_path) as kbs:
        await admin_setup(kbs, tee, printed)
        await secret_in_every_generation(kbs, PATH, SECRET, guest(tee, directory, GOOD))
        # Another PCR11 from the same genuine (simulated) guest: the policy says no.
        await denied_by_policy(kbs, PATH, guest(tee, directory, OTHER))
        # The token carries the TPM claims the policies judged.
        evidence = await annotated_evidence(kbs, guest(tee, directory, GOOD), tee)
        if tee == "tpm":
            ak = (directory / "tpm-trusted-ak.txt").read_text().strip()
            assert (evidence["pcr11"], evidence["ak_public"]) == (GOOD, ak)
        else:
            assert evidence["tpm"]["pcr11"] == GOOD
            assert evidence["tpm"]["pcr08"] == "00" * 32
        # Metrics count each TEE under its own label (the spelling the client sent).
        async with kbs.client() as http:
            text = (await http.get("/metrics")).text
        successes = {
            s.labels["tee_type"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "kbs_attestation_successes_total"
        }
        spellings = {tee, LEGACY_WIRE_SPELLING.get(tee, tee)}
        assert successes.get(tee, 0) >= 2, successes  # 0.4.0 get-resource and attest
        assert sum(successes.get(t, 0) for t in spellings) >= 5, successes


async def test_tpm_guest_with_an_unregistered_ak_is_denied(
    sims: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    await simulate("tpm", stranger, {})
    directory, printed = sims["tpm"]
    async with run_kbs(config(sims), tmp_path) as kbs:
        await admin_setup(kbs, "tpm", printed)
        code, _, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tpm", stranger, GOOD),
        )  # fmt: skip
        assert code != 0 and "PolicyDeny" in err, err
        code, out, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tpm", directory, GOOD),
        )  # fmt: skip
        assert code == 0, err
        assert base64.b64decode(out) == SECRET


def ak_root_config(sims: dict[str, tuple[Path, str]]) -> str:
    """The server configuration with the `tpm_ak_roots` line `init --tee tpm` printed."""
    lines: list[str] = re.findall(r"^tpm_ak_roots = .*$", sims["tpm"][1], re.M)
    assert len(lines) == 1, sims["tpm"][1]
    return config(sims) + lines[0] + "\n"


async def test_tpm_guest_certified_by_a_configured_root_gets_the_secret(
    sims: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    directory, printed = sims["tpm"]
    async with run_kbs(ak_root_config(sims), tmp_path) as kbs:
        # Only tpm_pcr11: the AK is not in trusted_aks, its certificate vouches for it.
        await admin_setup(kbs, "tpm", printed, register_ak=False)
        code, out, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tpm", directory, GOOD),
        )  # fmt: skip
        assert code == 0, f"{err}\n{kbs.log_text()[-3000:]}"
        assert base64.b64decode(out) == SECRET
        code, token, err = await run(
            "trustee.client.cli", "--url", kbs.url, "attest", env=guest("tpm", directory, GOOD)
        )
        assert code == 0, err
        cpu0 = split_compact(token.strip()).claims()["submods"]["cpu0"]
        evidence = cpu0["ear.veraison.annotated-evidence"]["tpm"]
        assert evidence["ak_certified"] is True
        root = x509.load_pem_x509_certificate((directory / "tpm-ak-root.pem").read_bytes())
        assert evidence["ak_cert_issuer"] == root.subject.rfc4514_string()
        assert cpu0["ear.trustworthiness-vector"]["executables"] == 3


async def test_tpm_guest_certified_by_another_ca_is_refused(
    sims: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    # Another init: another AK CA, with the same name as the configured one.
    stranger = tmp_path / "stranger"
    await simulate("tpm", stranger, {})
    async with run_kbs(ak_root_config(sims), tmp_path) as kbs:
        await admin_setup(kbs, "tpm", sims["tpm"][1], register_ak=False)
        code, _, err = await run(
            "trustee.client.cli", "--url", kbs.url, "get-resource", "--path", PATH,
            env=guest("tpm", stranger, GOOD),
        )  # fmt: skip
        assert code != 0
        log = kbs.log_text()
        for text in (err, log):
            assert "the AK is not certified by a configured root" in text, text[-3000:]
        # Matched by the root's signature, not its name.
        refusal = r"ak_cert: signature does not verify with the key of [^\n]*CN=Trustee"
        assert re.search(refusal, log)


INIT_DATA = """version = "0.1.0"
algorithm = "sha256"
[data]
"aa.toml" = '''
[token_configs]
[token_configs.kbs]
url = "http://127.0.0.1:8080"
'''
"""


@pytest.mark.parametrize("tee", TEES)
async def test_init_data_is_bound_to_pcr8(
    tee: str, sims: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    directory, _ = sims[tee]
    async with run_kbs(config(sims), tmp_path) as kbs:
        code, token, err = await run(
            "trustee.client.cli", "--url", kbs.url, "attest", INIT_DATA,
            env=guest(tee, directory, GOOD),
        )  # fmt: skip
        assert code == 0, f"{err}\n{kbs.log_text()[-2000:]}"
        annotated = split_compact(token.strip()).claims()["submods"]["cpu0"][
            "ear.veraison.annotated-evidence"
        ]
        digest = hashlib.sha256(INIT_DATA.encode()).digest()
        pcr8 = hashlib.sha256(bytes(32) + digest).hexdigest()
        # The AS lifts the verifier's init_data claim (PCR8 here) beside the TEE's claims.
        assert annotated["init_data"] == pcr8
        assert tee in annotated
        assert "aa.toml" in str(annotated.get("init_data_claims"))
