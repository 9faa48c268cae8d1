"""Writing simulated TDX quotes: header, TD report body, and the certification data that follows
the signature (QE report, its signature, QE authentication data, PCK chain)."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric import ec

from trustee.simulate import certs
from trustee.simulate.tdx_layout import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_TYPE_PCK_CHAIN,
    CERT_TYPE_QE_REPORT,
    INTEL_QE_VENDOR_ID,
    QE_REPORT,
    QE_REPORT_SIZE,
    TD_REPORT,
    TEE_TYPE_TDX,
    Field,
)
from trustee.simulate.tdx_platform import QeIdentity


def padded(label: str, value: bytes, size: int) -> bytes:
    if len(value) > size:
        raise ValueError(f"{label} is {len(value)} bytes, at most {size} fit in the quote")
    return value.ljust(size, b"\0")


def fill_fields(size: int, layout: Mapping[str, Field], values: Mapping[str, bytes]) -> bytes:
    out = bytearray(size)
    for key, value in values.items():
        spec = layout[key]
        out[spec.offset : spec.end] = value
    return bytes(out)


def build_qe_report(qe: QeIdentity, *, cpu_svn: bytes, report_data: bytes) -> bytes:
    """The 384-byte SGX report body of the quoting enclave; `report_data` is zero-padded."""
    values = {
        "cpu_svn": padded("cpu_svn", cpu_svn, 16),
        "misc_select": padded("misc_select", qe.misc_select, 4),
        "attributes": padded("attributes", qe.attributes, 16),
        "mr_enclave": padded("mr_enclave", qe.mr_enclave, 32),
        "mr_signer": padded("mr_signer", qe.mr_signer, 32),
        "isv_prod_id": qe.isv_prod_id.to_bytes(2, "little"),
        "isv_svn": qe.isv_svn.to_bytes(2, "little"),
        "report_data": padded("report_data", report_data, 64),
    }
    return fill_fields(QE_REPORT_SIZE, QE_REPORT, values)


def signature_tail(
    *,
    attestation_key: ec.EllipticCurvePrivateKey,
    qe_report: bytes,
    qe_report_signature: bytes,
    qe_auth_data: bytes,
    pck_chain_pem: str,
    wrapped: bool = True,
) -> bytes:
    """Everything after the quote signature; fixed per platform, so callers build it once.

    TDX quotes wrap the QE certification data in a type-6 block (`wrapped`); SGX v3 quotes
    carry it directly after the attestation key.
    """
    chain = pck_chain_pem.encode("ascii") + b"\0"
    pck_chain = struct.pack("<HI", CERT_TYPE_PCK_CHAIN, len(chain)) + chain
    qe_certification = (
        qe_report
        + qe_report_signature
        + struct.pack("<H", len(qe_auth_data))
        + qe_auth_data
        + pck_chain
    )
    raw_key = certs.raw_public_key(attestation_key.public_key())
    if not wrapped:
        return raw_key + qe_certification
    return (
        raw_key + struct.pack("<HI", CERT_TYPE_QE_REPORT, len(qe_certification)) + qe_certification
    )


def sign_quote(
    attestation_key: ec.EllipticCurvePrivateKey,
    *,
    version: int,
    body_type: int,
    layout: tuple[int, int],
    body: Mapping[str, bytes],
    user_data: bytes,
    tail: bytes,
) -> bytes:
    """The quote whose TD report holds `body` (values by `TD_REPORT` field), signed, with `tail`.

    `layout` is the body's (offset, size) from `tdx_layout.body_layout`.
    """
    body_offset, body_size = layout
    header = struct.pack(
        "<HHII16s20s",
        version,
        ATT_KEY_TYPE_ECDSA_P256,
        TEE_TYPE_TDX,
        0,
        INTEL_QE_VENDOR_ID,
        user_data,
    )
    descriptor = struct.pack("<HI", body_type, body_size) if version == 5 else b""
    signed = header + descriptor + fill_fields(body_size, TD_REPORT, body)
    if len(signed) != body_offset + body_size:
        raise ValueError(
            f"signed region is {len(signed)} bytes, expected {body_offset + body_size}"
        )
    signature_data = certs.p256_sign_raw(attestation_key, signed) + tail
    return signed + struct.pack("<I", len(signature_data)) + signature_data
