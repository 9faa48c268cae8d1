"""Evidence producers for the KBS client.

An attester turns the report data the client computed (the runtime-data digest) into the evidence
JSON its TEE type's verifier expects. On a host without TEE hardware the sample attesters are
what the upstream client falls back to, so the server's CI-path verifiers can be exercised
anywhere.

Detection is table-driven. In front of the sample fallback sit the simulated TDX, SNP, Azure
vTPM (az-snp-vtpm, az-tdx-vtpm) and TPM attesters,
chosen by TRUSTEE_SIMULATED_TEE and signing with the test PKI saved in TRUSTEE_SIMULATED_PKI
(`trustee simulate init` makes both the PKI and the server's trust files), so the real
verification path runs with fresh nonces on any host.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trustee.client.errors import KbsClientError
from trustee.crypto.b64 import b64std_encode
from trustee.simulate import (
    SgxTestPki,
    SimulatedSgxAttester,
    SimulatedSnpAttester,
    SimulatedTdxAttester,
    SimulationError,
    SnpTestPki,
    TdxTestPki,
)
from trustee.simulate.azure import (
    AzSnpVtpmPki,
    AzTdxVtpmPki,
    SimulatedAzSnpVtpmAttester,
    SimulatedAzTdxVtpmAttester,
)
from trustee.simulate.tpm import SimulatedTpmAttester, TpmTestPki

# The upstream device attester is switched on by the mere presence of this variable (any value,
# even empty), so tests and CI can opt in without a real accelerator.
SAMPLE_DEVICE_ENV = "ENABLE_SAMPLE_DEVICE"


class Attester(Protocol):
    """Produces evidence for one TEE; `tee` is its kbs-types spelling on the wire."""

    tee: str

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        """Evidence binding `report_data` (and, where the TEE has a field for it, init-data)."""
        ...


class SampleAttester:
    """The always-available primary test attester (verifier class `cpu`)."""

    tee: str = "sample"
    svn: str = "1"

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        # The sample evidence has no init-data field: the sample verifier never checks it.
        return {"svn": self.svn, "report_data": b64std_encode(report_data)}


class SampleDeviceAttester(SampleAttester):
    """The test device attester (verifier class `gpu`), same shape with another svn."""

    tee = "sampledevice"
    svn = "2"


@dataclass(frozen=True)
class AttesterSet:
    """The primary attester (its tee goes into /auth) and the additional device attesters."""

    primary: Attester
    devices: tuple[Attester, ...] = ()


Detector = Callable[[Mapping[str, str]], bool]
Factory = Callable[[Mapping[str, str]], Attester]

# A simulated TDX/SGX/SNP guest whose evidence is signed by a PKI `trustee simulate init` saved.
SIMULATED_TEE_ENV = "TRUSTEE_SIMULATED_TEE"
SIMULATED_PKI_ENV = "TRUSTEE_SIMULATED_PKI"
SIMULATED_SNP_CA_ENV = "TRUSTEE_SIMULATED_SNP_CA"
# The launch digest the simulated guest reports (TDX MRTD, SNP MEASUREMENT: 48 bytes; SGX
# MRENCLAVE: 32 bytes), in hex; the Azure guests report it in their hardware report, a plain
# TPM has none.
SIMULATED_MEASUREMENT_ENV = "TRUSTEE_SIMULATED_MEASUREMENT"
# PCR values a vTPM/TPM guest reports, `INDEX=HEX[,INDEX=HEX…]` (32 bytes each; PCR8 is the
# init-data PCR and cannot be set).
SIMULATED_PCRS_ENV = "TRUSTEE_SIMULATED_PCRS"
SIMULATED_TEES = ("tdx", "snp", "sgx", "az-snp-vtpm", "az-tdx-vtpm", "tpm")
TPM_TEES = ("az-snp-vtpm", "az-tdx-vtpm", "tpm")
SimulatedPki = TdxTestPki | SnpTestPki | SgxTestPki | AzSnpVtpmPki | AzTdxVtpmPki | TpmTestPki
_MEASUREMENT_SIZE = {"sgx": 32}


def _always(env: Mapping[str, str]) -> bool:
    return True


def _sample_device_enabled(env: Mapping[str, str]) -> bool:
    return SAMPLE_DEVICE_ENV in env


def _simulated_tee_requested(env: Mapping[str, str]) -> bool:
    # An empty value counts as unset, so `TRUSTEE_SIMULATED_TEE= trustee-client …` opts out.
    return bool(env.get(SIMULATED_TEE_ENV))


def _client_error(message: str) -> Exception:
    # The client CLI reports KbsClientError as one line.
    return KbsClientError(f"simulated attester: {message}")


_PKI_LOADERS: dict[str, Callable[[str], SimulatedPki]] = {
    "tdx": TdxTestPki.load,
    "snp": SnpTestPki.load,
    "sgx": SgxTestPki.load,
    "az-snp-vtpm": AzSnpVtpmPki.load,
    "az-tdx-vtpm": AzTdxVtpmPki.load,
    "tpm": TpmTestPki.load,
}


@functools.lru_cache(maxsize=8)
def _load_pki(tee: str, directory: str) -> SimulatedPki:
    # Loading parses several keys and re-signs the QE report: once per process is enough, and
    # benchmarks build evidence in a loop.
    return _PKI_LOADERS[tee](directory)


def _measurement(env: Mapping[str, str], tee: str) -> bytes | None:
    text = env.get(SIMULATED_MEASUREMENT_ENV, "")
    if not text:
        return None
    if tee == "tpm":
        raise _client_error(
            f"{SIMULATED_MEASUREMENT_ENV}: a tpm guest has no launch digest; set PCRs with "
            f"{SIMULATED_PCRS_ENV}"
        )
    try:
        measurement = bytes.fromhex(text)
    except ValueError:
        measurement = b""
    size = _MEASUREMENT_SIZE.get(tee, 48)
    if len(measurement) != size:
        raise _client_error(
            f"{SIMULATED_MEASUREMENT_ENV} must be {2 * size} hex digits ({size} bytes) for {tee}"
        )
    return measurement


def _pcrs(env: Mapping[str, str], tee: str) -> dict[int, bytes]:
    text = env.get(SIMULATED_PCRS_ENV, "")
    if not text:
        return {}
    if tee not in TPM_TEES:
        raise _client_error(f"{SIMULATED_PCRS_ENV}: a {tee} guest has no TPM")
    pcrs: dict[int, bytes] = {}
    for item in text.split(","):
        index, _, value = item.strip().partition("=")
        try:
            number, digest = int(index), bytes.fromhex(value)
        except ValueError:
            number, digest = -1, b""
        if not 0 <= number < 24 or number == 8 or len(digest) != 32:
            raise _client_error(
                f"{SIMULATED_PCRS_ENV}: {item.strip()!r} is not INDEX=HEX with INDEX 0-23 "
                "but 8 (the init-data PCR) and 64 hex digits"
            )
        pcrs[number] = digest
    return pcrs


def simulated_attester(env: Mapping[str, str]) -> Attester:
    tee = env.get(SIMULATED_TEE_ENV, "")
    if tee not in SIMULATED_TEES:
        raise _client_error(
            f"{SIMULATED_TEE_ENV} is {tee!r}, expected "
            + ", ".join(repr(t) for t in SIMULATED_TEES[:-1])
            + f" or {SIMULATED_TEES[-1]!r}"
        )
    directory = env.get(SIMULATED_PKI_ENV, "")
    if not directory:
        raise _client_error(
            f"{SIMULATED_TEE_ENV}={tee} needs {SIMULATED_PKI_ENV} set to the pki directory "
            "`trustee simulate init` wrote (DIR/pki)"
        )
    include_ca = env.get(SIMULATED_SNP_CA_ENV, "")
    if include_ca not in ("", "0", "1"):
        raise _client_error(f"{SIMULATED_SNP_CA_ENV} is {include_ca!r}, expected '1' or '0'")
    measurement = _measurement(env, tee)
    pcrs = _pcrs(env, tee)
    try:
        pki = _load_pki(tee, str(Path(directory).absolute()))
    except SimulationError as exc:
        raise _client_error(f"{SIMULATED_PKI_ENV}: {exc}") from None
    if isinstance(pki, SgxTestPki):
        return SimulatedSgxAttester(pki, mr_enclave=measurement)
    if isinstance(pki, TdxTestPki):
        return SimulatedTdxAttester(pki, measurement=measurement)
    if isinstance(pki, SnpTestPki):
        return SimulatedSnpAttester(pki, include_ca=include_ca == "1", measurement=measurement)
    if isinstance(pki, AzSnpVtpmPki):
        return SimulatedAzSnpVtpmAttester(pki, measurement=measurement, pcrs=pcrs)
    if isinstance(pki, AzTdxVtpmPki):
        return SimulatedAzTdxVtpmAttester(pki, measurement=measurement, pcrs=pcrs)
    return SimulatedTpmAttester(pki, pcrs=pcrs)


def _sample(env: Mapping[str, str]) -> Attester:
    return SampleAttester()


def _sample_device(env: Mapping[str, str]) -> Attester:
    return SampleDeviceAttester()


# First match wins; the sample attester is the catch-all and therefore last.
PRIMARY_DETECTORS: Sequence[tuple[Detector, Factory]] = (
    (_simulated_tee_requested, simulated_attester),
    (_always, _sample),
)

# Every matching device contributes evidence.
DEVICE_DETECTORS: Sequence[tuple[Detector, Factory]] = ((_sample_device_enabled, _sample_device),)


def detect_attesters(env: Mapping[str, str] | None = None) -> AttesterSet:
    """The attesters this host offers, decided from the environment (default: os.environ)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    primary = next(factory(environ) for detect, factory in PRIMARY_DETECTORS if detect(environ))
    devices = tuple(factory(environ) for detect, factory in DEVICE_DETECTORS if detect(environ))
    return AttesterSet(primary=primary, devices=devices)
