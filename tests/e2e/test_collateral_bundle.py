"""Air-gapped verification: `trustee collateral fetch` against PCS/KDS-shaped servers, then a
KBS configured with `collateral_bundle` alone serves simulated TDX and SNP guests.

The KBS names no other collateral source, so without the bundle it would go to Intel PCS and
AMD KDS (unreachable here) and refuse both guests.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs, run_module
from tests.e2e.simulated import simulated_pkis
from tests.unit.bundle_support import kds_routes, pcs_routes, snp_chip
from tests.unit.collateral_support import serve
from trustee.client.attesters import AttesterSet
from trustee.client.generations import GENERATIONS, Challenge
from trustee.crypto.jws import split_compact
from trustee.simulate import SnpTestPki, TdxTestPki
from trustee.simulate.snp import snp_evidence


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return simulated_pkis(tmp_path_factory.mktemp("simulated"))


async def fetch_bundle(
    tdx: Path, snp: Path, out: Path, issued: datetime.datetime | None = None
) -> None:
    tdx_pki, snp_pki = TdxTestPki.load(tdx / "pki"), SnpTestPki.load(snp / "pki")
    with serve({**pcs_routes(tdx_pki, issued), **kds_routes(snp_pki)}) as server:
        code, out_text, err = await run_module(
            "trustee.cli", "collateral", "fetch", "--pcs-url", server.url,
            "--kds-url", server.url, "--kds-min-interval", "0",
            "--tdx-fmspc", f"{tdx_pki.platform.fmspc.hex()}:platform",
            "--snp-chip", snp_chip(snp_pki), "--out", str(out),
        )  # fmt: skip
    assert code == 0, err
    assert f"wrote {out} (4 members)" in out_text


def config(tdx: Path, snp: Path, bundle: Path, audit: Path) -> str:
    return DEV_CONFIG + (
        "[attestation_service.verifier_config]\n"
        f'insecure_test_roots = ["{tdx / "tdx-test-root.pem"}", "{snp / "snp-test-ark-ask.pem"}"]\n'
        f'collateral_bundle = "{bundle}"\n'
        f'[[audit.sinks]]\ntype = "file"\npath = "{audit}"\n'
    )


class SnpGuestWithoutVcek:
    """A simulated SNP guest whose evidence has no certificate table: the verifier must find
    the VCEK (and the ASK/ARK) elsewhere."""

    tee = "snp"

    def __init__(self, pki: SnpTestPki) -> None:
        self.pki = pki

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        host_data = (init_data_digest or b"")[:32]
        return snp_evidence(self.pki.report(report_data[:64], host_data=host_data), None)


async def attest_snp_without_vcek(kbs: RunningKbs, pki: SnpTestPki) -> dict[str, Any]:
    """/auth and /attest as the guest: the token's claims."""
    generation = GENERATIONS["0.4.0"]
    attesters = AttesterSet(primary=SnpGuestWithoutVcek(pki))
    jwk = generation.tee_public_jwk(generation.generate_tee_key())
    async with kbs.client() as http:
        r = await http.post("/kbs/v0/auth", json=generation.auth_request("snp"))
        assert r.status_code == 200, r.text
        body = generation.attestation(Challenge.parse(r.content), jwk, attesters, None)
        r = await http.post("/kbs/v0/attest", json=body)
        assert r.status_code == 200, f"{r.text}\n{kbs.log_text()[-2000:]}"
        claims: dict[str, Any] = split_compact(r.json()["token"]).claims()
        return claims


def tdx_claims(token: str) -> dict[str, Any]:
    claims = split_compact(token.strip()).claims()
    found: dict[str, Any] = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]
    return found


async def test_a_kbs_with_only_a_bundle_serves_tdx_and_snp_guests(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    bundle = tmp_path / "bundle.tar"
    await fetch_bundle(tdx, snp, bundle)
    code, out, err = await run_module(
        "trustee.cli", "collateral", "verify", str(bundle),
        "--insecure-test-root", str(tdx / "tdx-test-root.pem"),
        "--insecure-test-root", str(snp / "snp-test-ark-ask.pem"),
    )  # fmt: skip
    assert (code, err) == (0, ""), out
    assert len(out.splitlines()) == 4
    audit = tmp_path / "audit.jsonl"
    async with run_kbs(config(tdx, snp, bundle, audit), tmp_path) as kbs:
        code, token, err = await run_module(
            "trustee.client.cli", "--url", kbs.url, "attest",
            env={"TRUSTEE_SIMULATED_TEE": "tdx", "TRUSTEE_SIMULATED_PKI": str(tdx / "pki")},
        )  # fmt: skip
        assert code == 0, f"{err}\n{kbs.log_text()[-3000:]}"
        assert tdx_claims(token)["tcb_status"] == "UpToDate"
        assert tdx_claims(token)["collateral_expiration_status"] == "0"
        claims = await attest_snp_without_vcek(kbs, SnpTestPki.load(snp / "pki"))
        annotated = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["snp"]
        assert annotated["chip_id"] == SnpTestPki.load(snp / "pki").chip_id.hex()
        assert "collateral_bundle" in kbs.log_text()
    fetched = [json.loads(line) for line in audit.read_text().splitlines() if "fetched" in line]
    assert [event["data"]["source"] for event in fetched] == ["BundleTdxSource"]


async def test_an_expired_bundle_serves_and_the_appraisal_says_expired(
    pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    bundle = tmp_path / "old.tar"
    await fetch_bundle(
        tdx, snp, bundle, datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    )
    audit = tmp_path / "audit.jsonl"
    async with run_kbs(config(tdx, snp, bundle, audit), tmp_path) as kbs:
        code, token, err = await run_module(
            "trustee.client.cli", "--url", kbs.url, "attest",
            env={"TRUSTEE_SIMULATED_TEE": "tdx", "TRUSTEE_SIMULATED_PKI": str(tdx / "pki")},
        )  # fmt: skip
        assert code == 0, f"{err}\n{kbs.log_text()[-3000:]}"
    assert tdx_claims(token)["collateral_expiration_status"] == "1"
    expired = [
        json.loads(line)
        for line in audit.read_text().splitlines()
        if '"org.trustee-py.collateral.expired"' in line
    ]
    assert len(expired) == 1 and expired[0]["data"]["key"].endswith("/platform")
