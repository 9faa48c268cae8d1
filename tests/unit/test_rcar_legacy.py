"""Legacy generations on the server side, with the byte-exact bodies of the legacy spec."""

from __future__ import annotations

import base64
import json

import pytest

from trustee.protocol import binding, rcar
from trustee.protocol.errors import KbsError

NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
# RFC 7517 Appendix A.1 RSA public key, exported with alg RSA1_5 as 0.1.x clients do.
RFC_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvz"
    "qY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZ"
    "u0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
G1_BODY = (
    '{"tee-pubkey":{"kty":"RSA","alg":"RSA1_5","n":"' + RFC_N + '","e":"AQAB"},'
    '"tee-evidence":{"report_data":"UsbUQEYqzIL35lTN47l6MjhK+9U1DhEBOxUMjaRcKCZj3vl0Ka9jk97o7w+PSFYS",'
    '"svn":"1"}}'
)
G2_BODY = (
    '{"tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",'
    '"x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY","y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"},'
    '"tee-evidence":{"report_data":"HwYopprBMkU3g8+j4pvsVOtFrX6r1XlHU88L8F7L8s3AHRggFJoyTRagMeHxMHiP",'
    '"svn":"1"}}'
)


def session(version: str, extra: object = "") -> rcar.Session:
    body = json.dumps({"version": version, "tee": "sample", "extra-params": extra}).encode()
    req = rcar.parse_auth_request(body, ["0.1.0", "0.1.1", "0.2.0", "0.4.0"])
    s = rcar.new_session(req, 5, 0.0)
    s.nonce = NONCE
    return s


def test_generation_is_the_matched_version() -> None:
    assert session("0.1.1", {"supported-hash-algorithms": ["sha384"]}).generation == "0.1.1"
    assert session("0.2.0+build").generation == "0.2.0"
    with pytest.raises(KbsError, match="deserialize Request"):
        session("0.1.0", {"an": "object"})  # kbs-types 0.6 typed extra-params as a string


@pytest.mark.parametrize(
    ("version", "body", "digest_hex"),
    [
        (
            "0.1.1",
            G1_BODY,
            "52c6d440462acc82f7e654cde3b97a32384afbd5350e11013b150c8da45c2826"
            "63def97429af6393dee8ef0f8f485612",
        ),
        (
            "0.2.0",
            G2_BODY,
            "1f0628a69ac132453783cfa3e29bec54eb45ad7eabd5794753cf0bf05ecbf2cd"
            "c01d1820149a324d16a031e1f130788f",
        ),
    ],
)
def test_legacy_binding_matches_the_worked_examples(
    version: str, body: str, digest_hex: str
) -> None:
    s = session(version)
    (req,) = rcar.evidence_requests(s, rcar.parse_attestation(body.encode(), version))
    assert req.runtime_data is not None and set(req.runtime_data) == {"nonce", "tee-pubkey"}
    digest = binding.runtime_data_digest(req.runtime_data, req.hash_algorithm)
    assert digest.hex() == digest_hex
    assert base64.b64encode(digest).decode() == req.evidence["report_data"]


def test_g0_evidence_is_a_json_string() -> None:
    s = session("0.1.0")
    body = json.loads(G1_BODY)
    body["tee-evidence"] = json.dumps({"svn": "1", "report_data": "x"})
    (req,) = rcar.evidence_requests(s, rcar.parse_attestation(json.dumps(body).encode(), "0.1.0"))
    assert req.evidence == {"svn": "1", "report_data": "x"}
    with pytest.raises(KbsError, match="Attest failed"):
        rcar.parse_attestation(G1_BODY.encode(), "0.1.0")  # an object is not 0.1.0


@pytest.mark.parametrize(
    ("version", "body"),
    [
        ("0.1.1", json.dumps({"runtime-data": {}, "tee-evidence": {}})),
        ("0.4.0", G1_BODY),
        ("0.1.1", G1_BODY.replace('"kty":"RSA"', '"kty":"AKP"')),
        ("0.2.0", json.dumps({"tee-pubkey": {"kty": "RSA", "alg": "RSA1_5", "n": "x", "e": "y"}})),
    ],
)
def test_generation_mismatch_and_bad_legacy_bodies(version: str, body: str) -> None:
    with pytest.raises(KbsError) as info:
        rcar.parse_attestation(body.encode(), version)
    assert info.value.detail == "Attestation error: RCAR handshake Attest failed"


def test_legacy_azure_spellings_are_accepted() -> None:
    body = json.dumps({"version": "0.1.1", "tee": "azsnpvtpm", "extra-params": ""}).encode()
    assert rcar.parse_auth_request(body, ["0.1.1"]).tee == "azsnpvtpm"
