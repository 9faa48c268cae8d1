"""Simulated Intel TDX guest: DCAP-format quotes and collateral from a run-time test PKI.

The PKI mirrors Intel's: a self-signed root, a PCK Platform CA, a PCK leaf carrying the SGX
extension, and a TCB signing certificate for TCB info and QE identity. A verifier trusts it only
when the test root is configured explicitly.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustee.simulate import certs, der, store
from trustee.simulate.tdx_layout import (
    ATT_KEY_TYPE_ECDSA_P256,
    BODY_TYPE_TD10,
    BODY_TYPE_TD15,
    CERT_TYPE_PCK_CHAIN,
    CERT_TYPE_QE_REPORT,
    INTEL_QE_VENDOR_ID,
    QE_REPORT,
    QE_REPORT_SIZE,
    TD_REPORT,
    TEE_TYPE_TDX,
    body_layout,
)

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
SGX_TYPE_STANDARD, SGX_TYPE_SCALABLE, SGX_TYPE_SCALABLE_WITH_INTEGRITY = 0, 1, 2

# Never resolvable (RFC 2606), so nothing fetches a real CRL for the test PKI.
ROOT_CRL_URL = "https://pcs.trustee-test.invalid/sgx/certification/v4/rootcacrl"
PCK_CRL_URL = (
    "https://pcs.trustee-test.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
)

TCB_EVALUATION_DATA_NUMBER = 17
COLLATERAL_LIFETIME = datetime.timedelta(days=30)
CERT_LIFETIME = datetime.timedelta(days=3650)


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


def _check_platform(platform: TdxPlatform) -> None:
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


def _padded(label: str, value: bytes, size: int) -> bytes:
    if len(value) > size:
        raise ValueError(f"{label} is {len(value)} bytes, at most {size} fit in the quote")
    return value.ljust(size, b"\0")


@dataclass
class TdxTestPki:
    """Keys and certificates of a simulated Intel DCAP platform; build with `generate()`."""

    platform: TdxPlatform
    qe: QeIdentity
    root_key: ec.EllipticCurvePrivateKey
    root_cert: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    pck_ca_cert: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    pck_cert: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey
    tcb_signing_cert: x509.Certificate
    attestation_key: ec.EllipticCurvePrivateKey
    qe_auth_data: bytes
    qe_report: bytes
    qe_report_signature: bytes
    user_data: bytes
    # Everything after the quote signature is fixed per platform, so it is built once.
    _signature_tail: bytes = b""

    @classmethod
    def generate(
        cls,
        *,
        platform: TdxPlatform | None = None,
        qe: QeIdentity | None = None,
        now: datetime.datetime | None = None,
    ) -> TdxTestPki:
        platform = platform or TdxPlatform()
        qe = qe or QeIdentity()
        _check_platform(platform)
        start = certs.utc(now) if now else certs.now_utc()
        start -= datetime.timedelta(days=1)
        end = start + CERT_LIFETIME

        def new_key() -> ec.EllipticCurvePrivateKey:
            return ec.generate_private_key(ec.SECP256R1())

        root_key, pck_ca_key, pck_key, tcb_key, att_key = (new_key() for _ in range(5))
        validity = (start, end)
        root = certs.Signer(certs.intel_name("Intel SGX Root CA"), root_key)
        root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
        root_aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
        root_cdp = certs.crl_distribution_point(ROOT_CRL_URL)
        root_cert = certs.issue(
            root.name,
            root_key.public_key(),
            root,
            validity,
            [
                (root_aki, False),
                (root_cdp, False),
                (root_ski, False),
                (certs.key_usage(cert_sign=True, crl_sign=True), True),
                (x509.BasicConstraints(ca=True, path_length=1), True),
            ],
        )
        pck_ca = certs.Signer(certs.intel_name("Intel SGX PCK Platform CA"), pck_ca_key)
        pck_ca_cert = certs.issue(
            pck_ca.name,
            pck_ca_key.public_key(),
            root,
            validity,
            [
                (root_aki, False),
                (root_cdp, False),
                (x509.SubjectKeyIdentifier.from_public_key(pck_ca_key.public_key()), False),
                (certs.key_usage(cert_sign=True, crl_sign=True), True),
                (x509.BasicConstraints(ca=True, path_length=0), True),
            ],
        )
        pck_cert = certs.issue(
            certs.intel_name("Intel SGX PCK Certificate"),
            pck_key.public_key(),
            pck_ca,
            validity,
            [
                (
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(pck_ca_key.public_key()),
                    False,
                ),
                (certs.crl_distribution_point(PCK_CRL_URL), False),
                (x509.SubjectKeyIdentifier.from_public_key(pck_key.public_key()), False),
                (certs.key_usage(sign=True), True),
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier(SGX_EXTENSION_OID), sgx_extension(platform)
                    ),
                    False,
                ),
            ],
        )
        tcb_signing_cert = certs.issue(
            certs.intel_name("Intel SGX TCB Signing"),
            tcb_key.public_key(),
            root,
            validity,
            [
                (root_aki, False),
                (root_cdp, False),
                (x509.SubjectKeyIdentifier.from_public_key(tcb_key.public_key()), False),
                (certs.key_usage(sign=True), True),
                (x509.BasicConstraints(ca=False, path_length=None), True),
            ],
        )
        return cls._assemble(
            platform=platform,
            qe=qe,
            root=(root_key, root_cert),
            pck_ca=(pck_ca_key, pck_ca_cert),
            pck=(pck_key, pck_cert),
            tcb_signing=(tcb_key, tcb_signing_cert),
            attestation_key=att_key,
            qe_auth_data=bytes(range(32)),
        )

    @classmethod
    def _assemble(
        cls,
        *,
        platform: TdxPlatform,
        qe: QeIdentity,
        root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        pck_ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        pck: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        tcb_signing: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
        attestation_key: ec.EllipticCurvePrivateKey,
        qe_auth_data: bytes,
    ) -> TdxTestPki:
        # The QE report is derived, not stored, so a saved PKI cannot hold a stale one.
        raw_key = certs.raw_public_key(attestation_key.public_key())
        binding = hashlib.sha256(raw_key + qe_auth_data).digest()
        qe_report = build_qe_report(
            qe, cpu_svn=bytes(platform.sgx_tcb_components), report_data=binding
        )
        pki = cls(
            platform=platform,
            qe=qe,
            root_key=root[0],
            root_cert=root[1],
            pck_ca_key=pck_ca[0],
            pck_ca_cert=pck_ca[1],
            pck_key=pck[0],
            pck_cert=pck[1],
            tcb_signing_key=tcb_signing[0],
            tcb_signing_cert=tcb_signing[1],
            attestation_key=attestation_key,
            qe_auth_data=qe_auth_data,
            qe_report=qe_report,
            qe_report_signature=certs.p256_sign_raw(pck[0], qe_report),
            user_data=hashlib.sha256(certs.der(pck[1])).digest()[:16] + bytes(4),
        )
        pki._signature_tail = pki._build_signature_tail()
        return pki

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write keys (PKCS#8 PEM, mode 0600), certificates (PEM) and pki.json to `directory`."""
        p = self.platform
        document = store.header("tdx") | {
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
                "mr_signer": self.qe.mr_signer.hex(),
                "mr_enclave": self.qe.mr_enclave.hex(),
                "isv_prod_id": self.qe.isv_prod_id,
                "isv_svn": self.qe.isv_svn,
                "misc_select": self.qe.misc_select.hex(),
                "attributes": self.qe.attributes.hex(),
                "auth_data": self.qe_auth_data.hex(),
            },
        }
        return store.save_pki(Path(directory), document, self._pairs())

    def _pairs(self) -> list[tuple[str, store.PrivateKey, x509.Certificate | None]]:
        return [
            ("root", self.root_key, self.root_cert),
            ("pck-ca", self.pck_ca_key, self.pck_ca_cert),
            ("pck", self.pck_key, self.pck_cert),
            ("tcb-signing", self.tcb_signing_key, self.tcb_signing_cert),
            ("attestation", self.attestation_key, None),
        ]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TdxTestPki:
        """The PKI `save` wrote; raises `SimulationError` naming the first bad file."""
        base = Path(directory)
        doc = store.PkiDocument(base, "tdx")
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

        def pair(stem: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
            cert = store.read_certificate(base / f"{stem}.pem")
            return store.read_ec_key(base / f"{stem}.key", ec.SECP256R1, cert), cert

        return cls._assemble(
            platform=platform,
            qe=qe,
            root=pair("root"),
            pck_ca=pair("pck-ca"),
            pck=pair("pck"),
            tcb_signing=pair("tcb-signing"),
            attestation_key=store.read_ec_key(base / "attestation.key", ec.SECP256R1),
            qe_auth_data=auth_data,
        )

    @staticmethod
    def shared() -> TdxTestPki:
        """One PKI per process, for tests and benchmarks that only need *a* trusted platform."""
        return _shared_tdx_pki()

    # -- trust anchor ------------------------------------------------------------------------

    @property
    def root_der(self) -> bytes:
        return certs.der(self.root_cert)

    @property
    def root_sha256(self) -> str:
        return hashlib.sha256(self.root_der).hexdigest()

    @property
    def root_pem(self) -> str:
        return certs.pem(self.root_cert)

    @property
    def pck_chain_pem(self) -> str:
        """Leaf, Platform CA, root, as quotes embed them."""
        return certs.pem(self.pck_cert, self.pck_ca_cert, self.root_cert)

    # -- quotes ------------------------------------------------------------------------------

    def _build_signature_tail(self) -> bytes:
        chain = self.pck_chain_pem.encode("ascii") + b"\0"
        pck_chain = struct.pack("<HI", CERT_TYPE_PCK_CHAIN, len(chain)) + chain
        qe_certification = (
            self.qe_report
            + self.qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + pck_chain
        )
        return (
            certs.raw_public_key(self.attestation_key.public_key())
            + struct.pack("<HI", CERT_TYPE_QE_REPORT, len(qe_certification))
            + qe_certification
        )

    def quote(
        self,
        report_data: bytes,
        *,
        mr_td: bytes = hashlib.sha384(b"trustee simulated TD").digest(),
        mr_config_id: bytes = bytes(48),
        mr_owner: bytes = bytes(48),
        mr_owner_config: bytes = bytes(48),
        rtmrs: Sequence[bytes] = (bytes(48),) * 4,
        td_attributes: int = 0x10000000,
        xfam: int = 0x602E7,
        mr_seam: bytes = hashlib.sha384(b"trustee simulated TDX module").digest(),
        version: int = 4,
        body_type: int = BODY_TYPE_TD10,
    ) -> bytes:
        """A complete quote binding `report_data`; shorter byte fields are zero-padded.

        `version` 4 always carries a TD report 1.0; for `version` 5 choose `body_type`
        2 (TD report 1.0) or 3 (TD report 1.5, with TEE_TCB_SVN2 = TEE_TCB_SVN).
        """
        if version == 4 and body_type != BODY_TYPE_TD10:
            raise ValueError(f"quote v4 carries body type 2 only, got body_type={body_type}")
        body_offset, body_size = body_layout(version, body_type)
        if len(rtmrs) != 4:
            raise ValueError(f"rtmrs must hold 4 registers, got {len(rtmrs)}")
        for label, number in (("td_attributes", td_attributes), ("xfam", xfam)):
            if not 0 <= number < 1 << 64:
                raise ValueError(f"{label} must fit in 64 bits, got {number:#x}")
        values = {
            "tee_tcb_svn": self.platform.tee_tcb_svn,
            "mr_seam": _padded("mr_seam", mr_seam, 48),
            "td_attributes": td_attributes.to_bytes(8, "little"),
            "xfam": xfam.to_bytes(8, "little"),
            "mr_td": _padded("mr_td", mr_td, 48),
            "mr_config_id": _padded("mr_config_id", mr_config_id, 48),
            "mr_owner": _padded("mr_owner", mr_owner, 48),
            "mr_owner_config": _padded("mr_owner_config", mr_owner_config, 48),
            "report_data": _padded("report_data", report_data, 64),
        }
        for index, rtmr in enumerate(rtmrs):
            values[f"rtmr_{index}"] = _padded(f"rtmr_{index}", rtmr, 48)
        if body_type == BODY_TYPE_TD15:
            values["tee_tcb_svn2"] = self.platform.tee_tcb_svn
        body = bytearray(body_size)
        for key, value in values.items():
            spec = TD_REPORT[key]
            body[spec.offset : spec.end] = value
        header = struct.pack(
            "<HHII16s20s",
            version,
            ATT_KEY_TYPE_ECDSA_P256,
            TEE_TYPE_TDX,
            0,
            INTEL_QE_VENDOR_ID,
            self.user_data,
        )
        descriptor = struct.pack("<HI", body_type, body_size) if version == 5 else b""
        signed = header + descriptor + bytes(body)
        if len(signed) != body_offset + body_size:
            raise ValueError(
                f"signed region is {len(signed)} bytes, expected {body_offset + body_size}"
            )
        signature_data = certs.p256_sign_raw(self.attestation_key, signed) + self._signature_tail
        return signed + struct.pack("<I", len(signature_data)) + signature_data

    # -- collateral --------------------------------------------------------------------------

    def tcb_info(self, now: datetime.datetime, *, status: str = "UpToDate") -> dict[str, Any]:
        """TDX TCB info v3 whose first level matching this platform has `status`.

        With `OutOfDate`, a newer level (PCE SVN one higher) is listed first as UpToDate, so
        the platform's own level is behind it, as after an Intel TCB recovery.
        """
        issue_date, next_update = _window(now)
        tee = self.platform.tee_tcb_svn
        zero_signer = "00" * 48

        def level(
            sgx: Sequence[int], pce_svn: int, tdx: bytes, date: str, status: str
        ) -> dict[str, Any]:
            out: dict[str, Any] = {
                "tcb": {
                    "sgxtcbcomponents": _components(sgx, SGX_COMPONENT_LABELS),
                    "pcesvn": pce_svn,
                    "tdxtcbcomponents": _components(tdx, TDX_COMPONENT_LABELS),
                },
                "tcbDate": date,
                "tcbStatus": status,
            }
            if status != "UpToDate":
                out["advisoryIDs"] = ["INTEL-SA-00000"]
            return out

        # Module SVNs are judged by the module identity, so the levels leave bytes 0-1 at zero
        # when the module major version is set, as Intel's TCB info does.
        tdx_components = (bytes(2) + tee[2:]) if tee[1] else tee
        older = [max(svn - 1, 0) for svn in self.platform.sgx_tcb_components]
        return {
            "id": "TDX",
            "version": 3,
            "issueDate": issue_date,
            "nextUpdate": next_update,
            "fmspc": self.platform.fmspc.hex().upper(),
            "pceId": self.platform.pce_id.hex().upper(),
            "tcbType": 0,
            "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
            "tdxModule": {
                "mrsigner": zero_signer,
                "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
            },
            "tdxModuleIdentities": [
                {
                    "id": f"TDX_{tee[1]:02X}",
                    "mrsigner": zero_signer,
                    "attributes": "0000000000000000",
                    "attributesMask": "FFFFFFFFFFFFFFFF",
                    "tcbLevels": [
                        {
                            "tcb": {"isvsvn": tee[0]},
                            "tcbDate": _tcb_date(now),
                            "tcbStatus": "UpToDate",
                        }
                    ],
                }
            ],
            "tcbLevels": [
                *(
                    [
                        level(
                            self.platform.sgx_tcb_components,
                            self.platform.pce_svn + 1,
                            tdx_components,
                            _tcb_date(now),
                            "UpToDate",
                        )
                    ]
                    if status != "UpToDate"
                    else []
                ),
                level(
                    self.platform.sgx_tcb_components,
                    self.platform.pce_svn,
                    tdx_components,
                    _tcb_date(now) if status == "UpToDate" else "2023-02-15T00:00:00Z",
                    status,
                ),
                level(older, 0, bytes(16), "2018-01-04T00:00:00Z", "OutOfDate"),
            ],
        }

    def qe_identity(self, now: datetime.datetime) -> dict[str, Any]:
        """TD_QE identity v2 matching the simulated QE (UpToDate)."""
        issue_date, next_update = _window(now)
        return {
            "id": "TD_QE",
            "version": 2,
            "issueDate": issue_date,
            "nextUpdate": next_update,
            "tcbEvaluationDataNumber": TCB_EVALUATION_DATA_NUMBER,
            "miscselect": self.qe.misc_select.hex().upper(),
            "miscselectMask": "FFFFFFFF",
            "attributes": bytes(
                b & m for b, m in zip(self.qe.attributes, _QE_ATTRIBUTES_MASK, strict=True)
            )
            .hex()
            .upper(),
            "attributesMask": _QE_ATTRIBUTES_MASK.hex().upper(),
            "mrsigner": self.qe.mr_signer.hex().upper(),
            "isvprodid": self.qe.isv_prod_id,
            "tcbLevels": [
                {
                    "tcb": {"isvsvn": self.qe.isv_svn},
                    "tcbDate": _tcb_date(now),
                    "tcbStatus": "UpToDate",
                }
            ],
        }

    def pck_crl_der(self, now: datetime.datetime) -> bytes:
        this_update, next_update = _window_times(now)
        # One revoked serial that is not ours, so a verifier's revocation lookup has work to do.
        revoked = certs.crl(
            issuer=self.pck_ca_cert,
            issuer_key=self.pck_ca_key,
            this_update=this_update,
            next_update=next_update,
            revoked_serials=[self.pck_cert.serial_number ^ 0x5A5A],
        )
        return revoked.public_bytes(serialization.Encoding.DER)

    def root_crl_der(self, now: datetime.datetime) -> bytes:
        this_update, next_update = _window_times(now)
        empty = certs.crl(
            issuer=self.root_cert,
            issuer_key=self.root_key,
            this_update=this_update,
            next_update=next_update,
        )
        return empty.public_bytes(serialization.Encoding.DER)

    def collateral(
        self, now: datetime.datetime | None = None, *, status: str = "UpToDate"
    ) -> dict[str, str]:
        """Quote collateral in dcap-qvl's JSON form, valid from 1 h before `now` for 30 days.

        TCB info and QE identity are signed over the exact compact JSON text placed in the
        result, which is what verifiers hash.
        """
        moment = certs.utc(now) if now else certs.now_utc()
        tcb_info = _compact(self.tcb_info(moment, status=status))
        qe_identity = _compact(self.qe_identity(moment))
        signing_chain = certs.pem(self.tcb_signing_cert, self.root_cert)
        return {
            "pck_crl_issuer_chain": certs.pem(self.pck_ca_cert, self.root_cert),
            "root_ca_crl": self.root_crl_der(moment).hex(),
            "pck_crl": self.pck_crl_der(moment).hex(),
            "tcb_info_issuer_chain": signing_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": certs.p256_sign_raw(
                self.tcb_signing_key, tcb_info.encode()
            ).hex(),
            "qe_identity_issuer_chain": signing_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": certs.p256_sign_raw(
                self.tcb_signing_key, qe_identity.encode()
            ).hex(),
        }


