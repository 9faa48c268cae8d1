"""Byte layout of the AMD SEV-SNP attestation report and its serde JSON form.

The attester sends the report as the JSON object the `sev` crate serialises, and verifiers
rebuild the 1184 binary bytes from it before checking the signature. The same tables drive
the encoder and the decoder here, so a round trip over a real report checks both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_COMPONENT_SIZE = 72
SIGNATURE_R_OFFSET = 0x2A0
SIGNATURE_S_OFFSET = 0x2E8

MILAN, GENOA, TURIN = "Milan", "Genoa", "Turin"


class ReportFormatError(ValueError):
    """A report (binary or JSON) does not fit the SNP ABI layout."""


@dataclass(frozen=True)
class Slot:
    offset: int
    size: int
    kind: str  # "u8" | "u32" | "u64" | "bytes" | "tcb" | "version" | "cpuid" | "mit"


# Key order is the serde order of sev's AttestationReport; the signature is handled apart.
REPORT_FIELDS: dict[str, Slot] = {
    "version": Slot(0x000, 4, "u32"),
    "guest_svn": Slot(0x004, 4, "u32"),
    "policy": Slot(0x008, 8, "u64"),
    "family_id": Slot(0x010, 16, "bytes"),
    "image_id": Slot(0x020, 16, "bytes"),
    "vmpl": Slot(0x030, 4, "u32"),
    "sig_algo": Slot(0x034, 4, "u32"),
    "current_tcb": Slot(0x038, 8, "tcb"),
    "plat_info": Slot(0x040, 8, "u64"),
    "key_info": Slot(0x048, 4, "u32"),
    "report_data": Slot(0x050, 64, "bytes"),
    "measurement": Slot(0x090, 48, "bytes"),
    "host_data": Slot(0x0C0, 32, "bytes"),
    "id_key_digest": Slot(0x0E0, 48, "bytes"),
    "author_key_digest": Slot(0x110, 48, "bytes"),
    "report_id": Slot(0x140, 32, "bytes"),
    "report_id_ma": Slot(0x160, 32, "bytes"),
    "reported_tcb": Slot(0x180, 8, "tcb"),
    "cpuid_fam_id": Slot(0x188, 1, "cpuid"),
    "cpuid_mod_id": Slot(0x189, 1, "cpuid"),
    "cpuid_step": Slot(0x18A, 1, "cpuid"),
    "chip_id": Slot(0x1A0, 64, "bytes"),
    "committed_tcb": Slot(0x1E0, 8, "tcb"),
    "current": Slot(0x1E8, 4, "version"),
    "committed": Slot(0x1EC, 4, "version"),
    "launch_tcb": Slot(0x1F0, 8, "tcb"),
    "launch_mit_vector": Slot(0x1F8, 8, "mit"),
    "current_mit_vector": Slot(0x200, 8, "mit"),
}

# (family, first model, last model) per generation, as verifiers classify reports v3+.
CPUID_RANGES = (
    (0x19, 0x00, 0x0F, MILAN),
    (0x19, 0x10, 0x1F, GENOA),
    (0x19, 0xA0, 0xAE, GENOA),
    (0x1A, 0x00, 0x11, TURIN),
)


def generation(version: int, family: int | None, model: int | None, chip_id: bytes) -> str:
    """Processor generation, which decides the TCB_VERSION byte layout."""
    if version >= 3:
        for fam, low, high, name in CPUID_RANGES:
            if family == fam and model is not None and low <= model <= high:
                return name
        raise ReportFormatError(f"CPUID family {family} model {model} is not Milan, Genoa or Turin")
    # v2 reports carry no CPUID: Turin masks all but the first 8 chip-id bytes.
    return TURIN if not any(chip_id[8:]) else GENOA


def encode_tcb(tcb: dict[str, Any], gen: str) -> bytes:
    out = bytearray(8)
    if gen == TURIN:
        fmc = tcb.get("fmc")
        out[0] = _byte("fmc", 0 if fmc is None else fmc)
        out[1] = _byte("bootloader", tcb.get("bootloader"))
        out[2] = _byte("tee", tcb.get("tee"))
        out[3] = _byte("snp", tcb.get("snp"))
    else:
        out[0] = _byte("bootloader", tcb.get("bootloader"))
        out[1] = _byte("tee", tcb.get("tee"))
        out[6] = _byte("snp", tcb.get("snp"))
    out[7] = _byte("microcode", tcb.get("microcode"))
    return bytes(out)


def decode_tcb(raw: bytes, gen: str) -> dict[str, Any]:
    if gen == TURIN:
        return {
            "fmc": raw[0],
            "bootloader": raw[1],
            "tee": raw[2],
            "snp": raw[3],
            "microcode": raw[7],
        }
    return {"fmc": None, "bootloader": raw[0], "tee": raw[1], "snp": raw[6], "microcode": raw[7]}


def _byte(label: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
        raise ReportFormatError(f"TCB {label} must be an integer 0..255, got {value!r}")
    return value


def _uint(label: str, value: Any, size: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
        raise ReportFormatError(
            f"{label} must be an unsigned {8 * size}-bit integer, got {value!r}"
        )
    return value


def _byte_array(label: str, value: Any, size: int) -> bytes:
    if not isinstance(value, list) or len(value) != size:
        shown = len(value) if isinstance(value, list) else type(value).__name__
        raise ReportFormatError(f"{label} must be a list of {size} bytes, got {shown}")
    return bytes(_byte(f"{label} element", v) for v in value)


def report_from_json(obj: dict[str, Any]) -> bytes:
    """Re-encode the serde object to the 1184-byte binary report (reserved bytes zero)."""
    if not isinstance(obj, dict):
        raise ReportFormatError(
            f"attestation report must be a JSON object, got {type(obj).__name__}"
        )
    version = _uint("version", obj.get("version"), 4)
    chip_id = _byte_array("chip_id", obj.get("chip_id"), 64)
    fam, mod = obj.get("cpuid_fam_id"), obj.get("cpuid_mod_id")
    gen = generation(version, fam, mod, chip_id)
    out = bytearray(REPORT_SIZE)
    for key, slot in REPORT_FIELDS.items():
        value = obj.get(key)
        if slot.kind == "cpuid":
            if version < 3:
                continue
            value = 0 if value is None else _byte(key, value)
            out[slot.offset] = value
            continue
        if slot.kind == "mit":
            if version < 5:
                continue
            encoded = (0 if value is None else _uint(key, value, 8)).to_bytes(8, "little")
        elif slot.kind in ("u32", "u64"):
            encoded = _uint(key, value, slot.size).to_bytes(slot.size, "little")
        elif slot.kind == "bytes":
            encoded = _byte_array(key, value, slot.size)
        elif slot.kind == "tcb":
            if not isinstance(value, dict):
                raise ReportFormatError(f"{key} must be a TCB object, got {value!r}")
            encoded = encode_tcb(value, gen)
        else:  # version triple: build, minor, major, reserved
            if not isinstance(value, dict):
                raise ReportFormatError(
                    f"{key} must be a {{major,minor,build}} object, got {value!r}"
                )
            encoded = bytes(
                (
                    _byte(f"{key}.build", value.get("build")),
                    _byte(f"{key}.minor", value.get("minor")),
                    _byte(f"{key}.major", value.get("major")),
                    0,
                )
            )
        out[slot.offset : slot.offset + slot.size] = encoded
    signature = obj.get("signature")
    if not isinstance(signature, dict):
        raise ReportFormatError(f"signature must be an {{r,s}} object, got {signature!r}")
    out[SIGNATURE_R_OFFSET : SIGNATURE_R_OFFSET + 72] = _byte_array(
        "signature.r", signature.get("r"), 72
    )
    out[SIGNATURE_S_OFFSET : SIGNATURE_S_OFFSET + 72] = _byte_array(
        "signature.s", signature.get("s"), 72
    )
    return bytes(out)


def report_to_json(report: bytes) -> dict[str, Any]:
    """The serde object of a binary report, keys in sev's order."""
    if len(report) != REPORT_SIZE:
        raise ReportFormatError(f"SNP report is {len(report)} bytes, expected {REPORT_SIZE}")
    version = int.from_bytes(report[0:4], "little")
    chip_id = report[0x1A0:0x1E0]
    has_cpuid = version >= 3
    gen = generation(
        version,
        report[0x188] if has_cpuid else None,
        report[0x189] if has_cpuid else None,
        chip_id,
    )
    obj: dict[str, Any] = {}
    for key, slot in REPORT_FIELDS.items():
        raw = report[slot.offset : slot.offset + slot.size]
        if slot.kind in ("u32", "u64"):
            obj[key] = int.from_bytes(raw, "little")
        elif slot.kind == "bytes":
            obj[key] = list(raw)
        elif slot.kind == "tcb":
            obj[key] = decode_tcb(raw, gen)
        elif slot.kind == "version":
            obj[key] = {"major": raw[2], "minor": raw[1], "build": raw[0]}
        elif slot.kind == "cpuid":
            obj[key] = raw[0] if has_cpuid else None
        else:
            obj[key] = int.from_bytes(raw, "little") if version >= 5 else None
    obj["signature"] = {
        "r": list(report[SIGNATURE_R_OFFSET : SIGNATURE_R_OFFSET + 72]),
        "s": list(report[SIGNATURE_S_OFFSET : SIGNATURE_S_OFFSET + 72]),
    }
    return obj
