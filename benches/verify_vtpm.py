#!/usr/bin/env python3
"""Warm az-snp-vtpm verification against warm SNP verification, measured in the same run.

Run from the repository root with the project's venv:

    .venv/bin/python benches/verify_vtpm.py [--rounds 7] [--iterations 300]

Two pairs, each through one long-lived `trustee._core.Verifiers` (VEK chains memoised; every
call decodes the evidence, checks every signature and binding, and builds the claims):

* real: upstream's az-snp-vtpm evidence-v1 (Milan; HCL report, vTPM quote, VCEK, report data
  "challenge") against upstream's e2e SNP evidence (Genoa, VCEK in its cert_chain). AMD's
  ASK/ARK are the built-in ones for both. Needs the shared vectors.
* simulated: a simulated Azure SNP guest against a simulated SNP guest of the same test PKI
  (`trustee simulate`), so the two differ only by the vTPM part (HCL parse, var-data digest,
  RSA-2048 AK signature over the quote, PCR digest).

stdout: one JSON line per pair with `az_snp_vtpm_us`, `snp_us` (median over rounds of the mean
per call) and `ratio` = az_snp_vtpm_us / snp_us (the target is at most 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from trustee import _core
from trustee.bench.verify_rate import per_call_us
from trustee.simulate.azure import AzSnpVtpmPki, SimulatedAzSnpVtpmAttester
from trustee.simulate.snp import snp_evidence_json

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "trustee"
AZ_SNP = VECTORS / "deps" / "verifier" / "test_data" / "az-snp-vtpm" / "evidence-v1.json"
SNP = VECTORS / "attestation-service" / "tests" / "e2e" / "evidence.json"
# Inside both vectors' VCEK validity.
VECTOR_TIME = 1_750_000_000

Case = tuple[str, bytes, bytes | None]


def snp_report_data(evidence: bytes) -> bytes:
    return bytes(json.loads(evidence)["attestation_report"]["report_data"])


def measure(
    verifiers: _core.Verifiers,
    cases: list[Case],
    now: int,
    args: argparse.Namespace,
    certs: list[bytes] | None = None,
) -> list[float]:
    figures = []
    for tee, evidence, report_data in cases:
        call = (tee, evidence, report_data, None, now, None, certs or [])
        verifiers.verify(*call)  # the verdict first: it must pass
        figures.append(
            per_call_us(lambda c=call: verifiers.verify(*c), args.iterations, args.rounds)
        )
    return figures


def line(pair: str, az_us: float, snp_us: float) -> str:
    return json.dumps(
        {
            "pair": pair,
            "az_snp_vtpm_us": round(az_us, 1),
            "snp_us": round(snp_us, 1),
            "ratio": round(az_us / snp_us, 2),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args(argv)

    if AZ_SNP.is_file() and SNP.is_file():
        snp = SNP.read_bytes()
        cases: list[Case] = [
            ("az-snp-vtpm", AZ_SNP.read_bytes(), b"challenge"),
            ("snp", snp, snp_report_data(snp)),
        ]
        az_us, snp_us = measure(_core.Verifiers(), cases, VECTOR_TIME, args)
        print(line("real", az_us, snp_us), flush=True)
    else:
        print(f"the shared vectors are not present ({VECTORS}): real pair skipped", file=sys.stderr)

    pki = AzSnpVtpmPki.generate()
    report_data = hashlib.sha384(b"bench nonce").digest()
    guest = SimulatedAzSnpVtpmAttester(pki)
    az = json.dumps(guest.evidence(report_data, None)).encode()
    # Like the Azure guest, the plain one carries its VCEK (in its cert_chain).
    plain = snp_evidence_json(pki.snp.report(report_data), [("VCEK", pki.snp.vcek_der)])
    # The test ASK/ARK are not built in: trusted and handed over as the server's test
    # anchors (insecure_test_roots) would be.
    anchors = [pki.snp.ask_der, pki.snp.ark_der]
    verifiers = _core.Verifiers([hashlib.sha256(der).digest() for der in anchors])
    simulated: list[Case] = [("az-snp-vtpm", az, report_data), ("snp", plain, report_data)]
    az_us, snp_us = measure(verifiers, simulated, int(time.time()), args, anchors)
    print(line("simulated", az_us, snp_us), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
