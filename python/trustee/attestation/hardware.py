"""Evidence verification: fetch what the evidence lacks, then one call into the Rust core.

The Rust verifiers do no I/O. For TDX and SGX they need the platform's DCAP collateral (TCB
info, QE identity, CRLs), keyed by the TEE, FMSPC and PCK CA type read from the quote; for SNP
they need only the VCEK when the evidence carries none (AMD's ARK/ASK/ASVK for Milan, Genoa and
Turin are built into the Rust core and admitted by their pinned fingerprints). az-tdx-vtpm
needs TDX collateral for the TD quote inside; az-snp-vtpm carries its VCEK and needs nothing
fetched, but verifies a full SNP report, so it too is a hardware TEE (run off the event loop).
This module asks the configured sources for exactly that, then verifies; the other TEEs need
nothing fetched. Which TEEs are the hardware ones is the Rust core's to say.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trustee import _core, offload
from trustee.attestation.observers import EventSink, NoEvents, NoMetrics, VerifierMetrics
from trustee.audit import event
from trustee.audit.dispatcher import AuditRequiredSinkError
from trustee.collateral.errors import CollateralError
from trustee.collateral.lazy import LazyTdxSource
from trustee.collateral.spec import PRODUCTS as SNP_PRODUCTS

if TYPE_CHECKING:
    from trustee.collateral.snp import VekSource
    from trustee.collateral.tdx import TdxCollateralSource

# Asked once: their verification is heavy enough to run off the event loop.
_HARDWARE_TEES = frozenset(_core.Verifiers.hardware_tees())


class HardwareInputError(Exception):
    """What the evidence needs could not be obtained; the message says what and from where."""


@dataclass(frozen=True)
class Inputs:
    """Everything one verification needs beside the evidence."""

    now: int
    tdx_collateral: bytes | None = None
    snp_certs: list[bytes] = field(default_factory=list)

    def arguments(self) -> tuple[int, bytes | None, list[bytes]]:
        """The trailing arguments of `_core.Verifiers.verify`."""
        return self.now, self.tdx_collateral, self.snp_certs


class HardwareVerifier:
    """Verification of every supported TEE, with the collateral and VEK sources the hardware
    ones (TDX, SNP) need; one per attestation service."""

    def __init__(
        self,
        *,
        tdx_source: TdxCollateralSource | None = None,
        vek_source: VekSource | None = None,
        test_anchors: Sequence[bytes] = (),
        snp_allow_nonzero_vmpl: bool = False,
        tpm_ak_roots: Sequence[bytes] = (),
        clock: Callable[[], float] | None = None,
        audit: EventSink | None = None,
        metrics: VerifierMetrics | None = None,
    ) -> None:
        self.tdx_source = tdx_source
        self.vek_source = vek_source
        # Test anchors are trusted by fingerprint; the RSA ones (a test ARK/ASK) are also
        # handed to the SNP verifier as certificates, so they need not travel in the evidence.
        self._test_anchors = list(test_anchors)
        self._snp_anchors = [der for der in self._test_anchors if _is_rsa_certificate(der)]
        self._core_settings = (
            [hashlib.sha256(der).digest() for der in self._test_anchors],
            snp_allow_nonzero_vmpl,
            list(tpm_ak_roots),
        )
        self._core = self.new_core()
        self._clock = clock or time.time
        # Where collateral notices and fetch counts go.
        self.audit: EventSink = audit or NoEvents()
        self.metrics: VerifierMetrics = metrics or NoMetrics()
        self._fetched: dict[str, float] = {}
        self._expired_reported: dict[str, float] = {}

    def new_core(self) -> _core.Verifiers:
        """A native verifier trusting what this one trusts, with empty memo caches."""
        return _core.Verifiers(*self._core_settings)

    def now(self) -> int:
        return int(self._clock())

    def with_snp_certs(self, certs: list[bytes]) -> Inputs:
        """Inputs for SNP evidence whose certificates the caller supplies (nothing fetched)."""
        return Inputs(now=self.now(), snp_certs=[*self._snp_anchors, *certs])

    async def inputs(self, tee: str, evidence: bytes) -> Inputs:
        now = self.now()
        if tee in ("tdx", "sgx", "az-tdx-vtpm"):
            # An Azure TDX guest's TD quote is appraised with the platform's TDX collateral.
            dcap_tee = "tdx" if tee == "az-tdx-vtpm" else tee
            return Inputs(now=now, tdx_collateral=await self._dcap_collateral(dcap_tee, evidence))
        if tee == "snp":
            return Inputs(now=now, snp_certs=await self._snp_certs(evidence))
        if tee == "az-snp-vtpm":
            # The VCEK travels in the evidence and AMD's ASK/ARK are built in: only the
            # configured test anchors are added.
            return self.with_snp_certs([])
        return Inputs(now=now)

    def verify(
        self,
        tee: str,
        evidence: bytes,
        expected_report_data: bytes | None,
        expected_init_data_hash: bytes | None,
        inputs: Inputs,
    ) -> list[_core.Claims]:
        """One `Claims` per component; raises `_core.VerifierError`."""
        args = (tee, evidence, expected_report_data, expected_init_data_hash, *inputs.arguments())
        return self._core.verify(*args)

    async def verify_offloaded(
        self,
        tee: str,
        evidence: bytes,
        expected_report_data: bytes | None,
        expected_init_data_hash: bytes | None,
    ) -> list[_core.Claims]:
        """`verify` with what the evidence lacks fetched first; hardware evidence is checked
        on an offload thread (see `offload.Offload.call`). Raises HardwareInputError or
        `_core.VerifierError`."""
        if tee not in _HARDWARE_TEES:
            # The sample verifiers take microseconds and need nothing fetched: a hand-off (or
            # even building the inputs) would cost more than the check.
            return self._core.verify(
                tee, evidence, expected_report_data, expected_init_data_hash, self.now(), None, []
            )
        inputs = await self.inputs(tee, evidence)
        args = (tee, evidence, expected_report_data, expected_init_data_hash, *inputs.arguments())
        core = self._core
        return await offload.DEFAULT.call(
            lambda job_id: core.submit_verify(job_id, *args), lambda: core.verify(*args)
        )

    async def _dcap_collateral(self, tee: str, evidence: bytes) -> bytes | None:
        fmspc, ca, _pce_id, kind = _core.tdx_collateral_key(evidence)
        if kind != tee:
            # The other TEE's quote: the verifier refuses it by name, nothing to fetch.
            return None
        label = tee.upper()
        if self.tdx_source is None:
            raise HardwareInputError(
                f"no {label} collateral source is configured (quote FMSPC {fmspc}, {ca} CA); "
                "set [attestation_service.verifier_config] collateral or dcap_verifier"
            )
        # TDX keys keep their established form; SGX ones say their TEE.
        key = f"{fmspc}/{ca}" if tee == "tdx" else f"{tee}/{fmspc}/{ca}"
        try:
            collateral = await self.tdx_source.get(fmspc, ca, tee)
        except CollateralError as exc:
            self._count_fetch(tee, "error")
            raise HardwareInputError(
                f"{label} collateral for FMSPC {fmspc} ({ca} CA): {exc}"
            ) from exc
        if self._fetched.get(key) != collateral.fetched_at:
            # The source handed over collateral this process has not seen: a fetch (or a
            # reload of a changed file) happened.
            self._fetched[key] = collateral.fetched_at
            self._count_fetch(tee, "fetched")
            await self._emit(
                event.collateral_fetched(tee=tee, key=key, source=_source_name(self.tdx_source))
            )
        if (
            collateral.not_after < self.now()
            and self._expired_reported.get(key) != collateral.not_after
        ):
            self._expired_reported[key] = collateral.not_after
            self._count_fetch(tee, "expired")
            await self._emit(
                event.collateral_expired(tee=tee, key=key, not_after=_rfc3339(collateral.not_after))
            )
        return collateral.to_json_bytes()

    def _count_fetch(self, tee: str, outcome: str) -> None:
        self.metrics.collateral_fetch(tee, outcome)

    async def _emit(self, audit_event: event.AuditEvent) -> None:
        with contextlib.suppress(AuditRequiredSinkError):
            # A collateral notice is not a decision: it never fails the attestation.
            await self.audit.emit(audit_event)

    async def _snp_certs(self, evidence: bytes) -> list[bytes]:
        # AMD's ASK/ARK are built in; only a missing VCEK is fetched.
        needs = _core.snp_needs(evidence)
        certs = list(self._snp_anchors)
        if needs.vcek is not None:
            products = (needs.product,) if needs.product is not None else SNP_PRODUCTS
            certs.append(await self._fetch_vcek(needs.vcek, products))
        return certs

    async def _fetch_vcek(self, vcek: _core.VcekKey, products: Sequence[str]) -> bytes:
        if self.vek_source is None:
            raise HardwareInputError(
                "the SNP evidence carries no VCEK and no VCEK source is configured; set "
                "[attestation_service.verifier_config] kds_url / vek_dir or snp_verifier"
            )
        from trustee.collateral.snp import VcekRequest

        errors: list[str] = []
        for name in products:
            try:
                request = VcekRequest(
                    product=name,
                    hw_id=vcek.hw_id,
                    bl=vcek.bl,
                    tee=vcek.tee,
                    snp=vcek.snp,
                    microcode=vcek.microcode,
                    fmc=vcek.fmc,
                )
            except ValueError as exc:
                # e.g. a v2 report's 64-byte chip ID is no Turin hwID: try the next product.
                errors.append(f"{name}: {exc}")
                continue
            try:
                return await self.vek_source.vcek(request)
            except CollateralError as exc:
                errors.append(f"{name}: {exc}")
        raise HardwareInputError("SNP VCEK could not be fetched: " + "; ".join(errors))


def _source_name(source: TdxCollateralSource) -> str:
    # Audit consumers see the source that fetched, not the wrapper that built it on demand.
    if isinstance(source, LazyTdxSource):
        return type(source.source).__name__
    return type(source).__name__


def _is_rsa_certificate(der: bytes) -> bool:
    # Only test anchors get here: a production server never loads the X.509 parser for them.
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        return isinstance(x509.load_der_x509_certificate(der).public_key(), rsa.RSAPublicKey)
    except ValueError:
        return False


def _rfc3339(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
