"""`trustee verify`: check one piece of hardware evidence offline and print its claims.

Exit codes: 0 verified (claims JSON on stdout), 1 the evidence failed a check (the failing
check on stderr), 2 usage errors (a file that cannot be read, a bad option value). Every line on
stderr starts with ``trustee verify:``. A reader that stops early (``| head``) changes neither
the exit code nor stderr: the verdict stands, the rest of the claims goes nowhere.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from trustee.crypto.b64 import b64std_encode
from trustee.usage import UsageError

if TYPE_CHECKING:
    from trustee.attestation.hardware import HardwareVerifier, Inputs

SNP_REPORT_BYTES = 1184
PROG = "trustee verify"
TEES = ("tdx", "sgx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "tpm")
# The TEEs whose evidence holds a quote appraised with DCAP collateral.
DCAP_TEES = ("tdx", "sgx", "az-tdx-vtpm")


class VerificationFailed(Exception):
    """The evidence failed a check; the message names it."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="verify TDX, SGX, SNP, Azure vTPM or TPM evidence offline and print its claims",
        description=(
            "Verify one piece of TDX, SGX, SNP, Azure vTPM or TPM evidence and print the claims "
            "the attestation service would see (exit 0), or the failing check (exit 1)."
        ),
    )
    add_evidence_options(p)


def add_evidence_options(p: argparse.ArgumentParser) -> None:
    """The options naming one piece of evidence and what to judge it by, which `prepare`
    reads: `trustee verify`'s, and `trustee bench verify`'s too."""
    p.add_argument("--tee", required=True, choices=TEES)
    p.add_argument(
        "--evidence",
        required=True,
        metavar="FILE",
        help="the attester's evidence JSON, or a raw TDX/SGX quote / raw 1184-byte SNP report",
    )
    p.add_argument("--eventlog", metavar="FILE", help="TDX: CC event log (CCEL) to replay")
    p.add_argument(
        "--collateral",
        metavar="FILE_OR_DIR",
        help="TDX, SGX, az-tdx-vtpm: collateral as a dcap-qvl JSON file or a directory "
        "(default: Intel PCS)",
    )
    p.add_argument(
        "--vcek",
        metavar="FILE",
        help="SNP: VCEK/VLEK (DER or PEM), or a bundle whose first certificate is the VEK; "
        "any ASK/ARK in it must match the pinned AMD roots, which are also built in "
        "(default VEK: the evidence's, then AMD KDS)",
    )
    p.add_argument("--at", metavar="RFC3339", help="judge validity at this time (default: now)")
    p.add_argument(
        "--report-data",
        metavar="HEX",
        help="expected report data (TDX/SNP: zero-padded to 64 bytes, tpm: to 32; "
        "az-*-vtpm: required, compared exactly)",
    )
    p.add_argument(
        "--init-data-hash",
        metavar="HEX",
        help="expected init-data digest (TDX MRCONFIGID, SNP HOST_DATA, vTPM/TPM PCR8)",
    )
    p.add_argument(
        "--insecure-test-root",
        action="append",
        default=[],
        metavar="FILE",
        help="also trust this test root (simulated TDX/SNP PKI); never for real evidence",
    )
    p.add_argument(
        "--tpm-ak-root",
        action="append",
        default=[],
        metavar="FILE",
        help="tpm: a root that certifies AKs (as tpm_ak_roots does for the server)",
    )
    p.add_argument(
        "--allow-nonzero-vmpl", action="store_true", help="SNP: accept reports from VMPL > 0"
    )


def run(args: argparse.Namespace) -> int:
    # Here, not at the top: every `trustee` command builds this parser, a server too.
    import trio

    with warnings_prefixed(PROG):
        try:
            claims = trio.run(_verify, args)
        except (UsageError, VerificationFailed) as exc:
            return failed(PROG, exc)
    return say(sys.stdout, claims, 0)


@contextmanager
def warnings_prefixed(prog: str) -> Iterator[None]:
    """While inside, collateral warnings (logged by the sources) reach stderr with the same
    prefix as the command's errors."""
    handler = logging.StreamHandler()
    handler.setFormatter(Prefixed(prog))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def failed(prog: str, exc: UsageError | VerificationFailed) -> int:
    """One line on stderr; exit status 2 for a usage error, 1 for evidence that fails."""
    return say(sys.stderr, f"{prog}: {exc}", 2 if isinstance(exc, UsageError) else 1)


class Prefixed(logging.Formatter):
    """Log records as one line that starts like the command's errors."""

    def __init__(self, prog: str = PROG) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}"


