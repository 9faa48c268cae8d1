"""Byte layout of Intel TDX quotes (v4 and v5), shared by the quote builder and its tests.

Offsets are those of Intel's DCAP quote format; the same tables are used to write simulated
quotes and to read real ones, so a test on a real quote checks the builder's layout too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_SIZE = 48
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
QE_REPORT_SIZE = 384
V5_DESCRIPTOR_SIZE = 6

ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
CERT_TYPE_QE_REPORT = 6
CERT_TYPE_PCK_CHAIN = 5
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")


@dataclass(frozen=True)
class Field:
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


HEADER = {
    "version": Field(0, 2),
    "att_key_type": Field(2, 2),
    "tee_type": Field(4, 4),
    "reserved": Field(8, 4),
    "qe_vendor_id": Field(12, 16),
    "user_data": Field(28, 20),
}

# Relative to the body start; the last two exist in TD report 1.5 only.
TD_REPORT = {
    "tee_tcb_svn": Field(0, 16),
    "mr_seam": Field(16, 48),
    "mrsigner_seam": Field(64, 48),
    "seam_attributes": Field(112, 8),
    "td_attributes": Field(120, 8),
    "xfam": Field(128, 8),
    "mr_td": Field(136, 48),
    "mr_config_id": Field(184, 48),
    "mr_owner": Field(232, 48),
    "mr_owner_config": Field(280, 48),
    "rtmr_0": Field(328, 48),
    "rtmr_1": Field(376, 48),
    "rtmr_2": Field(424, 48),
    "rtmr_3": Field(472, 48),
    "report_data": Field(520, 64),
    "tee_tcb_svn2": Field(584, 16),
    "mr_servicetd": Field(600, 48),
}

# Relative to the start of the signature data (after its u32 length).
SIGNATURE_DATA = {
    "quote_signature": Field(0, 64),
    "attestation_key": Field(64, 64),
    "cert_type": Field(128, 2),
    "cert_size": Field(130, 4),
    "qe_report": Field(134, QE_REPORT_SIZE),
    "qe_report_signature": Field(518, 64),
    "qe_auth_data_size": Field(582, 2),
}
QE_AUTH_DATA_OFFSET = 584

# SGX report body, used for the QE report.
QE_REPORT = {
    "cpu_svn": Field(0, 16),
    "misc_select": Field(16, 4),
    "attributes": Field(48, 16),
    "mr_enclave": Field(64, 32),
    "mr_signer": Field(128, 32),
    "isv_prod_id": Field(256, 2),
    "isv_svn": Field(258, 2),
    "report_data": Field(320, 64),
}


class QuoteFormatError(ValueError):
    """A quote is too short or carries a value the TDX format does not allow."""


@dataclass(frozen=True)
class QuoteParts:
    """A quote split at its structural boundaries (all slices of the input)."""

    version: int
    body_type: int
    header: bytes
    body: bytes
    signed: bytes
    signature_data: bytes
    qe_report: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


def field(data: bytes, table: dict[str, Field], key: str, base: int = 0) -> bytes:
    spec = table[key]
    start = base + spec.offset
    if start + spec.size > len(data):
        raise QuoteFormatError(
            f"field {key} needs bytes {start}..{start + spec.size} but only {len(data)} are present"
        )
    return data[start : start + spec.size]


def u16(data: bytes, offset: int) -> int:
    return int(_unpack("<H", data, offset))


def u32(data: bytes, offset: int) -> int:
    return int(_unpack("<I", data, offset))


def _unpack(fmt: str, data: bytes, offset: int) -> int:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise QuoteFormatError(
            f"integer at offset {offset} needs {size} bytes but the data is {len(data)} bytes"
        )
    value: int = struct.unpack_from(fmt, data, offset)[0]
    return value


def body_layout(version: int, body_type: int = BODY_TYPE_TD10) -> tuple[int, int]:
    """(body offset, body size) for a TDX quote version and, for v5, its body type."""
    if version == 4:
        return HEADER_SIZE, TD_REPORT10_SIZE
    if version == 5:
        sizes = {BODY_TYPE_TD10: TD_REPORT10_SIZE, BODY_TYPE_TD15: TD_REPORT15_SIZE}
        if body_type not in sizes:
            raise QuoteFormatError(
                f"quote v5 body type {body_type} is not 2 (TD 1.0) or 3 (TD 1.5)"
            )
        return HEADER_SIZE + V5_DESCRIPTOR_SIZE, sizes[body_type]
    raise QuoteFormatError(f"quote version {version} is not a TDX quote version (4 or 5)")


def split_quote(quote: bytes) -> QuoteParts:
    """Split a TDX quote into the parts a verifier checks; raises `QuoteFormatError`."""
    if len(quote) < HEADER_SIZE:
        raise QuoteFormatError(f"quote is {len(quote)} bytes, shorter than the 48-byte header")
    version = u16(quote, 0)
    att_key_type = u16(quote, 2)
    if att_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(f"attestation key type is {att_key_type}, expected 2 (ECDSA P-256)")
    tee_type = u32(quote, 4)
    if tee_type != TEE_TYPE_TDX:
        raise QuoteFormatError(f"TEE type is {tee_type:#x}, expected 0x81 (TDX)")
    body_type = BODY_TYPE_TD10
    if version == 5:
        body_type = u16(quote, HEADER_SIZE)
        declared = u32(quote, HEADER_SIZE + 2)
        _, expected = body_layout(version, body_type)
        if declared != expected:
            raise QuoteFormatError(
                f"v5 body type {body_type} declares size {declared}, expected {expected}"
            )
    body_offset, body_size = body_layout(version, body_type)
    signed_end = body_offset + body_size
    sig_len = u32(quote, signed_end)
    sig_start = signed_end + 4
    if sig_start + sig_len > len(quote):
        raise QuoteFormatError(
            f"signature data length {sig_len} runs past the quote end ({len(quote)} bytes)"
        )
    sig = quote[sig_start : sig_start + sig_len]
    cert_type = u16(sig, SIGNATURE_DATA["cert_type"].offset)
    if cert_type != CERT_TYPE_QE_REPORT:
        raise QuoteFormatError(f"certification data type is {cert_type}, expected 6 (QE report)")
    auth_size = u16(sig, SIGNATURE_DATA["qe_auth_data_size"].offset)
    auth_end = QE_AUTH_DATA_OFFSET + auth_size
    if auth_end > len(sig):
        raise QuoteFormatError(f"QE auth data size {auth_size} runs past the signature data")
    inner_type = u16(sig, auth_end)
    if inner_type != CERT_TYPE_PCK_CHAIN:
        raise QuoteFormatError(
            f"inner certification data type is {inner_type}, expected 5 (PCK chain)"
        )
    chain_size = u32(sig, auth_end + 2)
    chain_start = auth_end + 6
    if chain_start + chain_size > len(sig):
        raise QuoteFormatError(f"PCK chain size {chain_size} runs past the signature data")
    return QuoteParts(
        version=version,
        body_type=body_type,
        header=quote[:HEADER_SIZE],
        body=quote[body_offset:signed_end],
        signed=quote[:signed_end],
        signature_data=sig,
        qe_report=field(sig, SIGNATURE_DATA, "qe_report"),
        qe_auth_data=sig[QE_AUTH_DATA_OFFSET:auth_end],
        pck_chain_pem=sig[chain_start : chain_start + chain_size],
    )
