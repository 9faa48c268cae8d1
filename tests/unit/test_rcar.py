from __future__ import annotations

import base64
import json

import pytest

from trustee.protocol import rcar
from trustee.protocol.errors import KbsError

ACCEPTED = ["0.4.0"]


def auth_body(**over: object) -> bytes:
    doc: dict[str, object] = {"version": "0.4.0", "tee": "sample", "extra-params": ""}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_auth_request_parses_and_keeps_nothing_of_extra_params() -> None:
    extra = {"supported-hash-algorithms": ["sha384", "sha512"]}
    req = rcar.parse_auth_request(auth_body(**{"extra-params": extra}), ACCEPTED)
    assert (req.version, req.tee, req.generation) == ("0.4.0", "sample", "0.4.0")
    session = rcar.new_session(req, 5, 0.0)
    assert extra not in vars(session).values() and extra not in vars(req).values()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "deserialize Request"),
        (b'{"version":"0.4.0","tee":"sample"', "deserialize Request"),
        (auth_body(tee="sev"), "deserialize Request"),
        (auth_body(**{"extra-params": None}), "deserialize Request"),
        (auth_body(version="four"), "failed to parse KBS version"),
        (
            auth_body(version="0.3.0"),
            "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.3.0",
        ),
        (auth_body(version="9.9.9"), "KBS Client Protocol Version Mismatch"),
        (auth_body(version="0.4.0-rc1"), "KBS Client Protocol Version Mismatch"),
        # serde_json refuses what Python's json module would read as floats.
        (b'{"version":"0.4.0","tee":"sample","extra-params":NaN}', "deserialize Request"),
        (b'{"version":"0.4.0","tee":"sample","extra-params":Infinity}', "deserialize Request"),
        (b'{"version":"0.4.0","tee":"sample","extra-params":[-Infinity]}', "deserialize Request"),
        (b'{"version":"0.4.0","tee":"sample","extra-params":1e999}', "deserialize Request"),
        (b'\xff{"version":"0.4.0"}', "deserialize Request"),
    ],
)
def test_auth_request_rejects(body: bytes, needle: str) -> None:
    with pytest.raises(KbsError) as info:
        rcar.parse_auth_request(body, ACCEPTED)
    assert info.value.status == 401
    assert info.value.variant == "AttestationError"
    assert needle in info.value.detail


def test_build_metadata_is_ignored() -> None:
    assert rcar.parse_auth_request(auth_body(version="0.4.0+abc"), ACCEPTED).version == "0.4.0+abc"


def test_nonce_is_44_char_std_b64_and_unique() -> None:
    nonces = {rcar.make_nonce() for _ in range(100)}
    assert len(nonces) == 100
    for n in nonces:
        assert len(n) == 44 and n.endswith("=")
        assert len(base64.b64decode(n, validate=True)) == 32


def test_challenge_and_cookie_form() -> None:
    session = rcar.new_session(rcar.parse_auth_request(auth_body(), ACCEPTED), 5, 1767225600.0)
    assert len(session.id) == 32 and int(session.id, 16) >= 0
    raw = rcar.challenge_body(session)
    assert raw == b'{"nonce":"' + session.nonce.encode() + b'","extra-params":""}'  # compact
    body = json.loads(raw)
    assert list(body) == ["nonce", "extra-params"] and body["extra-params"] == ""
    cookie = rcar.set_cookie_value(session)
    assert cookie == f"kbs-session-id={session.id}; Expires=Thu, 01 Jan 2026 00:05:00 GMT"


