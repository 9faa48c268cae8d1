#!/usr/bin/env python3
"""Our full SNP verification of the e2e evidence against one bare P-384 ECDSA verify.

Run from the repository root with the project's venv:

    .venv/bin/python benches/verify_snp.py [--rounds 7] [--iterations 200]

ours: `trustee._core.Verifiers().verify("snp", evidence, …)` on upstream's e2e evidence JSON
(Genoa, VCEK in its cert_chain; the Genoa ASK/ARK supplied as certificates, as a KDS fetch or the
evidence would supply them), judged inside the VCEK's validity, with one long-lived `Verifiers`:
the ARK → ASK → VCEK chain is memoised after the first call; every call still decodes the JSON,
re-encodes the 1184-byte report, checks its P-384 signature, the validity periods, the TCB and
chip ID, VMPL and builds the claims.

p384: `cryptography` (OpenSSL) verifying one ECDSA P-384/SHA-384 signature over 0x2A0 bytes —
the one operation no SNP verifier can skip.

Each figure is the median over rounds of the mean per call. The last stdout line is a JSON object
with `ours_us`, `p384_us`, `ratio` = ours_us / p384_us.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustee.bench.verify_rate import ours_calls, per_call_us, prepare_offline, verdict

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "trustee"
EVIDENCE = VECTORS / "attestation-service" / "tests" / "e2e" / "evidence.json"
ANCHORS = VECTORS / "deps" / "verifier" / "src" / "snp" / "genoa_ask_ark_asvk.pem"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args(argv)
    if not EVIDENCE.is_file():
        print(f"the shared vectors are not present ({EVIDENCE})", file=sys.stderr)
        return 2
    # The ASK/ARK bundle goes where `trustee verify --vcek` puts it: beside the evidence's VCEK.
    prepared = prepare_offline("snp", EVIDENCE, vcek=ANCHORS, at="2025-07-01T00:00:00Z")
    claims = verdict(prepared)
    print(f"ours: verified, measurement {claims['measurement'][:16]}…", file=sys.stderr)
    ours = ours_calls(prepared)["ours_warm"]

    key = ec.generate_private_key(ec.SECP384R1())
    signed = bytes(range(256)) * 2 + bytes(0x2A0 - 512)
    signature = key.sign(signed, ec.ECDSA(hashes.SHA384()))
    public = key.public_key()

    def p384() -> None:
        public.verify(signature, signed, ec.ECDSA(hashes.SHA384()))

    ours_us = per_call_us(ours, args.iterations, args.rounds)
    p384_us = per_call_us(p384, args.iterations, args.rounds)
    line = {
        "ours_us": round(ours_us, 1),
        "p384_us": round(p384_us, 1),
        "ratio": round(ours_us / p384_us, 2),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
