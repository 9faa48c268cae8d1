"""Simulated vTPM guests (az-snp-vtpm, az-tdx-vtpm, tpm): our TPM quote and HCL report parsers
read real Azure evidence correctly, and our generators emit the same layout, with every binding
a verifier checks (AK signature, nonce, PCR digest, var-data hash in the hardware report,
user-data, PCR8 for init-data) holding."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.shared import vectors_dir
from tests.unit.test_simulate_store import check_snp_report, check_tdx_quote
from trustee.simulate import hcl, vtpm
from trustee.simulate.azure import (
    AzSnpVtpmPki,
    AzTdxVtpmPki,
    SimulatedAzSnpVtpmAttester,
    SimulatedAzTdxVtpmAttester,
    VtpmKeys,
)
from trustee.simulate.server_trust import write_server_trust
from trustee.simulate.snp import SnpTestPki
from trustee.simulate.snp_layout import report_to_json
from trustee.simulate.tdx import TdxTestPki
from trustee.simulate.tdx_layout import TD_REPORT, field, split_quote
from trustee.simulate.tpm import SimulatedTpmAttester, TpmTestPki

AZURE = ("az-snp-vtpm", "az-tdx-vtpm")
REPORT_DATA = hashlib.sha384(b"runtime data").digest()
INIT_DATA = hashlib.sha256(b"init-data toml").digest()
# Offsets of REPORT_DATA inside the hardware reports: SNP report, TDREPORT (REPORTMACSTRUCT).
SNP_REPORT_DATA = slice(0x50, 0x90)
TD_REPORT_DATA = slice(0x80, 0xC0)
TD_REPORT_MRTD = slice(512 + 16, 512 + 64)


def vector(tee: str, name: str) -> Path:
    return vectors_dir().joinpath("trustee", "deps/verifier/test_data", tee, name)


def jwk_public_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    def number(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    return rsa.RSAPublicNumbers(number(jwk["e"]), number(jwk["n"])).public_key()


def verify_rsassa(key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> None:
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def keys() -> VtpmKeys:
    return VtpmKeys.generate()


@pytest.fixture(scope="module")
def az_snp(keys: VtpmKeys) -> AzSnpVtpmPki:
    return AzSnpVtpmPki(SnpTestPki.shared(), keys)


@pytest.fixture(scope="module")
def az_tdx(keys: VtpmKeys) -> AzTdxVtpmPki:
    return AzTdxVtpmPki(TdxTestPki.shared(), keys)


# -- the real vectors ----------------------------------------------------------------------


@pytest.mark.parametrize("tee", AZURE)
def test_real_tpm_quote_parses_to_the_challenge_and_its_pcr_digest(tee: str) -> None:
    quote = json.loads(vector(tee, "tpm-quote-v1.json").read_text())
    attest = vtpm.parse_attest(bytes.fromhex(quote["message"]))
    assert attest.extra_data == b"challenge"
    assert (attest.magic, attest.type) == (vtpm.TPM_GENERATED_VALUE, vtpm.TPM_ST_ATTEST_QUOTE)
    assert attest.selections == (vtpm.PcrSelection(vtpm.TPM_ALG_SHA256, tuple(range(24))),)
    pcrs = [bytes.fromhex(p) for p in quote["pcrs"]]
    assert vtpm.pcr_digest(pcrs) == attest.pcr_digest
    pcrs[11] = b"\x01" * 32
    assert vtpm.pcr_digest(pcrs) != attest.pcr_digest


@pytest.mark.parametrize("tee", AZURE)
def test_real_hcl_report_binds_its_var_data_and_ak(tee: str) -> None:
    report = hcl.parse(vector(tee, "hcl-report.bin").read_bytes())
    assert report.report_type == (hcl.REPORT_TYPE_SNP if tee == "az-snp-vtpm" else 4)
    assert report.version == hcl.HEADER_VERSION[report.report_type]
    assert (report.request_type, report.hash_type) == (hcl.REQUEST_TYPE, hcl.HASH_TYPE_SHA256)
    assert report.report_size == hcl.VAR_DATA_OFFSET + len(report.var_data)
    where = SNP_REPORT_DATA if tee == "az-snp-vtpm" else TD_REPORT_DATA
    assert report.hw_report[where][:32] == report.var_data_sha256
    # The AK in the runtime claims is the key that signed the real quote.
    quote = json.loads(vector(tee, "tpm-quote-v1.json").read_text())
    verify_rsassa(
        jwk_public_key(report.ak_jwk()),
        bytes.fromhex(quote["signature"]),
        bytes.fromhex(quote["message"]),
    )


def test_real_td_quote_carries_the_hcl_var_data_hash() -> None:
    report = hcl.parse(vector("az-tdx-vtpm", "hcl-report.bin").read_bytes())
    parts = split_quote(vector("az-tdx-vtpm", "td-quote.bin").read_bytes())
    assert field(parts.body, TD_REPORT, "report_data")[:32] == report.var_data_sha256
    assert field(parts.body, TD_REPORT, "mr_td") == report.hw_report[TD_REPORT_MRTD]


@pytest.mark.parametrize("tee", AZURE)
def test_generated_hcl_report_has_the_real_layout(tee: str, keys: VtpmKeys) -> None:
    real = vector(tee, "hcl-report.bin").read_bytes()
    real_report = hcl.parse(real)
    var_data = keys.var_data(REPORT_DATA)
    ours = hcl.build(real_report.hw_report, real_report.report_type, var_data)
    assert len(ours) == len(real) == hcl.NV_SIZE
    # Same header, hardware area and IGVM words wherever the content does not differ.
    assert ours[:8] == real[:8]
    assert ours[12 : hcl.IGVM_OFFSET] == real[12 : hcl.IGVM_OFFSET]
    assert (
        ours[hcl.IGVM_OFFSET + 4 : hcl.IGVM_OFFSET + 16]
        == real[hcl.IGVM_OFFSET + 4 : hcl.IGVM_OFFSET + 16]
    )
    parsed = hcl.parse(ours)
    assert parsed.hw_report == real_report.hw_report and parsed.var_data == var_data
    assert set(parsed.claims()) == set(real_report.claims())
    assert [k["kid"] for k in parsed.claims()["keys"]] == ["HCLAkPub", "HCLEkPub"]
    assert parsed.user_data() == REPORT_DATA.ljust(64, b"\0")


@pytest.mark.parametrize("tee", AZURE)
def test_generated_quote_has_the_real_layout(tee: str, keys: VtpmKeys) -> None:
    real = bytes.fromhex(json.loads(vector(tee, "tpm-quote-v1.json").read_text())["message"])
    message, _ = keys.ak.quote(b"challenge", vtpm.default_pcrs())
    assert len(message) == len(real)
    ours, theirs = vtpm.parse_attest(message), vtpm.parse_attest(real)
    assert ours.selections == theirs.selections
    assert len(ours.qualified_signer) == len(theirs.qualified_signer)
    assert ours.qualified_signer[:2] == theirs.qualified_signer[:2] == b"\x00\x0b"
    assert ours.firmware_version == theirs.firmware_version


def test_init_data_pcr_is_one_extend_from_zero() -> None:
    digest = bytes.fromhex("8505e4e25e50a27c5dc8147af88efbece627fbea55291911eff832d9ee127781")
    assert vtpm.init_data_pcr(digest).hex() == (
        "bddaccb9c52249e97a31baea61b7d91be8221a16e703d92148d04fb8e9c1dfdd"
    )
    with pytest.raises(ValueError, match="init-data digest is 48 bytes"):
        vtpm.init_data_pcr(bytes(48))


# -- parsers refuse what is not a quote ----------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: b"\0" + m[1:], "magic"),
        (lambda m: m[:4] + b"\x80\x17" + m[6:], "type"),
        (lambda m: m[:-1], "pcrDigest"),
        (lambda m: m + b"\0", "after pcrDigest"),
        (lambda m: m[:40], "qualifiedSigner"),
    ],
)
def test_parse_attest_names_the_bad_field(mutate: Any, message: str, keys: VtpmKeys) -> None:
    good, _ = keys.ak.quote(REPORT_DATA, vtpm.default_pcrs())
    with pytest.raises(vtpm.TpmFormatError, match=message):
        vtpm.parse_attest(mutate(good))


def test_hcl_parse_names_the_bad_field(keys: VtpmKeys) -> None:
    good = hcl.build(bytes(1184), hcl.REPORT_TYPE_SNP, keys.var_data(b""))
    with pytest.raises(hcl.HclFormatError, match="signature"):
        hcl.parse(b"XXXX" + good[4:])
    with pytest.raises(hcl.HclFormatError, match="report type 3"):
        hcl.parse(good[: hcl.IGVM_OFFSET + 8] + b"\3\0\0\0" + good[hcl.IGVM_OFFSET + 12 :])
    with pytest.raises(hcl.HclFormatError, match="runs past"):
        hcl.parse(good[: hcl.VAR_DATA_OFFSET + 10])


# -- generated evidence --------------------------------------------------------------------


def check_tpm_quote(
    quote: dict[str, Any], ak: rsa.RSAPublicKey, signature: bytes, nonce: bytes
) -> list[bytes]:
    message = bytes.fromhex(quote["message"])
    verify_rsassa(ak, signature, message)
    attest = vtpm.parse_attest(message)
    assert attest.extra_data == nonce
    pcrs = [bytes.fromhex(p) for p in quote["pcrs"]]
    assert len(pcrs) == 24 and vtpm.pcr_digest(pcrs) == attest.pcr_digest
    return pcrs


def test_az_snp_vtpm_evidence_binds_everything(az_snp: AzSnpVtpmPki, tmp_path: Path) -> None:
    pcr11 = hashlib.sha256(b"workload").digest()
    attester = SimulatedAzSnpVtpmAttester(az_snp, measurement=b"\x42" * 48, pcrs={11: pcr11})
    evidence = attester.evidence(REPORT_DATA, INIT_DATA)
    assert list(evidence) == ["version", "tpm_quote", "hcl_report", "vcek"]
    assert evidence["version"] == 2
    report = hcl.parse(b64url_decode(evidence["hcl_report"]))
    assert report.report_type == hcl.REPORT_TYPE_SNP
    snp = report.hw_report
    assert snp[SNP_REPORT_DATA] == report.var_data_sha256.ljust(64, b"\0")
    fields = report_to_json(snp)
    assert (fields["vmpl"], bytes(fields["measurement"])) == (0, b"\x42" * 48)
    vcek = x509.load_der_x509_certificate(b64url_decode(evidence["vcek"]))
    files = write_server_trust(az_snp, tmp_path)
    check_snp_report(snp, vcek, files["test_roots"])
    assert report.user_data()[: len(REPORT_DATA)] == REPORT_DATA
    quote = evidence["tpm_quote"]
    pcrs = check_tpm_quote(
        quote, jwk_public_key(report.ak_jwk()), bytes.fromhex(quote["signature"]), REPORT_DATA
    )
    assert pcrs[8] == hashlib.sha256(bytes(32) + INIT_DATA).digest()
    assert pcrs[11] == pcr11 and pcrs[0] == vtpm.default_pcrs()[0]


def test_az_tdx_vtpm_evidence_binds_everything(az_tdx: AzTdxVtpmPki, tmp_path: Path) -> None:
    attester = SimulatedAzTdxVtpmAttester(az_tdx, measurement=b"\x17" * 48)
    evidence = attester.evidence(REPORT_DATA, None)
    assert list(evidence) == ["version", "tpm_quote", "hcl_report", "td_quote"]
    report = hcl.parse(b64url_decode(evidence["hcl_report"]))
    assert report.report_type == hcl.REPORT_TYPE_TDX and len(report.hw_report) == 1024
    bound = report.var_data_sha256.ljust(64, b"\0")
    assert report.hw_report[TD_REPORT_DATA] == bound
    assert report.hw_report[:4] == bytes((0x81, 0, 0, 0))
    quote = b64url_decode(evidence["td_quote"])
    body = split_quote(quote).body
    assert field(body, TD_REPORT, "report_data") == bound
    assert field(body, TD_REPORT, "mr_td") == report.hw_report[TD_REPORT_MRTD] == b"\x17" * 48
    files = write_server_trust(az_tdx, tmp_path)
    check_tdx_quote(quote, files["test_roots"], files["collateral"])
    tpm_quote = evidence["tpm_quote"]
    pcrs = check_tpm_quote(
        tpm_quote,
        jwk_public_key(report.ak_jwk()),
        bytes.fromhex(tpm_quote["signature"]),
        REPORT_DATA,
    )
    assert pcrs[8] == bytes(32)


def test_tpm_evidence_pads_the_nonce_and_carries_the_ak(tmp_path: Path) -> None:
    pki = TpmTestPki.generate()
    saved = TpmTestPki.load(pki.save(tmp_path / "pki"))
    evidence = SimulatedTpmAttester(saved).evidence(b"short", INIT_DATA)
    assert list(evidence) == ["tpm_quote", "ak_public", "ak_cert"]
    # The AK certificate certifies exactly `ak_public` and is issued by the saved test AK CA.
    ak_cert = x509.load_der_x509_certificate(base64.b64decode(evidence["ak_cert"]))
    assert ak_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == base64.b64decode(evidence["ak_public"])
    ak_cert.verify_directly_issued_by(saved.ca)
    ak = serialization.load_der_public_key(base64.b64decode(evidence["ak_public"]))
    assert isinstance(ak, rsa.RSAPublicKey) and ak.key_size == 2048
    quote = evidence["tpm_quote"]
    alg, hash_alg, signature = vtpm.parse_tpmt_signature(base64.b64decode(quote["signature"]))
    assert (alg, hash_alg) == (vtpm.TPM_ALG_RSASSA, vtpm.TPM_ALG_SHA256)
    as_hex = {**quote, "message": base64.b64decode(quote["message"]).hex()}
    pcrs = check_tpm_quote(as_hex, ak, signature, b"short".ljust(32, b"\0"))
    assert pcrs[8] == vtpm.init_data_pcr(INIT_DATA)
    # A 48-byte report data is cut to the 32 bytes the verifier compares.
    long = SimulatedTpmAttester(saved).evidence(REPORT_DATA, None)["tpm_quote"]
    message = base64.b64decode(long["message"])
    assert vtpm.parse_attest(message).extra_data == REPORT_DATA[:32]
    files = write_server_trust(saved, tmp_path)
    assert files["trusted_ak"].read_text() == evidence["ak_public"] + "\n"
    assert x509.load_pem_x509_certificate(files["ak_root"].read_bytes()) == pki.ca


def test_a_quote_from_another_ak_does_not_verify(keys: VtpmKeys) -> None:
    other = vtpm.AttestationKey.generate()
    message, signature = other.quote(REPORT_DATA, vtpm.default_pcrs())
    with pytest.raises(InvalidSignature):
        verify_rsassa(keys.ak.key.public_key(), signature, message)


def test_pcr_bank_refuses_the_init_data_pcr_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="PCR8 cannot be set"):
        vtpm.pcr_bank({8: bytes(32)}, None)
    with pytest.raises(ValueError, match="PCR11 must be 32 bytes"):
        vtpm.pcr_bank({11: bytes(48)}, None)


@pytest.mark.parametrize("tee", AZURE)
def test_saved_azure_pki_loads_the_same_keys(
    tee: str, az_snp: AzSnpVtpmPki, az_tdx: AzTdxVtpmPki, tmp_path: Path
) -> None:
    pki = az_snp if tee == "az-snp-vtpm" else az_tdx
    directory = pki.save(tmp_path / "pki")
    loaded = type(pki).load(directory)
    assert loaded.keys.ak.spki_der == pki.keys.ak.spki_der
    assert loaded.keys.ek.spki_der == pki.keys.ek.spki_der
    assert (directory / "ak.key").stat().st_mode & 0o077 == 0