def say(stream: TextIO, text: str, code: int) -> int:
    """Write one message; a reader that has gone away is no error of ours."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        # Python flushes the stream again at exit and would report the same closed pipe
        # with a traceback: give that flush somewhere to go.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    return code


def _hex(value: str | None, option: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as exc:
        raise UsageError(f"{option}: not hex: {exc}") from exc


def _time(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at: not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise UsageError(f"--at: {value!r} has no time zone (add Z or an offset)")
    return int(parsed.timestamp())


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from exc


def _evidence(tee: str, raw: bytes, eventlog: bytes | None) -> bytes:
    """The evidence as the attester's JSON; raw quotes and reports are wrapped or kept."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if tee == "tdx":
        if not isinstance(doc, dict):
            doc = {"quote": b64std_encode(raw), "cc_eventlog": None}
        if eventlog is not None:
            doc["cc_eventlog"] = b64std_encode(eventlog)
        return json.dumps(doc).encode()
    if eventlog is not None:
        raise UsageError("--eventlog applies to TDX evidence only")
    if tee == "sgx":
        return raw if isinstance(doc, dict) else json.dumps({"quote": b64std_encode(raw)}).encode()
    if isinstance(doc, dict):
        return raw
    if tee != "snp":
        raise UsageError(f"--evidence: {tee} evidence must be the attester's JSON object")
    if len(raw) != SNP_REPORT_BYTES:
        raise UsageError(
            f"--evidence: neither SNP evidence JSON nor a {SNP_REPORT_BYTES}-byte report "
            f"({len(raw)} bytes)"
        )
    return raw


@dataclass(frozen=True)
class Prepared:
    """One verification ready to run: the verifier the options describe and everything its
    `verify` takes beside it (evidence, expectations, collateral or certificates, time)."""

    hardware: HardwareVerifier
    tee: str
    evidence: bytes
    report_data: bytes | None
    init_data_hash: bytes | None
    inputs: Inputs
    test_roots: list[bytes]

    def arguments(
        self,
    ) -> tuple[str, bytes, bytes | None, bytes | None, int, bytes | None, list[bytes]]:
        """The arguments of `_core.Verifiers.verify`."""
        return (
            self.tee,
            self.evidence,
            self.report_data,
            self.init_data_hash,
            *self.inputs.arguments(),
        )


async def prepare(args: argparse.Namespace) -> Prepared:
    """Read and check the options of `add_parser` and obtain what the evidence needs
    (collateral, VEK); raises UsageError, or VerificationFailed when that cannot be had."""
    from trustee import _core
    from trustee.attestation.hardware import HardwareInputError, HardwareVerifier
    from trustee.collateral.build import tdx_source_from_settings, vek_source_from_settings
    from trustee.collateral.settings import AMD_KDS, INTEL_PCS, local_tdx_collateral
    from trustee.config.errors import ConfigError
    from trustee.crypto.x509chain import load_certificate_files

    tee: str = args.tee
    if tee not in DCAP_TEES and args.collateral:
        raise UsageError("--collateral applies to TDX, SGX and az-tdx-vtpm evidence only")
    if tee != "snp" and args.vcek:
        raise UsageError("--vcek applies to SNP evidence only")
    if tee != "tpm" and args.tpm_ak_root:
        raise UsageError("--tpm-ak-root applies to tpm evidence only")
    eventlog = _read(args.eventlog, "--eventlog") if args.eventlog else None
    evidence = _evidence(tee, _read(args.evidence, "--evidence"), eventlog)
    report_data = _hex(args.report_data, "--report-data")
    init_hash = _hex(args.init_data_hash, "--init-data-hash")
    at = _time(args.at)
    # Every judgement of time (the caches' and the verifier's) is made at --at.
    clock = (lambda: float(at)) if at is not None else time.time
    try:
        anchors = load_certificate_files(args.insecure_test_root)
        ak_roots = load_certificate_files(args.tpm_ak_root)
        bundle = load_certificate_files([args.vcek]) if args.vcek else []
        collateral = (
            local_tdx_collateral(args.collateral, "early", "--collateral")
            if args.collateral
            else INTEL_PCS
        )
    except (ValueError, ConfigError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        hw = HardwareVerifier(
            tdx_source=tdx_source_from_settings(collateral, clock),
            vek_source=vek_source_from_settings(AMD_KDS, clock),
            test_anchors=anchors,
            tpm_ak_roots=ak_roots,
            snp_allow_nonzero_vmpl=args.allow_nonzero_vmpl,
            clock=clock,
        )
    except ValueError as exc:  # a --tpm-ak-root the core cannot use (not a CA, not X.509)
        raise UsageError(f"--tpm-ak-root: {exc}") from exc
    try:
        # The operator's bundle replaces any fetching; its CA certificates are only used
        # when they match the pinned roots (the verifier checks that).
        inputs = hw.with_snp_certs(bundle) if bundle else await hw.inputs(tee, evidence)
    except (HardwareInputError, _core.VerifierError) as exc:  # also: a quote that won't parse
        raise VerificationFailed(str(exc)) from exc
    return Prepared(hw, tee, evidence, report_data, init_hash, inputs, anchors)


async def _verify(args: argparse.Namespace) -> str:
    """The claims JSON; raises UsageError or VerificationFailed."""
    from trustee import _core

    p = await prepare(args)
    try:
        entries = p.hardware.verify(p.tee, p.evidence, p.report_data, p.init_data_hash, p.inputs)
    except _core.VerifierError as exc:
        raise VerificationFailed(str(exc)) from exc
    claims = [json.loads(component.json) for component in entries]
    return json.dumps(claims[0] if len(claims) == 1 else claims, indent=2, sort_keys=True)
