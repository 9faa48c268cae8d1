"""Simulated TDX quotes and collateral: every signature a DCAP verifier checks, and the layout
against real Intel quotes read with the same offset tables the builder writes with."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.shared import vectors_dir
from trustee.simulate import SimulatedTdxAttester, TdxTestPki, tdx_evidence_json
from trustee.simulate.certs import p256_verify_raw
from trustee.simulate.tdx_layout import (
    HEADER,
    QE_REPORT,
    SIGNATURE_DATA,
    TD_REPORT,
    QuoteFormatError,
    field,
    split_quote,
)
from trustee.simulate.tdx_platform import SGX_EXTENSION_OID

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def pki() -> TdxTestPki:
    return TdxTestPki.generate(now=NOW - datetime.timedelta(days=2))


def vector(*parts: str) -> Path:
    return vectors_dir().joinpath("trustee/deps/verifier/test_data", *parts)


def attestation_key(sig_data: bytes) -> ec.EllipticCurvePublicKey:
    raw = field(sig_data, SIGNATURE_DATA, "attestation_key")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def check_quote_crypto(quote: bytes) -> list[x509.Certificate]:
    """What a DCAP verifier checks inside the quote; returns the embedded PCK chain."""
    parts = split_quote(quote)
    sig = parts.signature_data
    p256_verify_raw(
        attestation_key(sig), field(sig, SIGNATURE_DATA, "quote_signature"), parts.signed
    )
    assert parts.pck_chain_pem.endswith(b"\0")
    chain = x509.load_pem_x509_certificates(parts.pck_chain_pem.rstrip(b"\0"))
    assert len(chain) == 3
    leaf, ca, root = chain
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    p256_verify_raw(leaf_key, field(sig, SIGNATURE_DATA, "qe_report_signature"), parts.qe_report)
    binding = field(parts.qe_report, QE_REPORT, "report_data")
    raw_key = field(sig, SIGNATURE_DATA, "attestation_key")
    assert binding[:32] == hashlib.sha256(raw_key + parts.qe_auth_data).digest()
    assert binding[32:] == bytes(32)
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    return chain


# -- simulated quotes ----------------------------------------------------------------------


def test_quote_v4_signatures_and_fields(pki: TdxTestPki) -> None:
    report_data = bytes(range(64))
    rtmrs = [bytes([i]) * 48 for i in range(4)]
    quote = pki.quote(report_data, mr_config_id=b"\x11" * 48, rtmrs=rtmrs, td_attributes=1)
    chain = check_quote_crypto(quote)
    assert chain[2].public_bytes(encoding=_der()) == pki.root_der
    (ca_name,) = chain[1].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert ca_name.value == "Intel SGX PCK Platform CA"
    parts = split_quote(quote)
    assert (parts.version, parts.body_type, len(parts.body)) == (4, 2, 584)
    assert len(parts.signed) == 632
    assert field(parts.header, HEADER, "qe_vendor_id").hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert field(parts.body, TD_REPORT, "report_data") == report_data
    assert field(parts.body, TD_REPORT, "mr_config_id") == b"\x11" * 48
    assert field(parts.body, TD_REPORT, "td_attributes") == (1).to_bytes(8, "little")
    for i in range(4):
        assert field(parts.body, TD_REPORT, f"rtmr_{i}") == rtmrs[i]
    assert field(parts.body, TD_REPORT, "tee_tcb_svn") == pki.platform.tee_tcb_svn


@pytest.mark.parametrize(("body_type", "body_size"), [(2, 584), (3, 648)])
def test_quote_v5(pki: TdxTestPki, body_type: int, body_size: int) -> None:
    quote = pki.quote(b"\x07" * 64, version=5, body_type=body_type)
    check_quote_crypto(quote)
    parts = split_quote(quote)
    assert (parts.version, parts.body_type, len(parts.body)) == (5, body_type, body_size)
    assert len(parts.signed) == 54 + body_size
    if body_type == 3:
        assert field(parts.body, TD_REPORT, "tee_tcb_svn2") == pki.platform.tee_tcb_svn


def test_quote_rejects_bad_arguments(pki: TdxTestPki) -> None:
    with pytest.raises(ValueError, match="report_data is 65 bytes"):
        pki.quote(bytes(65))
    with pytest.raises(ValueError, match="rtmrs must hold 4"):
        pki.quote(bytes(64), rtmrs=[bytes(48)])
    with pytest.raises(ValueError, match="body type 2 only"):
        pki.quote(bytes(64), body_type=3)
    with pytest.raises(QuoteFormatError, match="version 6"):
        pki.quote(bytes(64), version=6)


def test_short_report_data_is_zero_padded(pki: TdxTestPki) -> None:
    parts = split_quote(pki.quote(b"\xaa" * 48))
    assert field(parts.body, TD_REPORT, "report_data") == b"\xaa" * 48 + bytes(16)


def test_truncated_quotes_fail_with_a_reason(pki: TdxTestPki) -> None:
    quote = pki.quote(bytes(64))
    for size in (0, 10, 47, 48, 600, 632, 635, 700, 1200, len(quote) - 1):
        with pytest.raises(QuoteFormatError):
            split_quote(quote[:size])


def test_pck_leaf_sgx_extension(pki: TdxTestPki) -> None:
    ext = pki.pck_cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    assert not ext.critical
    value = ext.value
    assert isinstance(value, x509.UnrecognizedExtension)
    items = dict(_sgx_items(value.value))
    p = pki.platform
    assert items["1"] == (0x04, p.ppid)
    assert items["3"] == (0x04, p.pce_id)
    assert items["4"] == (0x04, p.fmspc)
    assert items["5"] == (0x0A, bytes([p.sgx_type]))
    assert items["6"] == (0x04, p.platform_instance_id)
    assert items["2.17"] == (0x02, _int_bytes(p.pce_svn))
    assert items["2.18"] == (0x04, bytes(p.sgx_tcb_components))
    for i, svn in enumerate(p.sgx_tcb_components):
        assert items[f"2.{i + 1}"] == (0x02, _int_bytes(svn))
    assert items["7.2"] == (0x01, b"\x00")


def test_pck_leaf_extension_structure_matches_real_pck() -> None:
    quote = vector("tdx_quote_4.dat").read_bytes()
    real_leaf = check_quote_crypto(quote)[0]
    ours = TdxTestPki.shared().pck_cert

    def shape(cert: x509.Certificate) -> list[tuple[str, int, int]]:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        fixed_size = {"1", "3", "4", "6", "2.18"}
        return [
            (sub, tag, len(v) if sub in fixed_size else -1)
            for sub, (tag, v) in _sgx_items(ext.value.value)
        ]

    assert shape(ours) == shape(real_leaf)
    real_ext = [(e.oid.dotted_string, e.critical) for e in real_leaf.extensions]
    assert [(e.oid.dotted_string, e.critical) for e in ours.extensions] == real_ext


# -- collateral ----------------------------------------------------------------------------


def test_collateral_signatures_and_windows(pki: TdxTestPki) -> None:
    coll = pki.collateral(NOW)
    tcb_chain = x509.load_pem_x509_certificates(coll["tcb_info_issuer_chain"].encode())
    assert coll["qe_identity_issuer_chain"] == coll["tcb_info_issuer_chain"]
    assert len(tcb_chain) == 2
    signing, root = tcb_chain
    assert root.public_bytes(_der()) == pki.root_der
    signing.verify_directly_issued_by(root)
    signing_key = signing.public_key()
    assert isinstance(signing_key, ec.EllipticCurvePublicKey)
    for name in ("tcb_info", "qe_identity"):
        text = coll[name]
        assert isinstance(text, str)
        assert text == json.dumps(json.loads(text), separators=(",", ":"))
        p256_verify_raw(signing_key, bytes.fromhex(coll[f"{name}_signature"]), text.encode())

    pck_chain = x509.load_pem_x509_certificates(coll["pck_crl_issuer_chain"].encode())
    assert [c.public_bytes(_der()) for c in pck_chain] == [
        pki.pck_ca_cert.public_bytes(_der()),
        pki.root_der,
    ]
    pck_crl = x509.load_der_x509_crl(bytes.fromhex(coll["pck_crl"]))
    root_crl = x509.load_der_x509_crl(bytes.fromhex(coll["root_ca_crl"]))
    assert pck_crl.is_signature_valid(pki.pck_ca_cert.public_key())  # type: ignore[arg-type]
    assert root_crl.is_signature_valid(pki.root_cert.public_key())  # type: ignore[arg-type]
    assert len(root_crl) == 0
    assert pck_crl.get_revoked_certificate_by_serial_number(pki.pck_cert.serial_number) is None
    for crl in (pck_crl, root_crl):
        assert crl.next_update_utc is not None
        assert crl.last_update_utc <= NOW < crl.next_update_utc
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1

    tcb_info = json.loads(coll["tcb_info"])
    qe_identity = json.loads(coll["qe_identity"])
    for doc in (tcb_info, qe_identity):
        assert _parse_time(doc["issueDate"]) <= NOW < _parse_time(doc["nextUpdate"])
    for cert in (*tcb_chain, *pck_chain, pki.pck_cert):
        assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_collateral_matches_the_quote(pki: TdxTestPki) -> None:
    parts = split_quote(pki.quote(bytes(64)))
    coll = pki.collateral(NOW)
    tcb_info = json.loads(coll["tcb_info"])
    p = pki.platform
    assert (tcb_info["id"], tcb_info["version"]) == ("TDX", 3)
    assert tcb_info["fmspc"] == p.fmspc.hex().upper()
    assert tcb_info["pceId"] == p.pce_id.hex().upper()
    top = tcb_info["tcbLevels"][0]
    assert top["tcbStatus"] == "UpToDate"
    sgx = [c["svn"] for c in top["tcb"]["sgxtcbcomponents"]]
    assert all(ours >= level for ours, level in zip(p.sgx_tcb_components, sgx, strict=True))
    assert p.pce_svn >= top["tcb"]["pcesvn"]
    tee = field(parts.body, TD_REPORT, "tee_tcb_svn")
    tdx = [c["svn"] for c in top["tcb"]["tdxtcbcomponents"]]
    assert all(ours >= level for ours, level in zip(tee, tdx, strict=True))
    (module,) = tcb_info["tdxModuleIdentities"]
    assert module["id"] == f"TDX_{tee[1]:02X}"
    assert module["tcbLevels"][0]["tcb"]["isvsvn"] <= tee[0]
    assert bytes.fromhex(module["mrsigner"]) == field(parts.body, TD_REPORT, "mrsigner_seam")

    qe = json.loads(coll["qe_identity"])
    report = parts.qe_report
    assert (qe["id"], qe["version"]) == ("TD_QE", 2)
    assert bytes.fromhex(qe["mrsigner"]) == field(report, QE_REPORT, "mr_signer")
    assert qe["isvprodid"] == int.from_bytes(field(report, QE_REPORT, "isv_prod_id"), "little")
    isv_svn = int.from_bytes(field(report, QE_REPORT, "isv_svn"), "little")
    assert qe["tcbLevels"][0]["tcb"]["isvsvn"] <= isv_svn
    assert qe["tcbLevels"][0]["tcbStatus"] == "UpToDate"
    mask = bytes.fromhex(qe["attributesMask"])
    masked = bytes(a & m for a, m in zip(field(report, QE_REPORT, "attributes"), mask, strict=True))
    assert masked == bytes.fromhex(qe["attributes"])
    misc = bytes.fromhex(qe["miscselect"])
    assert misc == field(report, QE_REPORT, "misc_select")


def test_collateral_has_the_dcap_qvl_shape(pki: TdxTestPki) -> None:
    sample_path = vectors_dir() / "dcap-qvl/sample/tdx_quote_collateral.json"
    sample = json.loads(sample_path.read_text())
    ours = pki.collateral(NOW)
    assert list(ours) == list(sample)
    for key, value in sample.items():
        assert _shape(ours[key]) == _shape(value), key
    for key in ("tcb_info", "qe_identity"):
        assert _keys(json.loads(ours[key])) == _keys(json.loads(sample[key])), key
    # The JSON documents in the trustee test data are the same kind as dcap-qvl's.
    real_tcb = json.loads(vector("tcbInfo.json").read_text())["tcbInfo"]
    assert list(json.loads(ours["tcb_info"])) == list(real_tcb)


# -- real quotes through the same layout tables --------------------------------------------


def test_real_quote_v4_layout_matches_golden_claims() -> None:
    quote = vector("tdx_quote_4.dat").read_bytes()
    check_quote_crypto(quote)
    parts = split_quote(quote)
    assert (parts.version, parts.body_type, len(parts.signed)) == (4, 2, 632)
    golden = json.loads(vector("parse_tdx_claims_expected.json").read_text())["quote"]
    renamed = {"tcb_svn": "tee_tcb_svn", "vendor_id": "qe_vendor_id"}
    for key, value in golden["body"].items():
        assert field(parts.body, TD_REPORT, renamed.get(key, key)).hex() == value, key
    for key, value in golden["header"].items():
        assert field(parts.header, HEADER, renamed.get(key, key)).hex() == value, key


@pytest.mark.parametrize(
    ("name", "version", "body_type"),
    [
        ("tdx_quote_5.dat", 5, 3),
        ("tdx_quote_6.dat", 4, 2),
    ],
)
def test_real_quotes_split_and_verify(name: str, version: int, body_type: int) -> None:
    quote = vector(name).read_bytes()
    check_quote_crypto(quote)
    parts = split_quote(quote)
    assert (parts.version, parts.body_type) == (version, body_type)


def test_real_and_simulated_signature_data_agree(pki: TdxTestPki) -> None:
    real = split_quote(vector("tdx_quote_4.dat").read_bytes()).signature_data
    ours = split_quote(pki.quote(bytes(64))).signature_data
    for key in ("cert_type", "qe_auth_data_size"):
        assert field(ours, SIGNATURE_DATA, key) == field(real, SIGNATURE_DATA, key)
    real_size = int.from_bytes(field(real, SIGNATURE_DATA, "cert_size"), "little")
    ours_size = int.from_bytes(field(ours, SIGNATURE_DATA, "cert_size"), "little")
    assert real_size == len(real) - 134 and ours_size == len(ours) - 134


# -- evidence ------------------------------------------------------------------------------


def test_evidence_json(pki: TdxTestPki) -> None:
    quote = pki.quote(bytes(64))
    plain = json.loads(tdx_evidence_json(quote))
    assert plain == {"cc_eventlog": None, "quote": base64.b64encode(quote).decode()}
    with_log = json.loads(tdx_evidence_json(quote, b"\x01\x02"))
    assert base64.b64decode(with_log["cc_eventlog"]) == b"\x01\x02"


def test_attester_binds_report_and_init_data(pki: TdxTestPki) -> None:
    attester = SimulatedTdxAttester(pki)
    evidence = attester.evidence(b"\x42" * 48, b"\x24" * 32)
    parts = split_quote(base64.b64decode(evidence["quote"]))
    assert field(parts.body, TD_REPORT, "report_data") == b"\x42" * 48 + bytes(16)
    assert field(parts.body, TD_REPORT, "mr_config_id") == b"\x24" * 32 + bytes(16)
    assert attester.tee == "tdx"


def test_shared_pki_is_cached() -> None:
    assert TdxTestPki.shared() is TdxTestPki.shared()
    assert len(TdxTestPki.shared().root_sha256) == 64


# -- helpers -------------------------------------------------------------------------------


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    return tag, data[pos : pos + length], pos + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        tag, value, pos = _tlv(data, pos)
        out.append((tag, value))
    return out


def _oid_text(value: bytes) -> str:
    arcs, acc = [], 0
    for byte in value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    return ".".join(
        str(a) for a in [min(first // 40, 2), first - 40 * min(first // 40, 2), *arcs[1:]]
    )


def _sgx_items(extension: bytes) -> list[tuple[str, tuple[int, bytes]]]:
    """Flatten the SGX extension to (sub-OID, (tag, value)) in encoding order."""
    tag, body, _ = _tlv(extension, 0)
    assert tag == 0x30
    out: list[tuple[str, tuple[int, bytes]]] = []

    def walk(seq_body: bytes) -> None:
        for entry_tag, entry in _children(seq_body):
            assert entry_tag == 0x30
            (oid_tag, oid_value), (value_tag, value) = _children(entry)
            assert oid_tag == 0x06
            sub = _oid_text(oid_value).removeprefix(SGX_EXTENSION_OID + ".")
            out.append((sub, (value_tag, value)))
            if value_tag == 0x30:
                walk(value)

    walk(body)
    return out


def _shape(value: str) -> str:
    if value.startswith("-----BEGIN CERTIFICATE-----"):
        return f"pem x{value.count('BEGIN CERTIFICATE')}"
    if value.startswith("{"):
        return "json"
    if all(c in "0123456789abcdef" for c in value):
        return "hex"
    return "other"


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items() if k not in ("advisoryIDs",)}
    if isinstance(value, list) and value:
        return [_keys(value[0])]
    return type(value).__name__
