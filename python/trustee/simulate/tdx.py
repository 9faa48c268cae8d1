"""Simulated Intel TDX guest: DCAP-format quotes and collateral from a run-time test PKI.

The platform (`tdx_platform`), its certificate chain (`tdx_chain`), the quote format
(`tdx_quote`) and the collateral (`tdx_collateral`) live beside this module; `TdxTestPki` ties
them to one set of keys, saved and loaded as a directory.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trustee.simulate import certs, store, tdx_collateral, tdx_platform
from trustee.simulate.tdx_chain import FILE_STEMS, TdxChain, issue_chain, new_key, read_chain
from trustee.simulate.tdx_layout import BODY_TYPE_TD10, BODY_TYPE_TD15, body_layout
from trustee.simulate.tdx_platform import QeIdentity, TdxPlatform
from trustee.simulate.tdx_quote import build_qe_report, padded, sign_quote, signature_tail


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
        tdx_platform.check_platform(platform)
        start = certs.utc(now) if now else certs.now_utc()
        return cls._assemble(
            platform=platform,
            qe=qe,
            chain=issue_chain(platform, start - datetime.timedelta(days=1)),
            attestation_key=new_key(),
            qe_auth_data=bytes(range(32)),
        )

    @classmethod
    def _assemble(
        cls,
        *,
        platform: TdxPlatform,
        qe: QeIdentity,
        chain: TdxChain,
        attestation_key: ec.EllipticCurvePrivateKey,
        qe_auth_data: bytes,
    ) -> TdxTestPki:
        # The QE report is derived, not stored, so a saved PKI cannot hold a stale one.
        raw_key = certs.raw_public_key(attestation_key.public_key())
        binding = hashlib.sha256(raw_key + qe_auth_data).digest()
        qe_report = build_qe_report(
            qe, cpu_svn=bytes(platform.sgx_tcb_components), report_data=binding
        )
        pck_key, pck_cert = chain.pck
        pki = cls(
            platform=platform,
            qe=qe,
            root_key=chain.root[0],
            root_cert=chain.root[1],
            pck_ca_key=chain.pck_ca[0],
            pck_ca_cert=chain.pck_ca[1],
            pck_key=pck_key,
            pck_cert=pck_cert,
            tcb_signing_key=chain.tcb_signing[0],
            tcb_signing_cert=chain.tcb_signing[1],
            attestation_key=attestation_key,
            qe_auth_data=qe_auth_data,
            qe_report=qe_report,
            qe_report_signature=certs.p256_sign_raw(pck_key, qe_report),
            user_data=hashlib.sha256(certs.der(pck_cert)).digest()[:16] + bytes(4),
        )
        pki._signature_tail = signature_tail(
            attestation_key=attestation_key,
            qe_report=qe_report,
            qe_report_signature=pki.qe_report_signature,
            qe_auth_data=qe_auth_data,
            pck_chain_pem=pki.pck_chain_pem,
        )
        return pki

    @property
    def chain(self) -> TdxChain:
        return TdxChain(
            root=(self.root_key, self.root_cert),
            pck_ca=(self.pck_ca_key, self.pck_ca_cert),
            pck=(self.pck_key, self.pck_cert),
            tcb_signing=(self.tcb_signing_key, self.tcb_signing_cert),
        )

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write keys (PKCS#8 PEM, mode 0600), certificates (PEM) and pki.json to `directory`."""
        files: list[tuple[str, store.PrivateKey, x509.Certificate | None]]
        files = [
            (stem, key, cert) for stem, (key, cert) in zip(FILE_STEMS, self.chain, strict=True)
        ]
        files.append(("attestation", self.attestation_key, None))
        document = tdx_platform.document(self.platform, self.qe, self.qe_auth_data)
        return store.save_pki(Path(directory), document, files)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TdxTestPki:
        """The PKI `save` wrote; raises `SimulationError` naming the first bad file."""
        base = Path(directory)
        platform, qe, auth_data = tdx_platform.read_document(store.PkiDocument(base, "tdx"))
        return cls._assemble(
            platform=platform,
            qe=qe,
            chain=read_chain(base),
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

    # -- quotes and collateral ---------------------------------------------------------------

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
        layout = body_layout(version, body_type)
        if len(rtmrs) != 4:
            raise ValueError(f"rtmrs must hold 4 registers, got {len(rtmrs)}")
        for label, number in (("td_attributes", td_attributes), ("xfam", xfam)):
            if not 0 <= number < 1 << 64:
                raise ValueError(f"{label} must fit in 64 bits, got {number:#x}")
        body = {
            "tee_tcb_svn": self.platform.tee_tcb_svn,
            "mr_seam": padded("mr_seam", mr_seam, 48),
            "td_attributes": td_attributes.to_bytes(8, "little"),
            "xfam": xfam.to_bytes(8, "little"),
            "mr_td": padded("mr_td", mr_td, 48),
            "mr_config_id": padded("mr_config_id", mr_config_id, 48),
            "mr_owner": padded("mr_owner", mr_owner, 48),
            "mr_owner_config": padded("mr_owner_config", mr_owner_config, 48),
            "report_data": padded("report_data", report_data, 64),
        }
        for index, rtmr in enumerate(rtmrs):
            body[f"rtmr_{index}"] = padded(f"rtmr_{index}", rtmr, 48)
        if body_type == BODY_TYPE_TD15:
            body["tee_tcb_svn2"] = self.platform.tee_tcb_svn
        return sign_quote(
            self.attestation_key,
            version=version,
            body_type=body_type,
            layout=layout,
            body=body,
            user_data=self.user_data,
            tail=self._signature_tail,
        )

    def collateral(
        self, now: datetime.datetime | None = None, *, status: str = "UpToDate"
    ) -> dict[str, str]:
        """Quote collateral in dcap-qvl's JSON form (see `tdx_collateral.collateral`)."""
        return tdx_collateral.collateral(self.platform, self.qe, self.chain, now, status=status)


@functools.cache
def _shared_tdx_pki() -> TdxTestPki:
    return TdxTestPki.generate()


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
