"""`trustee simulate init` for the vTPM guests (az-snp-vtpm, az-tdx-vtpm, tpm), the client's
choice of their attesters from the environment, the PCR knob, and the Azure TEE spelling each
protocol generation's client sends."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
from pathlib import Path

import pytest

from trustee.client.attesters import detect_attesters
from trustee.client.generations import GENERATIONS
from trustee.client.kbs import KbsClientError
from trustee.simulate import simulate_main, vtpm
from trustee.simulate.azure import SimulatedAzSnpVtpmAttester, SimulatedAzTdxVtpmAttester
from trustee.simulate.tpm import SimulatedTpmAttester

PCR11 = hashlib.sha256(b"workload").hexdigest()
TEES = ("az-snp-vtpm", "az-tdx-vtpm", "tpm")


def _init(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = simulate_main(["init", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Each vTPM TEE's init directory and what init printed."""
    out = {}
    for tee in TEES:
        directory = tmp_path_factory.mktemp(tee)
        code, text, err = _init("--tee", tee, "--dir", str(directory))
        assert code == 0, err
        out[tee] = (directory, text)
    return out


def env_for(tee: str, directory: Path, **extra: str) -> dict[str, str]:
    return {"TRUSTEE_SIMULATED_TEE": tee, "TRUSTEE_SIMULATED_PKI": str(directory / "pki"), **extra}


def test_azure_init_writes_the_hardware_roots_and_the_vtpm_keys(
    made: dict[str, tuple[Path, str]],
) -> None:
    for tee, root in (
        ("az-snp-vtpm", "snp-test-ark-ask.pem"),
        ("az-tdx-vtpm", "tdx-test-root.pem"),
    ):
        directory, text = made[tee]
        assert (directory / root).exists()
        assert (directory / "pki" / "ak.key").stat().st_mode & 0o077 == 0
        assert f'insecure_test_roots = ["{directory / root}"]' in text
        assert f"TRUSTEE_SIMULATED_TEE={tee} TRUSTEE_SIMULATED_PKI={directory / 'pki'}" in text
    assert "collateral = " in made["az-tdx-vtpm"][1]


def test_tpm_init_prints_the_reference_value_command_for_its_ak(
    made: dict[str, tuple[Path, str]],
) -> None:
    directory, text = made["tpm"]
    ak = (directory / "tpm-trusted-ak.txt").read_text().strip()
    assert f"trustee-client config set-sample-reference-value trusted_aks {ak}\n" in text
    assert "insecure_test_roots" not in text
    # The other path: the test AK CA, for the server's tpm_ak_roots.
    assert f'tpm_ak_roots = ["{directory / "tpm-ak-root.pem"}"]\n' in text
    assert (directory / "pki" / "ak-ca.key").stat().st_mode & 0o077 == 0
    # The file holds what the client's evidence reports as ak_public.
    evidence = detect_attesters(env_for("tpm", directory)).primary.evidence(b"n", None)
    assert evidence["ak_public"] == ak


def test_init_refuses_options_of_other_tees(tmp_path: Path) -> None:
    code, _, err = _init("--tee", "tpm", "--dir", str(tmp_path), "--product", "Milan")
    assert code == 2
    assert err == (
        "trustee simulate init: --product applies to --tee snp or az-snp-vtpm, not tpm\n"
    )
    code, _, err = _init(
        "--tee", "az-snp-vtpm", "--dir", str(tmp_path), "--tcb-status", "OutOfDate"
    )
    assert code == 2 and "--tcb-status applies to --tee tdx, sgx or az-tdx-vtpm" in err


def test_init_refuses_to_replace_a_tpm_ak_without_force(
    made: dict[str, tuple[Path, str]],
) -> None:
    directory, _ = made["tpm"]
    code, _, err = _init("--tee", "tpm", "--dir", str(directory))
    assert code == 2 and "--force replaces it" in err


