"""Writing simulated SGX DCAP quotes (version 3): header, the enclave's report body, and the
QE certification data of the platform's quoting enclave."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.asymmetric import ec

from trustee.simulate import certs
from trustee.simulate.tdx_layout import (
    ATT_KEY_TYPE_ECDSA_P256,
    INTEL_QE_VENDOR_ID,
    QE_REPORT,
    QE_REPORT_SIZE,
    Field,
)
from trustee.simulate.tdx_quote import fill_fields, padded

SGX_QUOTE_VERSION = 3
TEE_TYPE_SGX = 0
# The enclave report body is the QE report's layout; an enclave also reports these.
ENCLAVE_REPORT = {
    **QE_REPORT,
    "config_id": Field(192, 64),
    "config_svn": Field(260, 2),
    "isv_family_id": Field(304, 16),
}
# Enclave attributes: INIT | MODE64BIT (not DEBUG); XFRM x87 | SSE | AVX.
DEFAULT_ATTRIBUTES = bytes.fromhex("0400000000000000" + "0700000000000000")


def enclave_report(
    *,
    cpu_svn: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    report_data: bytes,
    config_id: bytes = b"",
    isv_prod_id: int = 0,
    isv_svn: int = 0,
    attributes: bytes = DEFAULT_ATTRIBUTES,
) -> bytes:
    """The 384-byte report body of an enclave; shorter byte fields are zero-padded."""
    values = {
        "cpu_svn": padded("cpu_svn", cpu_svn, 16),
        "attributes": padded("attributes", attributes, 16),
        "mr_enclave": padded("mr_enclave", mr_enclave, 32),
        "mr_signer": padded("mr_signer", mr_signer, 32),
        "config_id": padded("config_id", config_id, 64),
        "isv_prod_id": isv_prod_id.to_bytes(2, "little"),
        "isv_svn": isv_svn.to_bytes(2, "little"),
        "report_data": padded("report_data", report_data, 64),
    }
    return fill_fields(QE_REPORT_SIZE, ENCLAVE_REPORT, values)


def sign_sgx_quote(
    attestation_key: ec.EllipticCurvePrivateKey,
    *,
    qe_svn: int,
    pce_svn: int,
    user_data: bytes,
    body: bytes,
    tail: bytes,
) -> bytes:
    """Header (with QE and PCE SVN in its reserved bytes) + `body`, signed, then `tail` (the
    unwrapped QE certification data, `tdx_quote.signature_tail(wrapped=False)`)."""
    header = struct.pack(
        "<HHIHH16s20s",
        SGX_QUOTE_VERSION,
        ATT_KEY_TYPE_ECDSA_P256,
        TEE_TYPE_SGX,
        qe_svn,
        pce_svn,
        INTEL_QE_VENDOR_ID,
        user_data,
    )
    signed = header + body
    signature_data = certs.p256_sign_raw(attestation_key, signed) + tail
    return signed + struct.pack("<I", len(signature_data)) + signature_data