@functools.cache
def _shared_tdx_pki() -> TdxTestPki:
    return TdxTestPki.generate()


_QE_ATTRIBUTES_MASK = bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")


def build_qe_report(qe: QeIdentity, *, cpu_svn: bytes, report_data: bytes) -> bytes:
    """The 384-byte SGX report body of the quoting enclave; `report_data` is zero-padded."""
    values = {
        "cpu_svn": _padded("cpu_svn", cpu_svn, 16),
        "misc_select": _padded("misc_select", qe.misc_select, 4),
        "attributes": _padded("attributes", qe.attributes, 16),
        "mr_enclave": _padded("mr_enclave", qe.mr_enclave, 32),
        "mr_signer": _padded("mr_signer", qe.mr_signer, 32),
        "isv_prod_id": qe.isv_prod_id.to_bytes(2, "little"),
        "isv_svn": qe.isv_svn.to_bytes(2, "little"),
        "report_data": _padded("report_data", report_data, 64),
    }
    report = bytearray(QE_REPORT_SIZE)
    for key, value in values.items():
        spec = QE_REPORT[key]
        report[spec.offset : spec.end] = value
    return bytes(report)


# Intel labels some TCB components with the category and type of firmware they stand for.
SGX_COMPONENT_LABELS = {
    0: ("BIOS", "Early Microcode Update"),
    1: ("OS/VMM", "SGX Late Microcode Update"),
    2: ("OS/VMM", "TXT SINIT"),
    3: ("BIOS", None),
    4: ("BIOS", None),
    5: ("BIOS", None),
    7: ("OS/VMM", "SEAMLDR ACM"),
}
TDX_COMPONENT_LABELS = {
    0: ("OS/VMM", "TDX Module"),
    1: ("OS/VMM", "TDX Module"),
    2: ("OS/VMM", "TDX Late Microcode Update"),
}


