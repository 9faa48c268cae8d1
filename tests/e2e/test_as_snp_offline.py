"""Real SNP evidence whose cert_chain holds only its VCEK, through a `trustee as serve` process
configured with no VCEK source: AMD's ASK/ARK are built into the verifier, so nothing is
fetched and the attestation succeeds offline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.as_requests import annotated, attest, verified_claims
from tests.e2e.harness import run_as
from tests.support.shared import vectors_dir
from trustee.crypto.b64 import b64url_encode

E2E_EVIDENCE = "trustee/attestation-service/tests/e2e/evidence.json"


async def test_real_snp_evidence_attests_with_no_kds_configured(tmp_path: Path) -> None:
    raw = (vectors_dir() / E2E_EVIDENCE).read_bytes()
    report = json.loads(raw)["attestation_report"]
    report_data = bytes(report["report_data"])
    config = {
        "work_dir": str(tmp_path / "as"),
        "rvps_config": {"type": "BuiltIn"},
        "attestation_token_broker": {"duration_min": 5},
        "verifier_config": {},  # no kds_url, vek_dir or snp_verifier
    }

    def request(runtime: bytes) -> dict[str, object]:
        return {
            "verification_requests": [
                {
                    "tee": "snp",
                    "evidence": b64url_encode(raw),
                    "runtime_data": {"raw": b64url_encode(runtime)},
                }
            ],
            "policy_ids": [],
        }

    async with run_as(json.dumps(config), tmp_path) as service, service.client() as http:
        r = await attest(http, request(report_data))
        assert r.status_code == 200, r.text
        claims = await verified_claims(http, r.text)
        evidence = annotated(claims)
        # The report's REPORT_DATA, lifted beside the TEE claims as upstream does.
        assert evidence["report_data"] == report_data.hex()
        assert evidence["runtime_data_claims"] is None
        assert evidence["snp"]["product"] == "Genoa"
        assert evidence["snp"]["measurement"] == bytes(report["measurement"]).hex()
        # Bound to other runtime data than the report carries: refused.
        r = await attest(http, request(bytes(64)))
        assert r.status_code == 500
        assert "evidence[0] (snp)" in r.text
    log = service.log_text()
    assert "KDS" not in log and "could not be fetched" not in log, log