@pytest.mark.parametrize(
    ("tee", "kind"),
    [
        ("az-snp-vtpm", SimulatedAzSnpVtpmAttester),
        ("az-tdx-vtpm", SimulatedAzTdxVtpmAttester),
        ("tpm", SimulatedTpmAttester),
    ],
)
def test_environment_picks_the_guest_and_its_pcrs(
    tee: str, kind: type, made: dict[str, tuple[Path, str]]
) -> None:
    directory, _ = made[tee]
    attester = detect_attesters(env_for(tee, directory, TRUSTEE_SIMULATED_PCRS=f"11={PCR11}"))
    assert isinstance(attester.primary, kind) and attester.primary.tee == tee
    init_data = hashlib.sha256(b"toml").digest()
    quote = attester.primary.evidence(b"\x01" * 48, init_data)["tpm_quote"]
    assert quote["pcrs"][11] == PCR11
    assert quote["pcrs"][8] == vtpm.init_data_pcr(init_data).hex()
    plain = detect_attesters(env_for(tee, directory)).primary.evidence(b"\x01" * 48, None)
    assert plain["tpm_quote"]["pcrs"][11] == "00" * 32


@pytest.mark.parametrize(
    ("tee", "extra", "message"),
    [
        ("tpm", {"TRUSTEE_SIMULATED_PCRS": "8=" + "00" * 32}, r"'8=0+' is not INDEX=HEX"),
        ("tpm", {"TRUSTEE_SIMULATED_PCRS": "11=abcd"}, r"'11=abcd' is not INDEX=HEX"),
        ("tpm", {"TRUSTEE_SIMULATED_PCRS": "x"}, r"'x' is not INDEX=HEX"),
        ("tpm", {"TRUSTEE_SIMULATED_MEASUREMENT": "00" * 48}, r"a tpm guest has no launch"),
        ("az-snp-vtpm", {"TRUSTEE_SIMULATED_MEASUREMENT": "00"}, r"must be 96 hex digits"),
    ],
)
def test_bad_vtpm_environment_is_one_clear_line(
    tee: str, extra: dict[str, str], message: str, made: dict[str, tuple[Path, str]]
) -> None:
    pattern = r"^simulated attester: TRUSTEE_SIMULATED_\w+.*" + message
    with pytest.raises(KbsClientError, match=pattern) as info:
        detect_attesters(env_for(tee, made[tee][0], **extra))
    assert "\n" not in str(info.value)


def test_pcrs_for_a_guest_without_a_tpm_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KbsClientError, match="TRUSTEE_SIMULATED_PCRS: a tdx guest has no TPM"):
        detect_attesters(env_for("tdx", tmp_path, TRUSTEE_SIMULATED_PCRS=f"11={PCR11}"))


def test_azure_measurement_reaches_the_hardware_report(
    made: dict[str, tuple[Path, str]],
) -> None:
    directory, _ = made["az-snp-vtpm"]
    env = env_for("az-snp-vtpm", directory, TRUSTEE_SIMULATED_MEASUREMENT="ab" * 48)
    evidence = detect_attesters(env).primary.evidence(b"\x02" * 48, None)
    hcl_report = base64.urlsafe_b64decode(evidence["hcl_report"])
    # MEASUREMENT sits at 0x90 of the SNP report, which starts at 0x20 of the HCL report.
    assert hcl_report[0x20 + 0x90 : 0x20 + 0xC0] == b"\xab" * 48


@pytest.mark.parametrize(
    ("protocol", "snp", "tdx"),
    [
        ("0.1.1", "azsnpvtpm", "aztdxvtpm"),
        ("0.2.0", "azsnpvtpm", "aztdxvtpm"),
        ("0.4.0", "az-snp-vtpm", "az-tdx-vtpm"),
    ],
)
def test_each_generation_spells_the_azure_tees_as_its_client_did(
    protocol: str, snp: str, tdx: str
) -> None:
    generation = GENERATIONS[protocol]
    assert generation.auth_request("az-snp-vtpm")["tee"] == snp
    assert generation.auth_request("az-tdx-vtpm")["tee"] == tdx
    assert generation.auth_request("tpm")["tee"] == "tpm"
