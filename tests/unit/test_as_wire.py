"""The standalone AS's request shape: upstream's JSON body → EvidenceRequests, and back; raw
runtime data and init-data digests reach the verifier as the expected bytes themselves."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.unit.test_attestation_service import make_env, sample_request
from trustee.attestation import as_wire
from trustee.attestation.as_wire import AsBodyError, AsRequestError, Individual
from trustee.attestation.service import AttestationFailure
from trustee.crypto.b64 import b64url_encode
from trustee.protocol import binding

SAMPLE_EVIDENCE = {"svn": "1", "report_data": ""}


def evidence_b64(doc: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(doc).encode())


def body(**item: Any) -> dict[str, Any]:
    return {
        "verification_requests": [{"tee": "sample", "evidence": evidence_b64(SAMPLE_EVIDENCE)}]
        if not item
        else [item],
        "policy_ids": [],
    }


def test_a_body_round_trips_through_to_json() -> None:
    reqs = [
        sample_request(init_data_toml='version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'),
        sample_request(hash_algorithm="sha512"),
    ]
    items, ids = as_wire.from_json(json.loads(json.dumps(as_wire.to_json(reqs, ["p1"]))))
    assert ids == ["p1"]
    assert [as_wire.evidence_request(i) for i in items] == reqs


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([], "must be a JSON object"),
        ({"policy_ids": []}, "missing field `verification_requests`"),
        ({"verification_requests": []}, "missing field `policy_ids`"),
        ({"verification_requests": {}, "policy_ids": []}, "must be an array"),
        ({"verification_requests": [], "policy_ids": [1]}, "array of strings"),
        ({"verification_requests": [{"tee": "sample"}], "policy_ids": []}, "`evidence`"),
        (body(tee="sample", evidence="e30", runtime_data={"json": {}}), "one of: raw"),
        (body(tee="sample", evidence="e30", runtime_data={"raw": 5}), "must be a string"),
        (body(tee="sample", evidence="e30", init_data={"a": 1, "b": 2}), "init_data"),
    ],
)
def test_bodies_of_the_wrong_shape_are_refused(doc: Any, needle: str) -> None:
    with pytest.raises(AsBodyError, match=needle):
        as_wire.from_json(doc)


@pytest.mark.parametrize(
    ("item", "chain0"),
    [
        (Individual("sample", "e30="), "base64 decode evidence"),
        (Individual("sample", b64url_encode(b"not json")), "failed to parse evidence as JSON"),
        (Individual("pdp11", "e30"), "tee `pdp11` not supported"),
        (Individual("sample", "e30", hash_algorithm="md5"), "HashAlgorithm"),
        (Individual("sample", "e30", runtime_data=("raw", "!!")), "decode given Runtime Data"),
        (Individual("sample", "e30", init_data=("init_data_digest", "@")), "Init Data"),
    ],
)
def test_unusable_values_name_what_failed(item: Individual, chain0: str) -> None:
    with pytest.raises(AsRequestError) as caught:
        as_wire.evidence_request(item)
    assert chain0 in caught.value.chain[0]


def test_no_policy_ids_means_default() -> None:
    assert as_wire.policy_ids([]) == ["default"]
    assert as_wire.policy_ids(["a", "b"]) == ["a", "b"]


async def test_raw_runtime_data_is_the_expected_report_data_itself() -> None:
    env = await make_env()
    raw = hashlib.sha384(b"anything the caller bound").digest()
    evidence = {"svn": "1", "report_data": base64.b64encode(raw).decode()}
    item = Individual("sample", evidence_b64(evidence), runtime_data=("raw", b64url_encode(raw)))
    appraised = await env.service.evaluate([as_wire.evidence_request(item)], ["default"])
    claims = env.verified_claims(appraised.token)
    annotated = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert annotated["runtime_data_claims"] is None
    # A different raw value no longer matches the evidence.
    other = Individual(
        "sample", evidence_b64(evidence), runtime_data=("raw", b64url_encode(b"x" * 48))
    )
    with pytest.raises(AttestationFailure, match="Verifier evaluate failed"):
        await env.service.evaluate([as_wire.evidence_request(other)], ["default"])


async def test_structured_runtime_data_becomes_the_claims() -> None:
    env = await make_env()
    runtime = {"nonce": "n", "tee-pubkey": {"kty": "EC"}}
    report = base64.b64encode(binding.runtime_data_digest(runtime, "sha512")).decode()
    item = Individual(
        "sample",
        evidence_b64({"svn": "1", "report_data": report}),
        runtime_data=("structured", runtime),
        hash_algorithm="SHA512",
    )
    appraised = await env.service.evaluate([as_wire.evidence_request(item)], ["default"])
    annotated = env.verified_claims(appraised.token)["submods"]["cpu0"][
        "ear.veraison.annotated-evidence"
    ]
    assert annotated["runtime_data_claims"] == runtime
