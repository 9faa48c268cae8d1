"""The Azure vTPM verifiers through the Rust core, on upstream's real evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.shared import vectors_dir
from trustee import _core

AZ_SNP = "trustee/deps/verifier/test_data/az-snp-vtpm/evidence-v1.json"
AZ_TDX = "trustee/deps/verifier/test_data/az-tdx-vtpm/evidence-v1.json"
# Inside the vector VCEK's validity (2025-01-28 .. 2032-01-28).
NOW = 1_750_000_000
CHALLENGE = b"challenge"


def _read(rel: str) -> bytes:
    path: Path = vectors_dir() / rel
    return path.read_bytes()


def test_az_snp_vtpm_vector_verifies_with_upstream_claims() -> None:
    # AMD's ASK/ARK are built in: nothing beside the evidence is needed.
    evidence = _read(AZ_SNP)
    [entry] = _core.Verifiers().verify("az-snp-vtpm", evidence, CHALLENGE, None, NOW)
    claims = json.loads(entry.json)
    assert entry.tee_class == "cpu"
    assert claims["report_data"] == CHALLENGE.hex()
    assert claims["tpm"]["pcr00"] == (
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    )
    assert claims["init_data"] == "00" * 32
    assert claims["reported_tcb_microcode"] == "219"


@pytest.mark.parametrize(
    "report_data, fragment",
    [(b"challengf", "TPM quote nonce mismatch"), (None, "expected report data")],
)
def test_az_snp_vtpm_refuses_other_report_data(report_data: bytes | None, fragment: str) -> None:
    with pytest.raises(_core.VerifierError, match=fragment):
        _core.Verifiers().verify("az-snp-vtpm", _read(AZ_SNP), report_data, None, NOW)


def test_az_tdx_vtpm_needs_dcap_collateral_after_its_other_checks() -> None:
    evidence = _read(AZ_TDX)
    # The vTPM quote, the HCL binding to the TD quote: all pass; DCAP then wants collateral.
    with pytest.raises(
        _core.VerifierError, match="az-tdx-vtpm evidence cannot be verified without"
    ):
        _core.Verifiers().verify("az-tdx-vtpm", evidence, CHALLENGE, None, NOW)
    with pytest.raises(_core.VerifierError, match="TPM quote nonce mismatch"):
        _core.Verifiers().verify("az-tdx-vtpm", evidence, b"other", None, NOW)
    fmspc, ca, _pce, kind = _core.tdx_collateral_key(evidence)
    assert len(fmspc) == 12 and ca in ("processor", "platform") and kind == "tdx"


async def test_hardware_inputs_for_the_azure_variants() -> None:
    from trustee.attestation.hardware import HardwareInputError, HardwareVerifier

    hardware = HardwareVerifier()
    evidence = _read(AZ_SNP)
    # The VCEK is the evidence's and AMD's ASK/ARK are built in: nothing is fetched.
    inputs = await hardware.inputs("az-snp-vtpm", evidence)
    assert inputs.tdx_collateral is None and inputs.snp_certs == []
    [entry] = hardware.verify("az-snp-vtpm", evidence, CHALLENGE, None, inputs)
    assert json.loads(entry.json)["report_data"] == CHALLENGE.hex()
    # az-tdx-vtpm asks the TDX collateral source for the TD quote's platform.
    with pytest.raises(HardwareInputError, match="no TDX collateral source is configured"):
        await hardware.inputs("az-tdx-vtpm", _read(AZ_TDX))
