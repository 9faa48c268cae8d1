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

Two cases: cold (a new `Verifiers` per call: nothing memoised) and warm (one `Verifiers`: the
verified collateral and PCK chain are memoised, time checks still run). Each figure is the median
over rounds of the mean per call. stdout: one JSON object per case, cold first, warm last, with
`case`, `ours_us`, `dcap_qvl_us`, `ratio` = dcap_qvl_us / ours_us.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import json
import sys
import time
from pathlib import Path

from timing import per_call_us  # benches/timing.py, beside this script
from trustee import _core

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
SAMPLE = VECTORS / "dcap-qvl" / "sample"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        import dcap_qvl  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("dcap-qvl is not installed (pip install dcap-qvl, or the dev extra)", file=sys.stderr)
        return 2
    if not SAMPLE.is_dir():
        print(f"the shared vectors are not present ({SAMPLE})", file=sys.stderr)
        return 2

    quote = (SAMPLE / "tdx_quote").read_bytes()
    collateral_text = (SAMPLE / "tdx_quote_collateral.json").read_text()
    collateral = collateral_text.encode()
    issue = json.loads(json.loads(collateral_text)["tcb_info"])["issueDate"]
    now = calendar.timegm(time.strptime(issue, "%Y-%m-%dT%H:%M:%SZ")) + 3600
    evidence = json.dumps({"quote": base64.b64encode(quote).decode(), "cc_eventlog": None}).encode()
    theirs = dcap_qvl.QuoteCollateralV3.from_json(collateral_text)

    # Both must agree before anything is timed.
    ours_claims = json.loads(
        _core.Verifiers().verify("tdx", evidence, None, None, now, collateral)[0].json
    )
    report = dcap_qvl.verify(quote, theirs, now)
    if (ours_claims["tcb_status"], ours_claims["advisory_ids"]) != (
        report.status,
        list(report.advisory_ids),
    ):
        print(
            f"verdicts differ: ours {ours_claims['tcb_status']}, dcap-qvl {report.status}",
            file=sys.stderr,
        )
        return 1
    print(f"both: {report.status}, advisories {list(report.advisory_ids)}", file=sys.stderr)

    def ours_cold() -> object:
        return _core.Verifiers().verify("tdx", evidence, None, None, now, collateral)

    warm_verifier = _core.Verifiers()

    def ours_warm() -> object:
        return warm_verifier.verify("tdx", evidence, None, None, now, collateral)

    def dcap_qvl_verify() -> object:
        return dcap_qvl.verify(quote, theirs, now)

    for case, ours in (("cold", ours_cold), ("warm", ours_warm)):
        ours_us = per_call_us(ours, args.iterations, args.rounds)
        theirs_us = per_call_us(dcap_qvl_verify, args.iterations, args.rounds)
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
