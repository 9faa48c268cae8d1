"""`trustee bench verify`: how many verifications per second the native core does offline.

The evidence options are `trustee verify`'s, declared and read by the same code. The verdict
comes first: evidence that fails is one line on stderr and exit 1, with nothing timed or
written. Then three figures, each the median over rounds of the mean time of one call: ours
warm (one long-lived `_core.Verifiers`, as the server holds it), ours cold (a new one per call)
and, for TDX and SGX quotes when the `dcap-qvl` package is installed, dcap-qvl's `verify` on
the same quote, collateral and time. Exit 2 for usage errors, one line too.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from trustee.bench.results import write_results
from trustee.usage import OneLineParser, UsageError
from trustee.verify_cli import (
    VerificationFailed,
    add_evidence_options,
    failed,
    say,
    warnings_prefixed,
)

PROG = "trustee bench verify"
DEFAULT_DURATION_S = 2.0
MAX_DURATION_S = 3600.0
MAX_ITERATIONS = 10_000_000
MAX_ROUNDS = 1000


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    add_evidence_options(p)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--duration",
        type=_bounded(float, 0.001, MAX_DURATION_S),
        metavar="S",
        help=f"seconds of timed calls per figure (default {DEFAULT_DURATION_S:g})",
    )
    pace.add_argument(
        "--iterations",
        type=_bounded(int, 1, MAX_ITERATIONS),
        metavar="N",
        help="calls per round instead of a duration",
    )
    p.add_argument("--rounds", type=_bounded(int, 1, MAX_ROUNDS), default=5, metavar="R")
    p.add_argument("--label", metavar="L", help="the run's name in reports (default: the TEE)")
    p.add_argument("--out", metavar="FILE", help="write the results file here")
    return p


def main(argv: list[str]) -> int:
    import json

    with warnings_prefixed(PROG):
        try:
            args = parser().parse_args(argv)
            results = run(args, argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        except (UsageError, VerificationFailed) as exc:
            return failed(PROG, exc)
    if args.out:
        try:
            write_results(args.out, results)
        except OSError as exc:
            return say(sys.stderr, f"{PROG}: --out {args.out}: {exc.strerror or exc}", 2)
    if sys.stdout.isatty():
        text = summary(results) + (f"\nresults: {args.out}" if args.out else "")
        return say(sys.stdout, text, 0)
    return say(sys.stdout, json.dumps(results, indent=2, sort_keys=True), 0)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """The results file's content; raises UsageError or VerificationFailed, having timed
    nothing, when the options or the evidence are wrong."""
    import trio

    from trustee.bench.machine import machine, versions
    from trustee.bench.verify_rate import Pace, dcap_qvl_baseline, measure, verdict
    from trustee.verify_cli import prepare

    started = datetime.datetime.now(datetime.UTC)
    prepared = trio.run(prepare, args)
    ours = verdict(prepared)
    baseline = dcap_qvl_baseline(prepared, ours)
    seconds = None if args.iterations else (args.duration or DEFAULT_DURATION_S)
    pace = Pace(args.rounds, args.iterations, seconds)
    clock = datetime.datetime.now(datetime.UTC)
    measured = measure(prepared, baseline, pace)
    results: dict[str, Any] = {
        "format": "trustee-bench/1",
        "kind": "verify",
        "label": args.label or args.tee,
        "command": ["trustee", "bench", "verify", *argv],
        "started": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - clock).total_seconds(), 3),
        "machine": machine(),
        "versions": versions(dcap_qvl=baseline.version),
        "target": {
            "tee": args.tee,
            "evidence": args.evidence,
            "at": _rfc3339(prepared.inputs.now),
            "tcb_status": ours.get("tcb_status"),
        },
        "warnings": baseline.warnings,
        "notes": [baseline.note] if baseline.note else [],
        **measured,
    }
    return results


def _rfc3339(unix: int) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat().replace("+00:00", "Z")


def summary(results: dict[str, Any]) -> str:
    """A few lines for a person at a terminal."""
    us, rate = results["per_call_us"], results["calls_per_s"]
    lines = [
        f"{results['label']} ({results['target']['tee']}, judged at {results['target']['at']})"
    ]
    names = {"ours_warm": "ours, warm", "ours_cold": "ours, cold", "dcap_qvl": "dcap-qvl"}
    for name, title in names.items():
        if name in us:
            lines.append(f"  {title:<11} {us[name]:>10.1f} µs/call  {rate[name]:>10.1f} calls/s")
    if "ratio" in results:
        lines.append(f"  dcap-qvl / ours warm: {results['ratio']:.2f}")
    lines += [f"  note: {note}" for note in results["notes"]]
    lines += [f"  warning: {warning}" for warning in results["warnings"]]
    return "\n".join(lines)
