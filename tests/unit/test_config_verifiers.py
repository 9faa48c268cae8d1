"""`[attestation_service.verifier_config]`: sources for TDX/SNP, test roots, bad keys named."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from trustee import _core
from trustee.as_assemble import build_hardware_verifier
from trustee.attestation.hardware import HardwareVerifier, Inputs
from trustee.config.errors import ConfigError
from trustee.config.loader import parse
from trustee.config.reader import Table
from trustee.config.verifier import VerifierSettings, verifier_settings
from trustee.simulate import SnpTestPki, TdxTestPki, write_server_trust
from trustee.simulate.tpm import SimulatedTpmAttester, TpmTestPki

HTTP = '[http_server]\ninsecure_http = true\n[admin]\nauthorization_mode = "DenyAll"\n'
BASE = (
    HTTP
    + '[attestation_service]\ntype = "coco_as_builtin"\n[attestation_service.verifier_config]\n'
)


def test_no_verifier_config_means_upstream_defaults() -> None:
    cfg = parse(HTTP + '[attestation_service]\ntype = "coco_as_builtin"\n')
    assert cfg.attestation_service is not None
    assert cfg.attestation_service.verifier_config == VerifierSettings()
    hw = build_hardware_verifier(cfg.attestation_service.verifier_config)
    assert hw.tdx_source is not None and hw.vek_source is not None  # Intel PCS, AMD KDS


def test_upstream_tables_are_accepted() -> None:
    cfg = parse(
        BASE + "[attestation_service.verifier_config.dcap_verifier]\n"
        'collateral_service = "https://pccs.example/sgx/certification/v4/"\n'
        'tcb_update_type = "standard"\n'
        "[attestation_service.verifier_config.snp_verifier]\n"
        'vcek_sources = [{type = "OfflineStore", path = "/tmp"}, {type = "KDS"}]\n'
        "allow_nonzero_vmpl = true\n"
    )
    assert cfg.attestation_service is not None
    settings = cfg.attestation_service.verifier_config
    hw = build_hardware_verifier(settings)
    assert hw.tdx_source is not None and hw.vek_source is not None


@pytest.mark.parametrize(
    "body, key",
    [
        (
            '[attestation_service.verifier_config.dcap_verifier]\ntcb_update_type = "late"\n',
            "attestation_service.verifier_config.dcap_verifier.tcb_update_type",
        ),
        (
            'collateral = "/nonexistent/collateral.json"\n',
            "attestation_service.verifier_config.collateral",
        ),
        (
            'insecure_test_roots = ["/nonexistent/root.pem"]\n',
            "attestation_service.verifier_config.insecure_test_roots",
        ),
        (
            "insecure_test_roots = [3]\n",
            "attestation_service.verifier_config.insecure_test_roots[0]",
        ),
        (
            "[attestation_service.verifier_config.snp_verifier]\n"
            'vcek_sources = [{type = "Nope"}]\n',
            "attestation_service.verifier_config.snp_verifier.vcek_sources[0].type",
        ),
        (
            'tpm_ak_roots = ["/nonexistent/ak-root.pem"]\n',
            "attestation_service.verifier_config.tpm_ak_roots",
        ),
        (
            "[attestation_service.verifier_config.snp_verifier]\nallow_nonzero_vmpl = 1\n",
            "attestation_service.verifier_config.snp_verifier.allow_nonzero_vmpl",
        ),
    ],
)
def test_bad_keys_are_named(body: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + body, "kbs-config.toml")
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith("kbs-config.toml: ")
    assert "\n" not in str(info.value)


def test_test_roots_are_trusted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tdx = write_server_trust(TdxTestPki.shared(), tmp_path / "tdx")
    snp = write_server_trust(SnpTestPki.shared(), tmp_path / "snp")
    roots = [str(tdx["test_roots"]), str(snp["test_roots"])]
    table = {"insecure_test_roots": roots, "collateral": str(tdx["collateral"])}
    settings = verifier_settings(Table(table, "attestation_service.verifier_config"))
    with caplog.at_level("WARNING"):
        hw = build_hardware_verifier(settings)
    assert sum("INSECURE" in r.getMessage() for r in caplog.records) == 2
    assert hw.tdx_source is not None


def _verify_tpm(hw: HardwareVerifier, evidence: dict[str, object]) -> dict[str, object]:
    inputs = Inputs(now=int(time.time()))
    [entry] = hw.verify("tpm", json.dumps(evidence).encode(), None, None, inputs)
    claims: dict[str, object] = json.loads(entry.json)
    return claims


def test_tpm_ak_roots_certify_the_simulated_guest_and_refuse_others(tmp_path: Path) -> None:
    pki = TpmTestPki.generate()
    files = write_server_trust(pki, tmp_path)
    table = {"tpm_ak_roots": [str(files["ak_root"])]}
    settings = verifier_settings(Table(table, "attestation_service.verifier_config"))
    assert settings.tpm_ak_anchors == (pki.ca.public_bytes(Encoding.DER),)
    hw = build_hardware_verifier(settings)
    evidence = SimulatedTpmAttester(pki).evidence(b"nonce", None)
    claims = _verify_tpm(hw, evidence)
    assert claims["ak_certified"] is True
    assert claims["ak_cert_subject"] == pki.ak_cert.subject.rfc4514_string()
    # Without roots the same certificate is checked but certifies nothing.
    assert _verify_tpm(HardwareVerifier(), evidence)["ak_certified"] is False
    # Upstream-shaped evidence (no certificate) is refused once roots are configured.
    del evidence["ak_cert"]
    with pytest.raises(_core.VerifierError, match=r"not certified by a configured root: .* no `ak"):
        _verify_tpm(hw, evidence)


def test_a_tpm_ak_root_that_is_not_a_ca_is_a_configuration_error(tmp_path: Path) -> None:
    leaf = tmp_path / "ak.pem"
    leaf.write_bytes(TpmTestPki.generate().ak_cert.public_bytes(Encoding.PEM))
    with pytest.raises(ConfigError) as info:
        parse(BASE + f'tpm_ak_roots = ["{leaf}"]\n', "kbs-config.toml")
    assert info.value.key == "attestation_service.verifier_config.tpm_ak_roots"
    assert "root 0 issues a certificate but is not a CA" in str(info.value)