def _components(
    svns: Sequence[int], labels: Mapping[int, tuple[str, str | None]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, svn in enumerate(svns):
        entry: dict[str, Any] = {"svn": svn}
        if index in labels:
            category, kind = labels[index]
            entry["category"] = category
            if kind is not None:
                entry["type"] = kind
        out.append(entry)
    return out


def _compact(value: dict[str, Any]) -> str:
    # Insertion order is Intel's key order; no whitespace, exactly like PCS serves it.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _window_times(now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    start = certs.utc(now) - datetime.timedelta(hours=1)
    return start, start + COLLATERAL_LIFETIME


def _window(now: datetime.datetime) -> tuple[str, str]:
    start, end = _window_times(now)
    return certs.intel_time(start), certs.intel_time(end)


def _tcb_date(now: datetime.datetime) -> str:
    day = certs.utc(now) - datetime.timedelta(days=30)
    return day.strftime("%Y-%m-%dT00:00:00Z")


def tdx_evidence(quote: bytes, cc_eventlog: bytes | None = None) -> dict[str, str | None]:
    """The TDX attester's evidence object: standard base64 quote and optional CC event log."""
    return {
        "cc_eventlog": base64.b64encode(cc_eventlog).decode("ascii") if cc_eventlog else None,
        "quote": base64.b64encode(quote).decode("ascii"),
    }


def tdx_evidence_json(quote: bytes, cc_eventlog: bytes | None = None) -> bytes:
    """`tdx_evidence` serialised compactly, as the attester sends it."""
    return json.dumps(tdx_evidence(quote, cc_eventlog), separators=(",", ":")).encode()


class SimulatedTdxAttester:
    """A client attester producing simulated TDX evidence (init data bound to MRCONFIGID)."""

    tee: str = "tdx"

    def __init__(
        self,
        pki: TdxTestPki | None = None,
        *,
        cc_eventlog: bytes | None = None,
        measurement: bytes | None = None,
    ) -> None:
        self.pki = pki or TdxTestPki.shared()
        self.cc_eventlog = cc_eventlog
        self.measurement = measurement

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        # The guest pads or truncates both values to the field size, as the real attester does.
        mr_config_id = (init_data_digest or b"")[:48]
        if self.measurement is not None:
            quote = self.pki.quote(
                report_data[:64], mr_config_id=mr_config_id, mr_td=self.measurement
            )
        else:
            quote = self.pki.quote(report_data[:64], mr_config_id=mr_config_id)
        return tdx_evidence(quote, self.cc_eventlog)
