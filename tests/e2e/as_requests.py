"""What the standalone Attestation Service's e2e tests send and check: request bodies with
fresh evidence, and tokens verified against the service's own JWKS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from trustee.attestation import as_wire
from trustee.client.as_client import Binding, evidence_request
from trustee.client.attesters import Attester
from trustee.crypto.jwk import public_key_from_jwk
from trustee.crypto.jws import split_compact, verify_signature
from trustee.simulate import SimulatedSnpAttester, SimulatedTdxAttester, SnpTestPki, TdxTestPki

JSON_HEADERS = {"Content-Type": "application/json"}


def body(
    attester: Attester, bound: Binding | None = None, policy_ids: tuple[str, ...] = ()
) -> dict[str, Any]:
    request = evidence_request(attester, bound or Binding(runtime_data={"nonce": "n-1"}))
    return as_wire.to_json([request], list(policy_ids))


async def attest(http: httpx.AsyncClient, doc: Any) -> httpx.Response:
    return await http.post("/attestation", content=json.dumps(doc), headers=JSON_HEADERS)


async def verified_claims(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """The token's claims, after its ES256 signature verified with the service's JWKS."""
    jwks = (await http.get("/.well-known/jwks.json")).json()
    parsed = split_compact(token)
    assert parsed.header["alg"] == "ES256"
    (key,) = jwks["keys"]
    verify_signature("ES256", public_key_from_jwk(key), parsed.signing_input, parsed.signature)
    return parsed.claims()


def annotated(claims: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    return result


def hardware_attester(tee: str, directory: Path) -> Attester:
    if tee == "tdx":
        return SimulatedTdxAttester(TdxTestPki.load(directory / "pki"))
    return SimulatedSnpAttester(SnpTestPki.load(directory / "pki"))


def hardware_config(tdx: Path, snp: Path, work_dir: Path) -> str:
    """Upstream's JSON config keys, with the simulated PKIs trusted."""
    return json.dumps(
        {
            "work_dir": str(work_dir),
            "rvps_config": {"type": "BuiltIn"},
            "attestation_token_broker": {"duration_min": 5},
            "verifier_config": {
                "insecure_test_roots": [
                    str(tdx / "tdx-test-root.pem"),
                    str(snp / "snp-test-ark-ask.pem"),
                ],
                "collateral": str(tdx / "tdx-collateral.json"),
            },
        }
    )
