"""Offline verification rate: our native core warm and cold, and dcap-qvl beside it.

The timing helper here is also what the micro-benchmarks in ``benches/`` use, so every figure
in the repository is the same statistic: the median over rounds of the mean time of one call,
after a warm-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustee.verify_cli import Prepared

# The TEEs whose evidence is a bare DCAP quote, the form dcap-qvl verifies.
DCAP_QVL_TEES = ("tdx", "sgx")
# How long the calibration of a --duration run calls before it estimates one call's time.
CALIBRATION_S = 0.05


def per_call_us(fn: Callable[[], object], iterations: int, rounds: int) -> float:
    """Median over `rounds` of the mean time of one call, in µs, after a warm-up."""
    for _ in range(max(5, iterations // 10)):
        fn()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        means.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(means)


def iterations_for(fn: Callable[[], object], seconds: float, rounds: int) -> int:
    """Calls per round so that `rounds` rounds of `fn` take about `seconds`."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= CALIBRATION_S:
            break
    return max(1, round(seconds / rounds / (elapsed / calls)))


def prepare_offline(
    tee: str,
    evidence: str | os.PathLike[str],
    *,
    collateral: str | os.PathLike[str] | None = None,
    vcek: str | os.PathLike[str] | None = None,
    report_data: bytes | None = None,
    at: str | None = None,
    test_roots: Sequence[str | os.PathLike[str]] = (),
) -> Prepared:
    """`trustee verify`'s reading of these options, for scripts; raises
    `trustee.usage.UsageError` or `VerificationFailed` (inputs that cannot be had)."""
    import trio

    from trustee.usage import OneLineParser
    from trustee.verify_cli import add_evidence_options, prepare

    argv = ["--tee", tee, "--evidence", str(evidence)]
    for option, value in (("--collateral", collateral), ("--vcek", vcek), ("--at", at)):
        if value is not None:
            argv += [option, str(value)]
    if report_data is not None:
        argv += ["--report-data", report_data.hex()]
    for root in test_roots:
        argv += ["--insecure-test-root", str(root)]
    parser = OneLineParser(prog="trustee bench verify")
    add_evidence_options(parser)
    return trio.run(prepare, parser.parse_args(argv))


def verdict(prepared: Prepared) -> dict[str, Any]:
    """The first component's claims; `VerificationFailed` naming the failing check."""
    from trustee import _core
    from trustee.verify_cli import VerificationFailed

    try:
        claims = prepared.hardware.new_core().verify(*prepared.arguments())
    except _core.VerifierError as exc:
        raise VerificationFailed(str(exc)) from exc
    first: dict[str, Any] = json.loads(claims[0].json)
    return first


def ours_calls(prepared: Prepared) -> dict[str, Callable[[], object]]:
    """``ours_warm``: one long-lived native verifier, as the server holds it (verified
    collateral and chains memoised); ``ours_cold``: a new one per call (nothing memoised)."""
    arguments = prepared.arguments()
    hardware = prepared.hardware
    warm = hardware.new_core()
    return {
        "ours_warm": lambda: warm.verify(*arguments),
        "ours_cold": lambda: hardware.new_core().verify(*arguments),
    }


@dataclass(frozen=True)
class Baseline:
    """dcap-qvl's `verify` on the same quote, collateral and time, or why there is none."""

    call: Callable[[], object] | None
    version: str | None = None
    note: str | None = None
    warnings: list[str] = field(default_factory=list)


def dcap_qvl_baseline(prepared: Prepared, ours: dict[str, Any]) -> Baseline:
    """The baseline for `prepared` (whose verdict, `ours`, has passed)."""
    if prepared.tee not in DCAP_QVL_TEES:
        return Baseline(None, note=f"no dcap-qvl figure: {prepared.tee} evidence is not DCAP")
    try:
        import dcap_qvl  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return Baseline(None, note="no dcap-qvl figure: dcap-qvl is not installed")
    from importlib.metadata import version

    try:
        quote = base64.b64decode(json.loads(prepared.evidence)["quote"], validate=True)
        collateral = dcap_qvl.QuoteCollateralV3.from_json(
            (prepared.inputs.tdx_collateral or b"").decode()
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return Baseline(None, note=f"no dcap-qvl figure: it cannot read the inputs ({exc})")
    now = prepared.inputs.now

    # A test PKI's quote chains to a test root, which dcap-qvl takes as an argument.
    def under(root: bytes) -> Callable[[], Any]:
        return lambda: dcap_qvl.verify_with_root_ca(quote, collateral, root, now)

    candidates: list[Callable[[], Any]] = [lambda: dcap_qvl.verify(quote, collateral, now)]
    candidates += [under(root) for root in prepared.test_roots]
    refusal = ""
    for call in candidates:
        try:
            report = call()
        except Exception as exc:  # dcap-qvl raises plain ValueError/RuntimeError
            refusal = str(exc)
            continue
        theirs = (report.status, list(report.advisory_ids))
        warnings = []
        if theirs != (ours.get("tcb_status"), ours.get("advisory_ids")):
            warnings.append(
                f"verdicts differ: ours {ours.get('tcb_status')} {ours.get('advisory_ids')}, "
                f"dcap-qvl {theirs[0]} {theirs[1]}"
            )
        return Baseline(call, version("dcap-qvl"), warnings=warnings)
    return Baseline(None, note=f"no dcap-qvl figure: dcap-qvl refused the quote ({refusal})")


@dataclass(frozen=True)
class Pace:
    """How long each figure is measured: a fixed number of calls per round, or a time."""

    rounds: int
    iterations: int | None = None
    seconds: float | None = None

    def per_call_us(self, fn: Callable[[], object]) -> tuple[float, int]:
        """The figure and the calls per round it took."""
        iterations = self.iterations
        if iterations is None:
            iterations = iterations_for(fn, self.seconds or 1.0, self.rounds)
        return per_call_us(fn, iterations, self.rounds), iterations


def measure(prepared: Prepared, baseline: Baseline, pace: Pace) -> dict[str, Any]:
    """``per_call_us``, ``calls_per_s``, ``iterations`` and ``ratio`` (when there is a
    baseline) of a verification whose verdict has passed."""
    calls = ours_calls(prepared)
    if baseline.call is not None:
        calls["dcap_qvl"] = baseline.call
    figures: dict[str, float] = {}
    iterations: dict[str, int] = {}
    for name, call in calls.items():
        figures[name], iterations[name] = pace.per_call_us(call)
    per_call = {name: round(us, 2) for name, us in figures.items()}
    # `ours` is the warm figure under the name the format's first readers know.
    per_call["ours"] = per_call["ours_warm"]
    measured: dict[str, Any] = {
        "per_call_us": per_call,
        "calls_per_s": {name: round(1e6 / us, 1) for name, us in figures.items()},
        "iterations": iterations,
        "rounds": pace.rounds,
    }
    if "dcap_qvl" in figures:
        measured["ratio"] = round(figures["dcap_qvl"] / figures["ours_warm"], 3)
    return measured
