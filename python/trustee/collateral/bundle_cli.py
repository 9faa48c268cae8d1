"""`trustee collateral fetch|verify`: make a collateral bundle where PCS/KDS are reachable, and
check one before it is used where they are not."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from trustee.usage import OneLineParser, UsageError, report

if TYPE_CHECKING:
    from trustee.collateral.bundle_fetch import FetchPlan

PROG = "trustee collateral"


def build_parser() -> argparse.ArgumentParser:
    from trustee.collateral.spec import INTEL_PCS_URL, KDS_URL

    parser = OneLineParser(prog=PROG, description="Collateral bundles for clusters without egress.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    fetch = commands.add_parser("fetch", help="fetch DCAP collateral and SNP VCEKs into a bundle")
    fetch.add_argument("--pcs-url", default=INTEL_PCS_URL, help="Intel PCS or a PCCS")
    fetch.add_argument("--kds-url", default=KDS_URL, help="AMD KDS")
    fetch.add_argument(
        "--tdx-fmspc",
        action="append",
        default=[],
        metavar="FMSPC[:CA]",
        help="a TDX platform's FMSPC; CA platform or processor (default: both)",
    )
    fetch.add_argument(
        "--sgx-fmspc",
        action="append",
        default=[],
        metavar="FMSPC[:CA]",
        help="an SGX platform's FMSPC; CA platform or processor (default: both)",
    )
    fetch.add_argument(
        "--snp-chip",
        action="append",
        default=[],
        metavar="PRODUCT:HWID:BL,TEE,SNP,UCODE[,FMC]",
        help="an SNP chip and the TCB its reports are signed under",
    )
    fetch.add_argument(
        "--snp-evidence",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="SNP evidence JSON (as the attester sends it) naming the chip and TCB",
    )
    fetch.add_argument("--snp-asvk", action="store_true", help="also fetch each product's ASVK")
    fetch.add_argument("--tcb-update-type", choices=("early", "standard"), default="early")
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    fetch.add_argument(
        "--kds-min-interval", type=float, default=1.0, help="seconds between KDS requests"
    )
    fetch.add_argument("--out", required=True, type=Path, metavar="BUNDLE.tar")
    verify = commands.add_parser("verify", help="check a bundle's hashes and vendor signatures")
    verify.add_argument("bundle", type=Path, metavar="BUNDLE.tar")
    verify.add_argument(
        "--insecure-test-root",
        action="append",
        default=[],
        metavar="FILE",
        help="also trust this test root (PEM or DER), as insecure_test_roots does",
    )
    return parser


def collateral_main(argv: list[str]) -> int:
    """0: done; 1: fetching or checking failed; 2: usage error or not a bundle."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "fetch":
            return _fetch(args)
        return _verify(args)
    except UsageError as exc:
        return report(exc, PROG)
    except SystemExit as exc:  # --help, already printed
        return exc.code if isinstance(exc.code, int) else 0


def _plan(args: argparse.Namespace) -> FetchPlan:
    from trustee.collateral.bundle_fetch import (
        FetchPlan,
        parse_snp_chip,
        parse_tdx_fmspc,
        requests_from_evidence,
    )

    try:
        tdx = [pair for text in args.tdx_fmspc for pair in parse_tdx_fmspc(text)]
        sgx = [pair for text in args.sgx_fmspc for pair in parse_tdx_fmspc(text)]
        snp = [parse_snp_chip(text) for text in args.snp_chip]
        for path in args.snp_evidence:
            try:
                evidence = Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"{path}: {exc.strerror or exc}") from None
            snp += requests_from_evidence(evidence, str(path))
    except ValueError as exc:
        raise UsageError(str(exc), f"{PROG} fetch") from None
    if not tdx and not sgx and not snp:
        raise UsageError(
            "name at least one --tdx-fmspc, --sgx-fmspc, --snp-chip or --snp-evidence",
            f"{PROG} fetch",
        )
    return FetchPlan(
        tdx, sgx, snp, args.snp_asvk, args.pcs_url, args.kds_url, args.tcb_update_type,
        args.timeout, args.kds_min_interval,
    )  # fmt: skip


def _fetch(args: argparse.Namespace) -> int:
    import trio

    from trustee.collateral.bundle import write_bundle
    from trustee.collateral.bundle_fetch import fetch_members
    from trustee.collateral.errors import CollateralError

    plan = _plan(args)
    try:
        members = trio.run(fetch_members, plan)
        write_bundle(args.out, members, time.time())
    except (CollateralError, ValueError) as exc:
        return _fail(1, f"fetch: {exc}")
    except OSError as exc:
        return _fail(1, f"fetch: cannot write {args.out}: {exc.strerror or exc}")
    for member in members:
        sys.stdout.write(f"{member.path}  valid until {member.valid_until}\n")
    sys.stdout.write(f"wrote {args.out} ({len(members)} members)\n")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from trustee.collateral.bundle import BundleError, NotABundle, read_bundle
    from trustee.collateral.bundle_check import check_bundle, member_window
    from trustee.crypto.x509chain import load_certificate_files

    try:
        roots = load_certificate_files(args.insecure_test_root)
    except ValueError as exc:
        return _fail(2, f"verify: --insecure-test-root {exc}")
    try:
        bundle = read_bundle(args.bundle)
    except NotABundle as exc:
        return _fail(2, f"verify: {exc}")
    except BundleError as exc:
        return _fail(1, f"verify: {exc}")
    now = time.time()
    failed = 0
    for member, problem in zip(bundle.members, check_bundle(bundle, roots), strict=True):
        key = " ".join(f"{k}={v}" for k, v in member.key.items())
        if problem is not None:
            failed += 1
            reason = problem.removeprefix(f"member {member.path}: ")
            sys.stdout.write(f"FAILED   {member.path}  {reason}\n")
            continue
        start, end = member_window(member)
        state = "EXPIRED " if _unix(end) < now else "ok      "
        sys.stdout.write(f"{state} {member.path}  {member.kind} {key}  valid {start} to {end}\n")
    if failed:
        return _fail(1, f"verify: {bundle.path}: {failed} member(s) failed their signature check")
    return 0


def _unix(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _fail(code: int, message: str) -> int:
    sys.stderr.write(f"{PROG} {message}\n" if not message.startswith(PROG) else f"{message}\n")
    return code
