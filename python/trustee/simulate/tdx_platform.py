"""What a simulated TDX platform is: the facts its PCK certificate states, the TD module's TCB
SVN, and its quoting enclave's identity, with their form in a saved PKI's pki.json."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from trustee.simulate import der, store

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
SGX_TYPE_STANDARD, SGX_TYPE_SCALABLE, SGX_TYPE_SCALABLE_WITH_INTEGRITY = 0, 1, 2


@dataclass(frozen=True)
class TdxPlatform:
    """What the PCK certificate says about the platform, and what the TD module reports."""

    fmspc: bytes = bytes.fromhex("00A06D080000")
    pce_id: bytes = bytes(2)
    sgx_tcb_components: tuple[int, ...] = (2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    pce_svn: int = 13
    # Byte 0 module SVN, byte 1 module major version (selects identity TDX_03), byte 2 SEAM SVN.
    tee_tcb_svn: bytes = bytes((5, 3, 2)) + bytes(13)
    sgx_type: int = SGX_TYPE_SCALABLE_WITH_INTEGRITY
    dynamic_platform: bool = True
    cached_keys: bool = False
    smt_enabled: bool = True
    ppid: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    platform_instance_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))


@dataclass(frozen=True)
class QeIdentity:
    """The simulated TD quoting enclave's report fields (mirrored in the QE identity JSON)."""

    mr_signer: bytes = hashlib.sha256(b"trustee simulated TD QE signer").digest()
    mr_enclave: bytes = hashlib.sha256(b"trustee simulated TD QE").digest()
    isv_prod_id: int = 2
    isv_svn: int = 4
    misc_select: bytes = bytes(4)
    attributes: bytes = bytes.fromhex("1500000000000000e700000000000000")


def sgx_extension(platform: TdxPlatform) -> bytes:
    """The PCK leaf's SGX extension value, structured exactly like Intel's (Platform CA form)."""
    base = SGX_EXTENSION_OID

    def entry(sub: str, value: bytes) -> bytes:
        return der.sequence(der.oid(f"{base}.{sub}"), value)

    cpu_svn = bytes(platform.sgx_tcb_components)
    tcb = [
        entry(f"2.{i + 1}", der.integer(svn)) for i, svn in enumerate(platform.sgx_tcb_components)
    ]
    tcb.append(entry("2.17", der.integer(platform.pce_svn)))
    tcb.append(entry("2.18", der.octet_string(cpu_svn)))
    configuration = der.sequence(
        entry("7.1", der.boolean(platform.dynamic_platform)),
        entry("7.2", der.boolean(platform.cached_keys)),
        entry("7.3", der.boolean(platform.smt_enabled)),
    )
    return der.sequence(
        entry("1", der.octet_string(platform.ppid)),
        entry("2", der.sequence(*tcb)),
        entry("3", der.octet_string(platform.pce_id)),
        entry("4", der.octet_string(platform.fmspc)),
        entry("5", der.enumerated(platform.sgx_type)),
        entry("6", der.octet_string(platform.platform_instance_id)),
        entry("7", configuration),
    )


def check_platform(platform: TdxPlatform) -> None:
    checks = (
        ("fmspc", len(platform.fmspc), 6),
        ("pce_id", len(platform.pce_id), 2),
        ("sgx_tcb_components", len(platform.sgx_tcb_components), 16),
        ("tee_tcb_svn", len(platform.tee_tcb_svn), 16),
        ("ppid", len(platform.ppid), 16),
        ("platform_instance_id", len(platform.platform_instance_id), 16),
    )
    for label, got, want in checks:
        if got != want:
            raise ValueError(f"platform {label} must be {want} bytes/entries, got {got}")
    if any(not 0 <= svn <= 255 for svn in platform.sgx_tcb_components):
        raise ValueError(f"SGX TCB component SVNs must be bytes, got {platform.sgx_tcb_components}")


def document(platform: TdxPlatform, qe: QeIdentity, qe_auth_data: bytes) -> dict[str, Any]:
    """pki.json for a TDX PKI: everything but the keys and certificates saved beside it."""
    p = platform
    return store.header("tdx") | {
        "platform": {
            "fmspc": p.fmspc.hex(),
            "pce_id": p.pce_id.hex(),
            "sgx_tcb_components": list(p.sgx_tcb_components),
            "pce_svn": p.pce_svn,
            "tee_tcb_svn": p.tee_tcb_svn.hex(),
            "sgx_type": p.sgx_type,
            "dynamic_platform": p.dynamic_platform,
            "cached_keys": p.cached_keys,
            "smt_enabled": p.smt_enabled,
            "ppid": p.ppid.hex(),
            "platform_instance_id": p.platform_instance_id.hex(),
        },
        "qe": {
            "mr_signer": qe.mr_signer.hex(),
            "mr_enclave": qe.mr_enclave.hex(),
            "isv_prod_id": qe.isv_prod_id,
            "isv_svn": qe.isv_svn,
            "misc_select": qe.misc_select.hex(),
            "attributes": qe.attributes.hex(),
            "auth_data": qe_auth_data.hex(),
        },
    }


def read_document(doc: store.PkiDocument) -> tuple[TdxPlatform, QeIdentity, bytes]:
    """The platform, QE identity and QE authentication data `document` wrote."""
    platform = TdxPlatform(
        fmspc=doc.bytes_("platform.fmspc", 6),
        pce_id=doc.bytes_("platform.pce_id", 2),
        sgx_tcb_components=doc.int_list("platform.sgx_tcb_components", 16),
        pce_svn=doc.int_("platform.pce_svn", 0, 0xFFFF),
        tee_tcb_svn=doc.bytes_("platform.tee_tcb_svn", 16),
        sgx_type=doc.int_("platform.sgx_type", 0, 2),
        dynamic_platform=doc.bool_("platform.dynamic_platform"),
        cached_keys=doc.bool_("platform.cached_keys"),
        smt_enabled=doc.bool_("platform.smt_enabled"),
        ppid=doc.bytes_("platform.ppid", 16),
        platform_instance_id=doc.bytes_("platform.platform_instance_id", 16),
    )
    qe = QeIdentity(
        mr_signer=doc.bytes_("qe.mr_signer", 32),
        mr_enclave=doc.bytes_("qe.mr_enclave", 32),
        isv_prod_id=doc.int_("qe.isv_prod_id", 0, 0xFFFF),
        isv_svn=doc.int_("qe.isv_svn", 0, 0xFFFF),
        misc_select=doc.bytes_("qe.misc_select", 4),
        attributes=doc.bytes_("qe.attributes", 16),
    )
    auth_data = doc.bytes_("qe.auth_data")
    if len(auth_data) > 0xFFFF:
        raise doc.fail("qe.auth_data", f"is {len(auth_data)} bytes, at most 65535 fit")
    return platform, qe, auth_data
