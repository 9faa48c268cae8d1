"""A simulated guest with a plain TPM 2.0 (TEE `tpm`): a quote signed by an AK nobody vouches for.

Nothing chains the AK to a vendor: the server trusts a guest because an admin registered its
AK public key as a reference value (`trusted_aks`), which is what the verifier's `ak_public`
claim is compared with.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustee.simulate import store
from trustee.simulate.vtpm import AttestationKey, pcr_bank, tpmt_signature

# The nonce a TPM quote carries: the report data cut or zero-padded to 32 bytes, as the
# upstream attester does.
REPORT_DATA_SIZE = 32
AK_FILE = "ak.key"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class TpmTestPki:
    ak: AttestationKey

    @classmethod
    def generate(cls) -> TpmTestPki:
        return cls(AttestationKey.generate())

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ak.key (PKCS#8 PEM, mode 0600) and pki.json to `directory`."""
        return store.save_pki(Path(directory), store.header("tpm"), [("ak", self.ak.key, None)])

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TpmTestPki:
        base = Path(directory)
        store.PkiDocument(base, "tpm")
        return cls(AttestationKey.load(base / AK_FILE))


def tpm_evidence(
    ak: AttestationKey,
    report_data: bytes,
    pcrs: Mapping[int, bytes] | None = None,
    init_data_digest: bytes | None = None,
) -> dict[str, Any]:
    """The TPM attester's evidence: base64 TPMT_SIGNATURE and TPMS_ATTEST, hex PCRs, the AK."""
    bank = pcr_bank(pcrs or {}, init_data_digest)
    nonce = report_data[:REPORT_DATA_SIZE].ljust(REPORT_DATA_SIZE, b"\0")
    message, signature = ak.quote(nonce, bank)
    return {
        "tpm_quote": {
            "signature": _b64(tpmt_signature(signature)),
            "message": _b64(message),
            "pcrs": [pcr.hex() for pcr in bank],
        },
        "ak_public": ak.spki_b64,
    }


class SimulatedTpmAttester:
    """A guest with a TPM; init-data extends PCR8."""

    tee: str = "tpm"

    def __init__(self, pki: TpmTestPki, *, pcrs: Mapping[int, bytes] | None = None) -> None:
        self.pki = pki
        self.pcrs = dict(pcrs or {})

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        return tpm_evidence(self.pki.ak, report_data, self.pcrs, init_data_digest)
