"""The Azure HCL (paravisor) attestation report a vTPM exposes in NV index 0x01400001.

Layout, little-endian: a 32-byte header ("HCLA", version, report size, request type 2,
status, 3 reserved words); the hardware report at 0x20 in a 1184-byte area (an SNP report
fills it, a 1024-byte TD report leaves the rest zero); the IGVM request data at 0x4C0
(data size, version 1, report type 2 SNP / 4 TDX, hash type 1 SHA-256, variable-data size);
the variable data (runtime-claims JSON) at 0x4D4. The NV index is 2600 bytes, zero-padded.
The hardware report's report data starts with SHA-256 of the variable data, which is how the
AK inside the runtime claims is bound to the hardware.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

HCL_SIGNATURE = 0x414C4348  # "HCLA" read as a little-endian u32
HEADER_SIZE = 0x20
HW_REPORT_OFFSET = HEADER_SIZE
HW_AREA_SIZE = 1184
SNP_REPORT_SIZE = 1184
TD_REPORT_SIZE = 1024
IGVM_OFFSET = HW_REPORT_OFFSET + HW_AREA_SIZE
IGVM_HEADER_SIZE = 20
VAR_DATA_OFFSET = IGVM_OFFSET + IGVM_HEADER_SIZE
NV_SIZE = 2600
REQUEST_TYPE = 2
REPORT_TYPE_SNP = 2
REPORT_TYPE_TDX = 4
HASH_TYPE_SHA256 = 1
AK_KID = "HCLAkPub"
EK_KID = "HCLEkPub"
# The header version real Azure guests report for each hardware type.
HEADER_VERSION = {REPORT_TYPE_SNP: 1, REPORT_TYPE_TDX: 2}
HW_REPORT_SIZE = {REPORT_TYPE_SNP: SNP_REPORT_SIZE, REPORT_TYPE_TDX: TD_REPORT_SIZE}


class HclFormatError(ValueError):
    """Bytes that are not an HCL report; says which field and why."""


def runtime_claims(
    ak_jwk: dict[str, Any], ek_jwk: dict[str, Any], user_data: bytes, vm_id: str
) -> bytes:
    """The variable data: the vTPM keys, the VM configuration and `user-data` (64 bytes, hex)."""
    if len(user_data) > 64:
        raise ValueError(f"HCL user-data is {len(user_data)} bytes, at most 64 fit")
    claims = {
        "keys": [ak_jwk, ek_jwk],
        "vm-configuration": {
            "console-enabled": True,
            "secure-boot": True,
            "tpm-enabled": True,
            "vmUniqueId": vm_id,
        },
        "user-data": user_data.ljust(64, b"\0").hex().upper(),
    }
    return json.dumps(claims, separators=(",", ":")).encode()


def var_data_report_data(var_data: bytes) -> bytes:
    """The 64 report-data bytes the hardware report carries: SHA-256(var data), zero-padded."""
    return hashlib.sha256(var_data).digest().ljust(64, b"\0")


def build(hw_report: bytes, report_type: int, var_data: bytes) -> bytes:
    """The 2600-byte NV content around `hw_report` and `var_data`."""
    if report_type not in HW_REPORT_SIZE:
        raise ValueError(f"HCL report type must be 2 (SNP) or 4 (TDX), got {report_type}")
    if len(hw_report) != HW_REPORT_SIZE[report_type]:
        raise ValueError(
            f"hardware report is {len(hw_report)} bytes, type {report_type} needs "
            f"{HW_REPORT_SIZE[report_type]}"
        )
    if VAR_DATA_OFFSET + len(var_data) > NV_SIZE:
        raise ValueError(f"HCL variable data of {len(var_data)} bytes does not fit")
    report_size = VAR_DATA_OFFSET + len(var_data)
    header = struct.pack(
        "<8I", HCL_SIGNATURE, HEADER_VERSION[report_type], report_size, REQUEST_TYPE, 0, 0, 0, 0
    )
    igvm = struct.pack(
        "<5I", IGVM_HEADER_SIZE + len(var_data), 1, report_type, HASH_TYPE_SHA256, len(var_data)
    )
    body = header + hw_report.ljust(HW_AREA_SIZE, b"\0") + igvm + var_data
    return body.ljust(NV_SIZE, b"\0")


@dataclass(frozen=True)
class HclReport:
    version: int
    report_size: int
    request_type: int
    report_type: int
    hash_type: int
    hw_report: bytes
    var_data: bytes

    @property
    def var_data_sha256(self) -> bytes:
        return hashlib.sha256(self.var_data).digest()

    def claims(self) -> dict[str, Any]:
        try:
            value = json.loads(self.var_data)
        except ValueError as exc:
            raise HclFormatError(f"variable data is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise HclFormatError("variable data is not a JSON object")
        return value

    def ak_jwk(self) -> dict[str, Any]:
        keys = self.claims().get("keys")
        for key in keys if isinstance(keys, list) else []:
            if isinstance(key, dict) and key.get("kid") == AK_KID:
                return key
        raise HclFormatError(f"no key with kid {AK_KID!r} in the variable data")

    def user_data(self) -> bytes:
        text = self.claims().get("user-data")
        if not isinstance(text, str):
            raise HclFormatError("variable data has no user-data string")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise HclFormatError("user-data is not hex") from None


def parse(data: bytes) -> HclReport:
    """Parse an HCL report; raises `HclFormatError` naming the bad field."""
    if len(data) < VAR_DATA_OFFSET:
        raise HclFormatError(f"{len(data)} bytes, shorter than the {VAR_DATA_OFFSET}-byte head")
    signature, version, report_size, request_type = struct.unpack_from("<4I", data)
    if signature != HCL_SIGNATURE:
        raise HclFormatError(f"signature {signature:#x}, expected 'HCLA'")
    _, _, report_type, hash_type, var_size = struct.unpack_from("<5I", data, IGVM_OFFSET)
    if report_type not in HW_REPORT_SIZE:
        raise HclFormatError(f"report type {report_type}, expected 2 (SNP) or 4 (TDX)")
    if VAR_DATA_OFFSET + var_size > len(data):
        raise HclFormatError(f"variable data of {var_size} bytes runs past the report")
    hw_end = HW_REPORT_OFFSET + HW_REPORT_SIZE[report_type]
    return HclReport(
        version=version,
        report_size=report_size,
        request_type=request_type,
        report_type=report_type,
        hash_type=hash_type,
        hw_report=data[HW_REPORT_OFFSET:hw_end],
        var_data=data[VAR_DATA_OFFSET : VAR_DATA_OFFSET + var_size],
    )