def _attestation(nonce: str, **over: object) -> bytes:
    doc: dict[str, object] = {
        "init-data": None,
        "runtime-data": {
            "nonce": nonce,
            "tee-pubkey": {
                "kty": "EC",
                "crv": "P-256",
                "alg": "ECDH-ES+A256KW",
                "x": "a",
                "y": "b",
                "extra": "dropped",
            },
        },
        "tee-evidence": {"primary_evidence": {"svn": "1"}, "additional_evidence": ""},
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_evidence_requests_bind_session_nonce_and_typed_key() -> None:
    session = rcar.new_session(rcar.parse_auth_request(auth_body(), ACCEPTED), 5, 0.0)
    att = rcar.parse_attestation(_attestation(session.nonce))
    (primary,) = rcar.evidence_requests(session, att)
    assert primary.hash_algorithm == "sha384"
    assert primary.runtime_data == {
        "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "a", "y": "b"},
        "nonce": session.nonce,
        "additional-evidence": "",
    }


def test_additional_evidence_becomes_device_requests() -> None:
    session = rcar.new_session(rcar.parse_auth_request(auth_body(), ACCEPTED), 5, 0.0)
    devices = json.dumps({"sampledevice": {"svn": "2", "report_data": ""}})
    att = rcar.parse_attestation(
        _attestation(
            session.nonce,
            **{"tee-evidence": {"primary_evidence": {}, "additional_evidence": devices}},
        )
    )
    primary, device = rcar.evidence_requests(session, att)
    assert primary.runtime_data is not None
    assert primary.runtime_data["additional-evidence"] == devices
    assert device.tee == "sampledevice"
    assert device.runtime_data is not None and set(device.runtime_data) == {"tee-pubkey", "nonce"}


def test_wrong_nonce_and_bad_init_data_format_fail() -> None:
    session = rcar.new_session(rcar.parse_auth_request(auth_body(), ACCEPTED), 5, 0.0)
    with pytest.raises(KbsError) as info:
        rcar.evidence_requests(session, rcar.parse_attestation(_attestation("AAAA")))
    assert info.value.detail == "Attestation error: RCAR handshake Attest failed"
    assert info.value.reason is not None and "nonce" in info.value.reason
    att = rcar.parse_attestation(
        _attestation(session.nonce, **{"init-data": {"format": "json", "body": "{}"}})
    )
    with pytest.raises(KbsError, match="Attest failed"):
        rcar.evidence_requests(session, att)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        json.dumps({"runtime-data": {}, "tee-evidence": {}}).encode(),
        json.dumps(
            {
                "runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "OKP"}},
                "tee-evidence": {"primary_evidence": 1},
            }
        ).encode(),
        json.dumps(
            {
                "runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "RSA", "alg": "x", "n": 1}},
                "tee-evidence": {"primary_evidence": 1},
            }
        ).encode(),
    ],
)
def test_malformed_attestation_bodies(body: bytes) -> None:
    with pytest.raises(KbsError, match="Attest failed"):
        rcar.parse_attestation(body)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (auth_body(**{"extra-params": [[]] * 6000}), "/auth body of"),
        (b'{"version":"0.4.0","tee":"sample","extra-params":' + b"[" * 10_000, "64 levels"),
        (auth_body(version="0.4.0+" + "a" * 100), "`version` of 106 characters"),
    ],
)
def test_auth_limits_answer_400(body: bytes, needle: str) -> None:
    with pytest.raises(KbsError) as info:
        rcar.parse_auth_request(body, ACCEPTED)
    assert (info.value.status, info.value.variant) == (400, "InputLimitExceeded")
    assert info.value.reason is not None and needle in info.value.reason
    assert b'"type":"https://github.com/confidential-containers/kbs/errors/InputLimitExceeded"' in (
        info.value.body()
    )


def test_deep_attestation_parts_answer_400() -> None:
    session = rcar.new_session(rcar.parse_auth_request(auth_body(), ACCEPTED), 5, 0.0)
    with pytest.raises(KbsError) as info:
        rcar.parse_attestation(b"[" * 100_000)
    assert info.value.status == 400 and "body nests deeper than 64" in str(info.value.reason)
    deep = "[" * 5000 + "]" * 5000
    att = rcar.parse_attestation(
        _attestation(
            session.nonce, **{"tee-evidence": {"primary_evidence": {}, "additional_evidence": deep}}
        )
    )
    with pytest.raises(KbsError) as info:
        rcar.evidence_requests(session, att)
    assert info.value.status == 400 and "additional_evidence nests" in str(info.value.reason)


def test_session_token_bound() -> None:
    rcar.check_session_token("t" * rcar.MAX_SESSION_TOKEN_BYTES)
    with pytest.raises(KbsError) as info:
        rcar.check_session_token("t" * (rcar.MAX_SESSION_TOKEN_BYTES + 1))
    assert info.value.status == 400
