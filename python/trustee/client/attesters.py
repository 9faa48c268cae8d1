"""Evidence producers for the KBS client.

An attester turns the report data the client computed (the runtime-data digest) into the evidence
JSON its TEE type's verifier expects. On a host without TEE hardware only the sample attesters
exist; they are what the upstream client falls back to, so the server's CI-path verifiers can be
exercised anywhere.

Detection is table-driven so that simulated TDX/SNP attesters (quotes signed by a run-time test
PKI) can be registered in front of the sample fallback without touching the client.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trustee.crypto.b64 import b64std_encode

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
Factory = Callable[[], Attester]


def _always(env: Mapping[str, str]) -> bool:
    return True


def _sample_device_enabled(env: Mapping[str, str]) -> bool:
    return SAMPLE_DEVICE_ENV in env


# First match wins; the sample attester is the catch-all and therefore last.
PRIMARY_DETECTORS: Sequence[tuple[Detector, Factory]] = ((_always, SampleAttester),)

# Every matching device contributes evidence.
DEVICE_DETECTORS: Sequence[tuple[Detector, Factory]] = (
    (_sample_device_enabled, SampleDeviceAttester),
)


def detect_attesters(env: Mapping[str, str] | None = None) -> AttesterSet:
    """The attesters this host offers, decided from the environment (default: os.environ)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    primary = next(factory() for detect, factory in PRIMARY_DETECTORS if detect(environ))
    devices = tuple(factory() for detect, factory in DEVICE_DETECTORS if detect(environ))
    return AttesterSet(primary=primary, devices=devices)
