"""The standalone Attestation Service's REST API against a real `trustee as serve` process:
upstream's routes, bodies, status codes and texts, with sample and simulated TDX/SNP evidence,
structured and raw runtime data, init-data as TOML and as a digest; tokens verify against the
service's JWKS; policies round-trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.as_requests import (
    JSON_HEADERS,
    annotated,
    attest,
    body,
    hardware_attester,
    hardware_config,
    verified_claims,
)
from tests.e2e.harness import run_as
from tests.e2e.simulated import simulated_pkis
from trustee.client.as_client import Binding
from trustee.client.attesters import SampleAttester
from trustee.crypto.b64 import b64std_encode, b64url_encode

INIT_TOML = {
    # SNP's HOST_DATA holds 32 bytes: a SHA-256 init-data fits it, TDX's MRCONFIGID takes 48.
    "tdx": 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"aa.toml" = "x = 1"\n',
    "snp": 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "x = 1"\n',
}
CHAIN = "An internal error occured: \n"


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return simulated_pkis(tmp_path_factory.mktemp("simulated"))


async def test_sample_evidence_with_structured_and_raw_runtime_data(tmp_path: Path) -> None:
    runtime_data = {"nonce": "abc", "tee-pubkey": {"kty": "EC", "crv": "P-256"}}
    async with run_as(None, tmp_path) as service, service.client() as http:
        r = await attest(http, body(SampleAttester(), Binding(runtime_data=runtime_data)))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        claims = await verified_claims(http, r.text)
        evidence = annotated(claims)
        assert evidence["runtime_data_claims"] == runtime_data
        assert evidence["sample"]["svn"] == "1"
        assert claims["submods"]["cpu0"]["ear.appraisal-policy-id"] == "default"
        # Raw runtime data is the report data as it is, with no hashing.
        raw = bytes(range(64))
        r = await attest(http, body(SampleAttester(), Binding(raw_runtime_data=raw)))
        assert r.status_code == 200, r.text
        evidence = annotated(await verified_claims(http, r.text))
        assert evidence["runtime_data_claims"] is None  # upstream's null for raw data
        assert evidence["report_data"] == b64std_encode(raw)
        # Evidence bound to other data than the request says: refused with the check's path.
        doc = body(SampleAttester(), Binding(raw_runtime_data=raw))
        doc["verification_requests"][0]["runtime_data"] = {"raw": b64url_encode(bytes(64))}
        r = await attest(http, doc)
        assert r.status_code == 500
        assert r.text.startswith(CHAIN + "0: attestation report evaluate\n1: evidence[0] (sample)")
        # Our alias of the JWKS route answers the same set.
        assert (await http.get("/jwks")).json() == (await http.get("/.well-known/jwks.json")).json()


@pytest.mark.parametrize("tee", ["tdx", "snp"])
async def test_simulated_hardware_with_init_data_as_toml_and_as_digest(
    tee: str, pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    tdx, snp = pkis
    attester = hardware_attester(tee, tdx if tee == "tdx" else snp)
    toml = INIT_TOML[tee]
    algorithm = "sha384" if tee == "tdx" else "sha256"
    digest = hashlib.new(algorithm, toml.encode()).digest()
    async with (
        run_as(hardware_config(tdx, snp, tmp_path / "as"), tmp_path) as service,
        service.client() as http,
    ):
        bound = Binding(runtime_data={"nonce": "n"}, init_data_toml=toml)
        r = await attest(http, body(attester, bound))
        assert r.status_code == 200, r.text
        evidence = annotated(await verified_claims(http, r.text))
        assert evidence["init_data_claims"] == {"aa.toml": {"x": 1}}
        assert evidence["runtime_data_claims"] == {"nonce": "n"}
        if tee == "tdx":
            assert evidence["tdx"]["quote"]["body"]["mr_config_id"] == digest.hex()
        else:
            assert evidence["snp"]["host_data"] == digest.hex()
        # The digest alone binds the same init-data, without its claims.
        digest_only = Binding(
            runtime_data={"nonce": "n"}, init_data_toml=toml, send_init_data_digest=True
        )
        r = await attest(http, body(attester, digest_only))
        assert r.status_code == 200, r.text
        assert annotated(await verified_claims(http, r.text))["init_data_claims"] is None
        # Other init-data than the evidence carries: the binding check refuses it.
        doc = body(attester, bound)
        other = toml.replace("x = 1", "x = 2")
        doc["verification_requests"][0]["init_data"] = {"init_data_toml": other}
        r = await attest(http, doc)
        assert r.status_code == 500
        assert r.text.startswith(
            CHAIN + "0: attestation report evaluate\n1: evidence[0] " + f"({tee})"
        )
    assert "insecure_test_roots" in service.log_text()


def _with(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    changed: dict[str, Any] = json.loads(json.dumps(doc))
    changed["verification_requests"][0].update(fields)
    return changed


async def test_bad_bodies_get_upstreams_status_and_text(tmp_path: Path) -> None:
    good = body(SampleAttester())
    async with run_as(None, tmp_path) as service, service.client() as http:
        r = await http.post("/attestation", content=json.dumps(good))
        assert (r.status_code, r.text) == (400, "Content type error")
        r = await http.post("/attestation", content="{", headers=JSON_HEADERS)
        assert r.status_code == 400 and r.text.startswith("Json deserialize error: ")
        r = await attest(http, {"verification_requests": []})
        assert (r.status_code, r.text) == (
            400,
            "Json deserialize error: missing field `policy_ids`",
        )
        r = await attest(http, {"verification_requests": [{"tee": "sample"}], "policy_ids": []})
        assert r.status_code == 400 and "`evidence`" in r.text
        cases = [
            ({"verification_requests": [], "policy_ids": []},
             "0: attestation report evaluate\n1: No verification requests provided."),
            (_with(good, tee="floppy"), "0: tee `floppy` not supported"),
            (_with(good, evidence="!!"), "0: base64 decode evidence\n1: "),
            (_with(good, evidence=b64url_encode(b"not json")),
             "0: failed to parse evidence as JSON\n1: "),
            (_with(good, runtime_data_hash_algorithm="md5"),
             "0: parse runtime data HashAlgorithm failed\n1: "),
            (_with(good, runtime_data={"raw": "*"}), "0: decode given Runtime Data\n1: "),
        ]  # fmt: skip
        for doc, text in cases:
            r = await attest(http, doc)
            assert r.status_code == 500, doc
            assert r.text.startswith(CHAIN + text), r.text
        deep = "[" * 200 + "]" * 200
        r = await http.post("/attestation", content=deep, headers=JSON_HEADERS)
        assert r.status_code == 400 and r.text.startswith("Json deserialize error: ")
        big = b'{"verification_requests": "' + b"a" * (3 << 20) + b'"}'
        r = await http.post("/attestation", content=big, headers=JSON_HEADERS)
        assert r.status_code == 413
        assert r.text == (
            f"JSON payload ({len(big)} bytes) is larger than allowed (limit: 2097152 bytes)."
        )
        assert (await http.get("/attestation")).status_code == 405
        assert (await http.get("/nowhere")).status_code == 404
        # After all that, the same server still serves a good request.
        assert (await attest(http, good)).status_code == 200


REGO = """package policy
import rego.v1
default executables := 33
executables := 2 if input.sample.svn == "1"
trust_claims := {"executables": executables, "hardware": 2}
"""


async def test_policies_round_trip_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    async with run_as(None, tmp_path) as service, service.client() as http:
        upload = {"policy_id": "strict_cpu", "policy": b64url_encode(REGO.encode())}
        r = await http.post("/policy", json=upload)
        assert (r.status_code, r.text) == (200, "")
        listed = (await http.get("/policy")).json()
        assert {"policy-id": "strict_cpu"} in listed
        assert {"policy-id": "default_cpu"} in listed
        r = await http.get("/policy/strict_cpu")
        assert (r.status_code, r.text) == (200, REGO)
        # Appraised with it: the token names the policy id and carries its trust claims.
        r = await attest(http, body(SampleAttester(), policy_ids=("strict",)))
        assert r.status_code == 200, r.text
        submod = (await verified_claims(http, r.text))["submods"]["cpu0"]
        assert submod["ear.appraisal-policy-id"] == "strict"
        assert submod["ear.trustworthiness-vector"]["executables"] == 2
        assert submod["ear.status"] == "affirming"
        # A policy that does not compile is refused with the engine's words; nothing stored.
        broken = {"policy_id": "broken_cpu", "policy": b64url_encode(b"package policy\nallow if {")}
        r = await http.post("/policy", json=broken)
        assert r.status_code == 500
        assert r.text.startswith(CHAIN + "0: set policy\n1: Failed to load policy: ")
        assert "policy.rego" in r.text or "error" in r.text
        r = await http.get("/policy/broken_cpu")
        assert r.status_code == 500
        assert (
            r.text
            == CHAIN + "0: get policy\n1: Cannot Get Policy\n2: Policy `broken_cpu.rego` not found"
        )
        r = await http.post("/policy", json={"policy": "eA"})
        assert (r.status_code, r.text) == (400, "Json deserialize error: missing field `policy_id`")
        r = await http.post("/policy", json={"policy_id": "x_cpu", "policy": "***"})
        assert r.status_code == 500 and r.text.startswith(CHAIN + "0: set policy\n1: ")


async def test_challenge_as_upstream_answers_it(tmp_path: Path) -> None:
    async with run_as(None, tmp_path) as service, service.client() as http:
        r = await http.post("/challenge", json={"tee": "sample", "tee_params": ""})
        assert (r.status_code, r.text) == (200, "")
        r = await http.post("/challenge", json={"tee": "tdx", "tee_params": "{}"})
        assert (r.status_code, r.text) == (200, "")
        r = await http.post("/challenge", json={"tee_params": ""})
        assert (r.status_code, r.text) == (500, CHAIN + "0: Failed to get inner tee")
        r = await http.post("/challenge", json={"tee": "sample"})
        assert (r.status_code, r.text) == (500, CHAIN + "0: Failed to get inner tee_params")
        r = await http.post("/challenge", json={"tee": "floppy", "tee_params": ""})
        assert (r.status_code, r.text) == (500, CHAIN + "0: tee `floppy` not supported")
        r = await http.post("/challenge", json={"tee": "se", "tee_params": ""})
        assert r.status_code == 500 and r.text.startswith(CHAIN + "0: generate challenge\n1: ")
        r = await http.post("/challenge", json={"tee": 3})
        assert r.status_code == 400 and r.text.startswith("Json deserialize error: ")
