"""Simulated Azure confidential VMs (az-snp-vtpm, az-tdx-vtpm): a vTPM behind an HCL report.

The guest's evidence is version 2 of the upstream attesters: a TPM quote over PCRs 0-23 whose
nonce is the report data, the HCL report (runtime claims with the AK and `user-data` = the
report data, bound by SHA-256 into the hardware report), and the hardware endorsement (the
VCEK for SNP, a TD quote for TDX). The hardware side reuses the SNP and TDX test PKIs, so a
server trusts these guests through the same test roots.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from trustee.simulate import hcl
from trustee.simulate.snp import SnpTestPki
from trustee.simulate.snp_layout import GENOA
from trustee.simulate.tdx import TdxTestPki
from trustee.simulate.vtpm import AttestationKey, pcr_bank

EVIDENCE_VERSION = 2
AK_FILE = "ak.key"
EK_FILE = "ek.key"
TD_MR_SEAM = hashlib.sha384(b"trustee simulated TDX module").digest()
TD_MR_TD = hashlib.sha384(b"trustee simulated TD").digest()
TD_ATTRIBUTES = 0x10000000
TD_XFAM = 0x602E7


def b64url(data: bytes) -> str:
    # serde_with's URL-safe base64 pads, and so do the Azure attesters' evidence files.
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass(frozen=True)
class VtpmKeys:
    """The vTPM's AK (signs quotes) and EK (listed in the runtime claims as real HCLs do)."""

    ak: AttestationKey
    ek: AttestationKey

    @classmethod
    def generate(cls) -> VtpmKeys:
        return cls(AttestationKey.generate(), AttestationKey.generate())

    @classmethod
    def load(cls, directory: Path) -> VtpmKeys:
        return cls(
            AttestationKey.load(directory / AK_FILE), AttestationKey.load(directory / EK_FILE)
        )

    def save(self, directory: Path) -> None:
        self.ak.save(directory / AK_FILE)
        self.ek.save(directory / EK_FILE)

    @property
    def vm_id(self) -> str:
        # Stable per vTPM, like the VM's unique id, without another saved value.
        return str(uuid.UUID(bytes=hashlib.sha256(self.ak.spki_der).digest()[:16])).upper()

    def var_data(self, report_data: bytes) -> bytes:
        return hcl.runtime_claims(
            self.ak.jwk(hcl.AK_KID), self.ek.jwk(hcl.EK_KID, "encrypt"), report_data, self.vm_id
        )

    def tpm_quote(
        self, report_data: bytes, pcrs: Mapping[int, bytes], init_data_digest: bytes | None
    ) -> dict[str, Any]:
        """The evidence's `tpm_quote`: hex signature and message, 24 hex PCRs."""
        bank = pcr_bank(pcrs, init_data_digest)
        message, signature = self.ak.quote(report_data, bank)
        return {
            "signature": signature.hex(),
            "message": message.hex(),
            "pcrs": [pcr.hex() for pcr in bank],
        }


@dataclass(frozen=True)
class AzSnpVtpmPki:
    snp: SnpTestPki
    keys: VtpmKeys

    @classmethod
    def generate(cls, product: str = GENOA) -> AzSnpVtpmPki:
        return cls(SnpTestPki.generate(product), VtpmKeys.generate())

    def save(self, directory: str | os.PathLike[str]) -> Path:
        target = self.snp.save(directory)
        self.keys.save(target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AzSnpVtpmPki:
        return cls(SnpTestPki.load(directory), VtpmKeys.load(Path(directory)))


@dataclass(frozen=True)
class AzTdxVtpmPki:
    tdx: TdxTestPki
    keys: VtpmKeys

    @classmethod
    def generate(cls) -> AzTdxVtpmPki:
        return cls(TdxTestPki.generate(), VtpmKeys.generate())

    def save(self, directory: str | os.PathLike[str]) -> Path:
        target = self.tdx.save(directory)
        self.keys.save(target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AzTdxVtpmPki:
        return cls(TdxTestPki.load(directory), VtpmKeys.load(Path(directory)))


def td_report(
    tdx: TdxTestPki, report_data: bytes, mr_td: bytes, mr_config_id: bytes = bytes(48)
) -> bytes:
    """A 1024-byte TDREPORT describing the same TD as the quote `tdx.quote` makes for it."""
    tee_tcb_info = (
        b"\x01" + bytes(7) + tdx.platform.tee_tcb_svn + TD_MR_SEAM + bytes(48) + bytes(8)
    ).ljust(239, b"\0")
    rtmrs = bytes(48 * 4)
    td_info = (
        TD_ATTRIBUTES.to_bytes(8, "little")
        + TD_XFAM.to_bytes(8, "little")
        + mr_td
        + mr_config_id
        + bytes(96)
        + rtmrs
    ).ljust(512, b"\0")
    mac_struct = (
        bytes((0x81, 0, 0, 0))
        + bytes(12)
        + bytes(tdx.platform.sgx_tcb_components)
        + hashlib.sha384(tee_tcb_info).digest()
        + hashlib.sha384(td_info).digest()
        + report_data
        + bytes(32)
    )
    # Only the CPU can check the MAC; any 32 bytes stand in for it.
    mac = hashlib.sha256(mac_struct).digest()
    return mac_struct + mac + tee_tcb_info + bytes(17) + td_info


Pki = TypeVar("Pki", "AzSnpVtpmPki", "AzTdxVtpmPki")


class _AzureGuest(Generic[Pki]):
    """What both Azure guests hold: their PKI, the launch digest and the PCRs they report."""

    default_measurement = bytes(48)

    def __init__(
        self,
        pki: Pki,
        *,
        measurement: bytes | None = None,
        pcrs: Mapping[int, bytes] | None = None,
    ) -> None:
        self.pki: Pki = pki
        self.measurement = measurement or self.default_measurement
        self.pcrs = dict(pcrs or {})


class SimulatedAzSnpVtpmAttester(_AzureGuest[AzSnpVtpmPki]):
    """An Azure SEV-SNP CVM guest; init-data extends PCR8."""

    tee: str = "az-snp-vtpm"

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        keys = self.pki.keys
        var_data = keys.var_data(report_data)
        report = self.pki.snp.report(
            hcl.var_data_report_data(var_data), measurement=self.measurement, vmpl=0
        )
        return {
            "version": EVIDENCE_VERSION,
            "tpm_quote": keys.tpm_quote(report_data, self.pcrs, init_data_digest),
            "hcl_report": b64url(hcl.build(report, hcl.REPORT_TYPE_SNP, var_data)),
            "vcek": b64url(self.pki.snp.vcek_der),
        }


class SimulatedAzTdxVtpmAttester(_AzureGuest[AzTdxVtpmPki]):
    """An Azure TDX CVM guest; init-data extends PCR8 (MRCONFIGID stays zero, as on Azure)."""

    tee: str = "az-tdx-vtpm"
    default_measurement = TD_MR_TD

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        keys, tdx = self.pki.keys, self.pki.tdx
        var_data = keys.var_data(report_data)
        bound = hcl.var_data_report_data(var_data)
        report = td_report(tdx, bound, self.measurement)
        quote = tdx.quote(
            bound,
            mr_td=self.measurement,
            mr_seam=TD_MR_SEAM,
            td_attributes=TD_ATTRIBUTES,
            xfam=TD_XFAM,
        )
        return {
            "version": EVIDENCE_VERSION,
            "tpm_quote": keys.tpm_quote(report_data, self.pcrs, init_data_digest),
            "hcl_report": b64url(hcl.build(report, hcl.REPORT_TYPE_TDX, var_data)),
            "td_quote": b64url(quote),
        }
