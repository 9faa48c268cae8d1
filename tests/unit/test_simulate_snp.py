"""Simulated SNP reports: chain and report signatures as a verifier checks them, and the report
layout against real AMD reports and the attester's evidence JSON."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.support.shared import vectors_dir
from trustee.simulate import SimulatedSnpAttester, SnpTestPki, der, snp_evidence, snp_evidence_json
from trustee.simulate.snp import AMD_OID
from trustee.simulate.snp_layout import (
    REPORT_FIELDS,
    REPORT_SIZE,
    ReportFormatError,
    report_from_json,
    report_to_json,
)

# Real VCEKs carry serial number 0, which `cryptography` accepts with a deprecation warning.
real_vcek = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

MIT_KEYS = {"launch_mit_vector", "current_mit_vector"}


@pytest.fixture(scope="module")
def genoa() -> SnpTestPki:
    return SnpTestPki.shared("Genoa")


def vector(*parts: str) -> Path:
    return vectors_dir().joinpath("trustee", *parts)


def verify_report(report: bytes, vek: x509.Certificate) -> None:
    """ECDSA P-384/SHA-384 over bytes 0..0x2A0, r and s little-endian at 0x2A0 / 0x2E8."""
    assert len(report) == REPORT_SIZE
    r = int.from_bytes(report[0x2A0:0x2E8], "little")
    s = int.from_bytes(report[0x2E8:0x330], "little")
    key = vek.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))


def amd_extensions(cert: x509.Certificate) -> list[tuple[str, bytes]]:
    out = []
    for ext in cert.extensions:
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        out.append((ext.oid.dotted_string.removeprefix(AMD_OID + "."), ext.value.value))
    return out


def pss_sha384_algorithm(*, explicit_trailer: bool = False) -> bytes:
    """RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48.

    AMD writes the default trailerField (1) explicitly; `cryptography` omits it as DER says.
    Both encode the same parameters.
    """
    sha384 = der.sequence(der.oid("2.16.840.1.101.3.4.2.2"), b"\x05\x00")
    params = [
        der.tlv(0xA0, sha384),
        der.tlv(0xA1, der.sequence(der.oid("1.2.840.113549.1.1.8"), sha384)),
        der.tlv(0xA2, der.integer(48)),
    ]
    if explicit_trailer:
        params.append(der.tlv(0xA3, der.integer(1)))
    return der.sequence(der.oid("1.2.840.113549.1.1.10"), der.sequence(*params))


# -- chain ---------------------------------------------------------------------------------


def test_chain_signatures(genoa: SnpTestPki) -> None:
    genoa.ark_cert.verify_directly_issued_by(genoa.ark_cert)
    genoa.ask_cert.verify_directly_issued_by(genoa.ark_cert)
    genoa.vcek_cert.verify_directly_issued_by(genoa.ask_cert)
    for cert in (genoa.ark_cert, genoa.ask_cert, genoa.vcek_cert):
        assert cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"
        assert pss_sha384_algorithm() in cert.tbs_certificate_bytes
    ark_key = genoa.ark_cert.public_key()
    assert getattr(ark_key, "key_size", 0) == 4096
    names = [
        c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        for c in (genoa.ark_cert, genoa.ask_cert, genoa.vcek_cert)
    ]
    assert names == ["ARK-Genoa", "SEV-Genoa", "SEV-VCEK"]
    assert len(genoa.ark_sha256) == 64 and genoa.ark_sha256 != genoa.ask_sha256


def test_pss_parameters_are_amds() -> None:
    bundle = vector("deps/verifier/src/snp/genoa_ask_ark_asvk.pem").read_bytes()
    for cert in x509.load_pem_x509_certificates(bundle):
        assert pss_sha384_algorithm(explicit_trailer=True) in cert.tbs_certificate_bytes


def test_vcek_extensions(genoa: SnpTestPki) -> None:
    exts = dict(amd_extensions(genoa.vcek_cert))
    _, bootloader, tee, snp, microcode = genoa.tcb
    assert exts["1"] == der.integer(0)
    assert exts["2"] == der.ia5_string("Genoa")
    assert exts["3.1"] == der.integer(bootloader)
    assert exts["3.2"] == der.integer(tee)
    assert exts["3.3"] == der.integer(snp)
    assert exts["3.8"] == der.integer(microcode)
    assert exts["4"] == genoa.chip_id and len(genoa.chip_id) == 64
    assert "3.9" not in exts


@real_vcek
def test_vcek_extension_layout_matches_real_vcek(genoa: SnpTestPki) -> None:
    evidence = json.loads(vector("attestation-service/tests/e2e/evidence.json").read_text())
    real = x509.load_der_x509_certificate(bytes(evidence["cert_chain"][0]["data"]))
    real_exts = amd_extensions(real)
    ours = amd_extensions(genoa.vcek_cert)
    assert [k for k, _ in ours] == [k for k, _ in real_exts]
    assert [(v[0], len(v)) for k, v in ours if k != "4"] == [
        (v[0], len(v)) for k, v in real_exts if k != "4"
    ]
    assert ours[-1][0] == "4" and len(ours[-1][1]) == len(real_exts[-1][1]) == 64
    assert genoa.vcek_cert.subject.rfc4514_string().startswith("CN=SEV-VCEK,")


def test_turin_vcek_has_fmc_and_short_chip_id() -> None:
    turin = SnpTestPki.generate("Turin")
    exts = dict(amd_extensions(turin.vcek_cert))
    assert exts["3.9"] == der.integer(turin.tcb[0] or 0)
    assert turin.chip_id[8:] == bytes(56) and any(turin.chip_id[:8])
    report = turin.report(bytes(64))
    verify_report(report, turin.vcek_cert)
    obj = report_to_json(report)
    assert obj["reported_tcb"]["fmc"] == turin.tcb[0]
    assert (obj["cpuid_fam_id"], obj["cpuid_mod_id"]) == (0x1A, 0x02)
    assert report_from_json(obj) == report


def test_generate_rejects_unknown_product() -> None:
    with pytest.raises(ValueError, match="'Bergamo' is not one of"):
        SnpTestPki.generate("Bergamo")


# -- reports -------------------------------------------------------------------------------


def test_report_signature_and_fields(genoa: SnpTestPki) -> None:
    report = genoa.report(
        bytes(range(64)), host_data=b"\x11" * 32, measurement=b"\x22" * 48, policy=0x30000
    )
    verify_report(report, genoa.vcek_cert)
    assert report[0x50:0x90] == bytes(range(64))
    assert report[0xC0:0xE0] == b"\x11" * 32
    assert report[0x90:0xC0] == b"\x22" * 48
    assert int.from_bytes(report[0:4], "little") == 3
    assert int.from_bytes(report[8:16], "little") == 0x30000
    assert report[0x30:0x34] == bytes(4)
    assert report[0x1A0:0x1E0] == genoa.chip_id
    assert (report[0x188], report[0x189], report[0x18A]) == (0x19, 0x11, 0x01)
    _, bootloader, tee, snp, microcode = genoa.tcb
    assert report[0x180:0x188] == bytes((bootloader, tee, 0, 0, 0, 0, snp, microcode))
    assert report[0x2E8 + 72 :] == bytes(REPORT_SIZE - 0x2E8 - 72)
    tampered = bytearray(report)
    tampered[0x50] ^= 1
    with pytest.raises(InvalidSignature):
        verify_report(bytes(tampered), genoa.vcek_cert)


@pytest.mark.parametrize("version", [2, 3, 5])
def test_report_versions_round_trip(genoa: SnpTestPki, version: int) -> None:
    report = genoa.report(b"\x05" * 64, version=version, vmpl=1)
    verify_report(report, genoa.vcek_cert)
    obj = report_to_json(report)
    assert obj["version"] == version and obj["vmpl"] == 1
    assert (obj["cpuid_fam_id"] is None) == (version < 3)
    assert (obj["launch_mit_vector"] is None) == (version < 5)
    assert report_from_json(obj) == report


def test_report_rejects_bad_arguments(genoa: SnpTestPki) -> None:
    with pytest.raises(ValueError, match="report_data is 65 bytes"):
        genoa.report(bytes(65))
    with pytest.raises(ValueError, match="version must be 2, 3 or 5"):
        genoa.report(bytes(64), version=4)


def test_layout_decoder_rejects_malformed_input() -> None:
    with pytest.raises(ReportFormatError, match="1183 bytes"):
        report_to_json(bytes(1183))
    with pytest.raises(ReportFormatError, match="chip_id must be a list of 64"):
        report_from_json({"version": 3, "chip_id": [0] * 3})
    with pytest.raises(ReportFormatError, match="not Milan, Genoa or Turin"):
        report_from_json({"version": 3, "chip_id": [0] * 64, "cpuid_fam_id": 1, "cpuid_mod_id": 1})


# -- evidence JSON against the attester's --------------------------------------------------


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ("list", len(value), sorted({type(v).__name__ for v in value}))
    return type(value).__name__


def test_evidence_json_matches_the_attester_form(genoa: SnpTestPki) -> None:
    real = json.loads(vector("attestation-service/tests/e2e/evidence.json").read_text())
    ours = json.loads(snp_evidence_json(genoa.report(bytes(64)), genoa.cert_chain()))
    assert list(ours) == list(real)
    real_report = real["attestation_report"]
    our_report = ours["attestation_report"]
    # sev 7 always serialises the mitigation vectors (null before v5); older evidence omits them.
    assert [k for k in our_report if k not in MIT_KEYS] == list(real_report)
    assert our_report["launch_mit_vector"] is None and our_report["current_mit_vector"] is None
    for key, value in real_report.items():
        assert shape(our_report[key]) == shape(value), key
    real_entry, our_entry = real["cert_chain"][0], ours["cert_chain"][0]
    assert list(our_entry) == list(real_entry) and our_entry["cert_type"] == "VCEK"
    assert bytes(our_entry["data"]) == genoa.vcek_der


def test_evidence_without_cert_chain(genoa: SnpTestPki) -> None:
    evidence = snp_evidence(genoa.report(bytes(64)))
    assert evidence["cert_chain"] is None
    with_ca = snp_evidence(genoa.report(bytes(64)), genoa.cert_chain(include_ca=True))
    assert [e["cert_type"] for e in with_ca["cert_chain"]] == ["VCEK", "ASK", "ARK"]


def test_attester_binds_report_and_init_data(genoa: SnpTestPki) -> None:
    attester = SimulatedSnpAttester(genoa)
    evidence = attester.evidence(b"\x42" * 48, b"\x24" * 48)
    report = report_from_json(evidence["attestation_report"])
    verify_report(report, genoa.vcek_cert)
    assert report[0x50:0x90] == b"\x42" * 48 + bytes(16)
    assert report[0xC0:0xE0] == b"\x24" * 32
    assert attester.tee == "snp"


# -- the same layout code on real reports --------------------------------------------------


@real_vcek
def test_real_e2e_evidence_reencodes_and_verifies() -> None:
    real = json.loads(vector("attestation-service/tests/e2e/evidence.json").read_text())
    report = report_from_json(real["attestation_report"])
    vcek = x509.load_der_x509_certificate(bytes(real["cert_chain"][0]["data"]))
    verify_report(report, vcek)
    decoded = report_to_json(report)
    assert {k: v for k, v in decoded.items() if k not in MIT_KEYS} == real["attestation_report"]


@real_vcek
def test_real_v2_report_round_trips_and_verifies() -> None:
    report = vector("deps/verifier/test_data/snp/test-report.bin").read_bytes()
    vcek = x509.load_der_x509_certificate(
        vector("deps/verifier/test_data/snp/test-vcek.der").read_bytes()
    )
    verify_report(report, vcek)
    obj = report_to_json(report)
    assert obj["version"] == 2 and obj["cpuid_fam_id"] is None
    tcb = obj["reported_tcb"]
    assert (tcb["bootloader"], tcb["tee"], tcb["snp"], tcb["microcode"]) == (3, 0, 8, 115)
    assert report_from_json(obj) == report
    assert bytes(obj["chip_id"]) == dict(amd_extensions(vcek))["4"]


def test_field_table_covers_the_signed_area() -> None:
    spans = sorted((s.offset, s.offset + s.size) for s in REPORT_FIELDS.values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    assert spans[-1][1] <= 0x2A0
