#!/usr/bin/env python3
"""Our TDX appraisal against the `dcap-qvl` package's `verify`, on the same quote and collateral.

Run from the repository root with the project's venv (the `dev` extra installs dcap-qvl):

    .venv/bin/python benches/verify_tdx.py [--rounds 7] [--iterations 200]

Inputs are the dcap-qvl sample quote and its collateral from ../shared/vectors (read in place),
judged at the collateral's issue date plus one hour. Both sides are called from Python, each with
the quote and collateral already in memory:

* ours: `trustee._core.Verifiers().verify("tdx", evidence JSON, …, collateral JSON)` — the full
  appraisal the attestation service runs: quote parsing, PCK chain to the pinned root, QE report
  and quote signatures, TCB info / QE identity signatures and chains, CRLs, TCB level matching
  and the claims JSON;
* dcap-qvl: `dcap_qvl.verify(quote, QuoteCollateralV3.from_json(…), now)`.

Both are read, checked and compared by `trustee.bench.verify_rate`, the library of
`trustee bench verify`. Two cases: cold (a new `Verifiers` per call: nothing memoised) and warm
(one `Verifiers`: the verified collateral and PCK chain are memoised, time checks still run).
Each figure is the median over rounds of the mean per call. stdout: one JSON object per case,
cold first, warm last, with `case`, `ours_us`, `dcap_qvl_us`, `ratio` = dcap_qvl_us / ours_us.
"""

from __future__ import annotations

import argparse
import calendar
import datetime
import json
import sys
import time
from pathlib import Path

from trustee.bench.verify_rate import (
    dcap_qvl_baseline,
    ours_calls,
    per_call_us,
    prepare_offline,
    verdict,
)

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
SAMPLE = VECTORS / "dcap-qvl" / "sample"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        import dcap_qvl  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        print("dcap-qvl is not installed (pip install dcap-qvl, or the dev extra)", file=sys.stderr)
        return 2
    if not SAMPLE.is_dir():
        print(f"the shared vectors are not present ({SAMPLE})", file=sys.stderr)
        return 2

    collateral = SAMPLE / "tdx_quote_collateral.json"
    issue = json.loads(json.loads(collateral.read_text())["tcb_info"])["issueDate"]
    now = calendar.timegm(time.strptime(issue, "%Y-%m-%dT%H:%M:%SZ")) + 3600
    at = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
    prepared = prepare_offline("tdx", SAMPLE / "tdx_quote", collateral=collateral, at=at)

    # Both must agree before anything is timed.
    ours = verdict(prepared)
    baseline = dcap_qvl_baseline(prepared, ours)
    if baseline.call is None or baseline.warnings:
        print(baseline.note or baseline.warnings[0], file=sys.stderr)
        return 1
    print(f"both: {ours['tcb_status']}, advisories {ours['advisory_ids']}", file=sys.stderr)

    calls = ours_calls(prepared)
    for case in ("cold", "warm"):
        ours_us = per_call_us(calls[f"ours_{case}"], args.iterations, args.rounds)
        theirs_us = per_call_us(baseline.call, args.iterations, args.rounds)
        line = {
            "case": case,
            "ours_us": round(ours_us, 1),
            "dcap_qvl_us": round(theirs_us, 1),
            "ratio": round(theirs_us / ours_us, 2),
        }
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
