"""Simulated Intel SGX enclave (as Occlum and Gramine present one): DCAP quote v3 and SGX
collateral from the same test PKI as the simulated TDX platform (root, PCK chain, quoting
enclave, TCB signing key), saved and loaded in the same form."""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustee.simulate import tdx_collateral
from trustee.simulate.sgx_quote import enclave_report, sign_sgx_quote
from trustee.simulate.tdx import TdxTestPki
from trustee.simulate.tdx_quote import signature_tail

DEFAULT_MR_ENCLAVE = hashlib.sha256(b"trustee simulated enclave").digest()
DEFAULT_MR_SIGNER = hashlib.sha256(b"trustee simulated enclave signer").digest()


@dataclass
class SgxTestPki:
    """The TDX test PKI, quoting for an SGX enclave; build with `generate()` or `load()`."""

    platform_pki: TdxTestPki
    _tail: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        p = self.platform_pki
        # Everything after the quote signature is fixed per platform, so it is built once.
        self._tail = signature_tail(
            attestation_key=p.attestation_key,
            qe_report=p.qe_report,
            qe_report_signature=p.qe_report_signature,
            qe_auth_data=p.qe_auth_data,
            pck_chain_pem=p.pck_chain_pem,
            wrapped=False,
        )

    @classmethod
    def generate(cls, *, now: datetime.datetime | None = None) -> SgxTestPki:
        return cls(TdxTestPki.generate(now=now))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        return self.platform_pki.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SgxTestPki:
        """The PKI `save` wrote; raises `SimulationError` naming the first bad file."""
        return cls(TdxTestPki.load(directory))

    @staticmethod
    def shared() -> SgxTestPki:
        """One PKI per process, for tests and benchmarks that only need *a* trusted platform."""
        return _shared_sgx_pki()

    @property
    def root_der(self) -> bytes:
        return self.platform_pki.root_der

    @property
    def root_pem(self) -> str:
        return self.platform_pki.root_pem

    def quote(
        self,
        report_data: bytes,
        *,
        mr_enclave: bytes = DEFAULT_MR_ENCLAVE,
        mr_signer: bytes = DEFAULT_MR_SIGNER,
        config_id: bytes = b"",
        isv_prod_id: int = 0,
        isv_svn: int = 0,
    ) -> bytes:
        """A complete SGX quote v3 binding `report_data` (at most 64 bytes, zero-padded)."""
        p = self.platform_pki
        body = enclave_report(
            cpu_svn=bytes(p.platform.sgx_tcb_components),
            mr_enclave=mr_enclave,
            mr_signer=mr_signer,
            report_data=report_data,
            config_id=config_id,
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
        )
        return sign_sgx_quote(
            p.attestation_key,
            qe_svn=p.qe.isv_svn,
            pce_svn=p.platform.pce_svn,
            user_data=p.user_data,
            body=body,
            tail=self._tail,
        )

    def collateral(
        self, now: datetime.datetime | None = None, *, status: str = "UpToDate"
    ) -> dict[str, str]:
        """SGX collateral in dcap-qvl's JSON form (see `tdx_collateral.collateral`)."""
        p = self.platform_pki
        return tdx_collateral.collateral(p.platform, p.qe, p.chain, now, status=status, tee="sgx")


@functools.cache
def _shared_sgx_pki() -> SgxTestPki:
    return SgxTestPki(TdxTestPki.shared())


def sgx_evidence(quote: bytes) -> dict[str, str]:
    """The SGX DCAP attester's evidence object: the quote in standard base64."""
    return {"quote": base64.b64encode(quote).decode("ascii")}


class SimulatedSgxAttester:
    """A client attester producing simulated SGX evidence (init data bound to CONFIGID)."""

    tee: str = "sgx"

    def __init__(self, pki: SgxTestPki | None = None, *, mr_enclave: bytes | None = None) -> None:
        self.pki = pki or SgxTestPki.shared()
        self.mr_enclave = mr_enclave or DEFAULT_MR_ENCLAVE

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        # The enclave pads or truncates both values to the 64-byte fields, as the real one does.
        quote = self.pki.quote(
            report_data[:64],
            mr_enclave=self.mr_enclave,
            config_id=(init_data_digest or b"")[:64],
        )
        return sgx_evidence(quote)
