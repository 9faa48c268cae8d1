#!/usr/bin/env python3
"""Warm SGX appraisal against warm TDX appraisal, on simulated quotes from one test platform.

Run from the repository root with the project's venv:

    .venv/bin/python benches/verify_sgx.py [--rounds 7] [--iterations 500]

The simulated SGX enclave and TDX guest share one test PKI (root, PCK chain, quoting enclave),
so both quotes carry the same certificates and differ only in their body and collateral. Each
side is `trustee._core.Verifiers.verify` on one long-lived `Verifiers` (verified collateral and
PCK chain memoised; quote signatures, revocation, TCB matching and claims run every call), with
a fresh-looking report data bound and checked. stdout: one JSON object with `sgx_us`, `tdx_us`
(median over rounds of the mean per call) and `ratio` = sgx_us / tdx_us (the target is at most
1.2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

from trustee import _core
from trustee.bench.verify_rate import per_call_us
from trustee.simulate.sgx import SgxTestPki, sgx_evidence
from trustee.simulate.tdx import tdx_evidence_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args(argv)

    sgx_pki = SgxTestPki.shared()
    tdx_pki = sgx_pki.platform_pki
    report_data = hashlib.sha384(b"bench nonce").digest()
    cases = {
        "sgx": (
            json.dumps(sgx_evidence(sgx_pki.quote(report_data))).encode(),
            json.dumps(sgx_pki.collateral()).encode(),
        ),
        "tdx": (
            tdx_evidence_json(tdx_pki.quote(report_data)),
            json.dumps(tdx_pki.collateral()).encode(),
        ),
    }
    verifiers = _core.Verifiers([hashlib.sha256(sgx_pki.root_der).digest()])
    now = int(time.time())
    figures: dict[str, float] = {}
    for tee, (evidence, collateral) in cases.items():
        claims = json.loads(
            verifiers.verify(tee, evidence, report_data, None, now, collateral)[0].json
        )
        if claims["tcb_status"] != "UpToDate":
            print(f"{tee}: unexpected verdict {claims['tcb_status']}", file=sys.stderr)
            return 1

        args_of_tee = (tee, evidence, report_data, None, now, collateral)
        figures[tee] = per_call_us(
            lambda a=args_of_tee: verifiers.verify(*a), args.iterations, args.rounds
        )
    line = {
        "sgx_us": round(figures["sgx"], 1),
        "tdx_us": round(figures["tdx"], 1),
        "ratio": round(figures["sgx"] / figures["tdx"], 2),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
