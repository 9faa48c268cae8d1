"""Compact JWS signing/verification, malformed input, JWT time claims, base64 and JWK helpers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from trustee.crypto.b64 import (
    Base64Error,
    b64std_decode,
    b64std_encode,
    b64url_decode,
    b64url_decode_nopad,
    b64url_encode,
)
from trustee.crypto.jwk import (
    JwkError,
    generate_tee_key,
    load_private_key_pem,
    load_public_key_pem,
    public_jwk,
    public_key_from_jwk,
    tee_public_jwk,
)
from trustee.crypto.jws import (
    JwsError,
    check_time_claims,
    sign_compact,
    split_compact,
    verify_signature,
)


def u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
        "RSA": rsa_key,
        "Ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


ALG_KEY = [
    ("ES256", "P-256", 64),
    ("ES384", "P-384", 96),
    ("ES512", "P-521", 132),
    ("RS256", "RSA", 256),
    ("RS384", "RSA", 256),
    ("RS512", "RSA", 256),
    ("PS256", "RSA", 256),
    ("PS384", "RSA", 256),
    ("PS512", "RSA", 256),
    ("EdDSA", "Ed25519", 64),
]


# ---------------------------------------------------------------- sign / verify


@pytest.mark.parametrize(("alg", "kname", "siglen"), ALG_KEY)
def test_sign_verify_each_alg(keys: dict[str, Any], alg: str, kname: str, siglen: int) -> None:
    key = keys[kname]
    token = sign_compact({"typ": "JWT", "alg": alg}, b'{"a":1}', key)
    parsed = split_compact(token)
    assert parsed.header == {"typ": "JWT", "alg": alg}
    assert parsed.payload == b'{"a":1}'
    assert len(parsed.signature) == siglen
    verify_signature(alg, key.public_key(), parsed.signing_input, parsed.signature)
    # the same signature over another input must fail
    with pytest.raises(JwsError, match="does not verify"):
        verify_signature(alg, key.public_key(), parsed.signing_input + b"x", parsed.signature)
    # a JWK round trip of the public key verifies too
    verify_signature(
        alg, public_key_from_jwk(public_jwk(key)), parsed.signing_input, parsed.signature
    )


def test_header_keeps_given_order(keys: dict[str, Any]) -> None:
    token = sign_compact({"typ": "JWT", "alg": "ES256", "jwk": {"z": 1}}, b"{}", keys["P-256"])
    first = token.split(".")[0]
    assert base64.urlsafe_b64decode(first + "==") == b'{"typ":"JWT","alg":"ES256","jwk":{"z":1}}'
    assert "=" not in token


def test_es256_signature_is_raw_r_s_interop(keys: dict[str, Any]) -> None:
    key = keys["P-256"]
    parsed = split_compact(sign_compact({"alg": "ES256"}, b"payload", key))
    r = int.from_bytes(parsed.signature[:32], "big")
    s = int.from_bytes(parsed.signature[32:], "big")
    # verifies with cryptography directly once converted back to DER
    key.public_key().verify(
        encode_dss_signature(r, s), parsed.signing_input, ec.ECDSA(hashes.SHA256())
    )
    # and a token built entirely by hand verifies with ours
    signing_input = (u(b'{"alg":"ES256"}') + "." + u(b"hi")).encode()
    r2, s2 = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    raw = r2.to_bytes(32, "big") + s2.to_bytes(32, "big")
    hand = split_compact(f"{signing_input.decode()}.{u(raw)}")
    verify_signature("ES256", key.public_key(), hand.signing_input, hand.signature)


def test_ps256_hand_built_interop(keys: dict[str, Any]) -> None:
    key = keys["RSA"]
    signing_input = (u(b'{"alg":"PS256"}') + "." + u(b"x")).encode()
    sig = key.sign(signing_input, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    verify_signature("PS256", key.public_key(), signing_input, sig)
    # and ours uses salt length = hash length (RFC 7518 §3.5), checked independently
    for alg, digest in (("PS256", hashes.SHA256()), ("PS512", hashes.SHA512())):
        parsed = split_compact(sign_compact({"alg": alg}, b"y", key))
        key.public_key().verify(
            parsed.signature,
            parsed.signing_input,
            padding.PSS(padding.MGF1(digest), digest.digest_size),
            digest,
        )


@pytest.mark.parametrize(
    ("alg", "kname", "match"),
    [
        ("ES256", "RSA", "cannot be used"),
        ("ES256", "P-384", "needs a P-256 key"),
        ("ES512", "P-256", "needs a P-521 key"),
        ("RS256", "P-256", "cannot be used"),
        ("EdDSA", "P-256", "cannot be used"),
        ("PS256", "Ed25519", "cannot be used"),
    ],
)
def test_key_type_must_match_alg(keys: dict[str, Any], alg: str, kname: str, match: str) -> None:
    with pytest.raises(JwsError, match=match):
        sign_compact({"alg": alg}, b"x", keys[kname])
    with pytest.raises(JwsError, match=match):
        verify_signature(alg, keys[kname].public_key(), b"a.b", b"\0" * 64)


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "ES256K", "", 7])
def test_unsupported_algs_rejected(keys: dict[str, Any], alg: Any) -> None:
    with pytest.raises(JwsError):
        verify_signature(alg, keys["P-256"].public_key(), b"a.b", b"")
    with pytest.raises(JwsError):
        sign_compact({"alg": alg}, b"x", keys["P-256"])


def test_es_signature_length_checked(keys: dict[str, Any]) -> None:
    parsed = split_compact(sign_compact({"alg": "ES256"}, b"x", keys["P-256"]))
    with pytest.raises(JwsError, match="64 bytes"):
        verify_signature("ES256", keys["P-256"].public_key(), parsed.signing_input, b"\1" * 70)


def test_forged_signature_rejected(keys: dict[str, Any]) -> None:
    token = sign_compact({"alg": "ES256"}, b'{"role":"user"}', keys["P-256"])
    h, _, s = token.split(".")
    forged = split_compact(".".join([h, u(b'{"role":"admin"}'), s]))
    with pytest.raises(JwsError):
        verify_signature(
            "ES256", keys["P-256"].public_key(), forged.signing_input, forged.signature
        )
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    good = split_compact(token)
    with pytest.raises(JwsError):
        verify_signature("ES256", other, good.signing_input, good.signature)


def test_short_rsa_key_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JwsError, match="too short"):
        sign_compact({"alg": "RS256"}, b"x", small)


# ---------------------------------------------------------------- malformed tokens


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("abc.def", "3 dot-separated segments, this one has 2"),
        ("a.b.c.d", "has 4"),
        ("a.b.c.d.e", "JWE"),
        (f"{u(b'{}')}.{u(b'x')}.ab+c", "signature segment"),
        (f"{u(b'{}')}=.{u(b'x')}.abc", "header segment"),
        (f"{u(b'{}')}.pay load.abc", "payload segment"),
        (f"{u(b'nope')}.{u(b'x')}.abcd", "header is not JSON"),
        (f"{u(b'[1]')}.{u(b'x')}.abcd", "expected an object"),
        (f"{u(bytes([0xFF]))}.{u(b'x')}.abcd", "header is not JSON"),
        ("", "has 1"),
    ],
)
def test_split_malformed(token: str, match: str) -> None:
    with pytest.raises(JwsError, match=match):
        split_compact(token)


def test_split_non_string() -> None:
    with pytest.raises(JwsError, match="string"):
        split_compact(b"a.b.c")  # type: ignore[arg-type]


def test_claims_must_be_object(keys: dict[str, Any]) -> None:
    parsed = split_compact(sign_compact({"alg": "ES256"}, b"[1,2]", keys["P-256"]))
    with pytest.raises(JwsError, match="expected an object"):
        parsed.claims()
    parsed = split_compact(sign_compact({"alg": "ES256"}, b"{bad", keys["P-256"]))
    with pytest.raises(JwsError, match="not JSON"):
        parsed.claims()


# ---------------------------------------------------------------- time claims


NOW = 1_767_225_600


def test_time_claims() -> None:
    check_time_claims({"exp": NOW}, NOW)
    check_time_claims({"exp": NOW - 60}, NOW)  # within leeway (boundary)
    check_time_claims({"exp": NOW - 59.5}, NOW)
    with pytest.raises(JwsError, match=r"token expired at 2025-12-31T23:58:59Z"):
        check_time_claims({"exp": NOW - 61}, NOW)
    with pytest.raises(JwsError, match="expired"):
        check_time_claims({"exp": NOW - 5}, NOW, leeway=0)
    with pytest.raises(JwsError, match="no 'exp'"):
        check_time_claims({}, NOW)
    check_time_claims({}, NOW, require_exp=False)
    for bad in ("1767225600", True, None, float("nan")):
        with pytest.raises(JwsError, match="NumericDate"):
            check_time_claims({"exp": bad}, NOW)
    # nbf is ignored unless asked for
    check_time_claims({"exp": NOW + 10, "nbf": NOW + 1000}, NOW)
    with pytest.raises(JwsError, match="not valid before"):
        check_time_claims({"exp": NOW + 10, "nbf": NOW + 1000}, NOW, check_nbf=True)


# ---------------------------------------------------------------- base64


def test_b64url() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    assert b64url_decode("-_8=") == b"\xfb\xff"
    assert b64url_decode_nopad("-_8") == b"\xfb\xff"
    for bad in ("+/8", "-_8 ", "a", "-_8==", "ab=c", "abc==="):
        with pytest.raises(Base64Error):
            b64url_decode(bad)
    with pytest.raises(Base64Error, match="padding"):
        b64url_decode_nopad("-_8=")
    with pytest.raises(Base64Error, match="non-canonical"):
        b64url_decode_nopad("-_9")


def test_b64std() -> None:
    assert b64std_encode(b"\xfb\xff") == "+/8="
    assert b64std_decode("+/8=") == b64std_decode("+/8") == b"\xfb\xff"
    for bad in ("-_8=", "+/8=\n", "@@@@"):
        with pytest.raises(Base64Error):
            b64std_decode(bad)


# ---------------------------------------------------------------- JWK / PEM


def test_tee_public_jwk_forms() -> None:
    ec_key = generate_tee_key("ec-p256")
    jwk = tee_public_jwk(ec_key)
    assert list(jwk) == ["kty", "crv", "alg", "x", "y"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256" and jwk["alg"] == "ECDH-ES+A256KW"
    assert len(jwk["x"]) == len(jwk["y"]) == 43
    p521 = tee_public_jwk(generate_tee_key("ec-p521"))
    assert p521["crv"] == "P-521" and len(p521["x"]) == 88
    rsa_jwk = tee_public_jwk(generate_tee_key("rsa"))
    assert list(rsa_jwk) == ["kty", "alg", "n", "e"]
    assert rsa_jwk["alg"] == "RSA-OAEP-256" and rsa_jwk["e"] == "AQAB"
    with pytest.raises(JwkError):
        tee_public_jwk(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(JwkError):
        tee_public_jwk(ed25519.Ed25519PrivateKey.generate())
    assert json.dumps(public_jwk(ed25519.Ed25519PrivateKey.generate())).startswith(
        '{"kty": "OKP", "crv": "Ed25519", "x": '
    )


def test_coordinates_left_padded() -> None:
    while True:  # find a key whose x has a leading zero byte (1 in 256)
        key = ec.generate_private_key(ec.SECP256R1())
        if key.public_key().public_numbers().x < 1 << 248:
            break
    jwk = public_jwk(key)
    assert jwk["x"].startswith("A") and len(jwk["x"]) == 43
    short = {**jwk, "x": u(base64.urlsafe_b64decode(jwk["x"] + "=")[1:])}
    with pytest.raises(JwkError, match="exactly 32"):
        public_key_from_jwk(short)
    assert public_key_from_jwk(short, exact_coordinates=False) == key.public_key()


def test_pem_loading() -> None:
    nopw = serialization.NoEncryption()
    rsa_key = generate_tee_key("rsa")
    assert isinstance(rsa_key, rsa.RSAPrivateKey)
    pkcs1 = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, nopw
    )
    assert b"BEGIN RSA PRIVATE KEY" in pkcs1
    assert isinstance(load_private_key_pem(pkcs1), rsa.RSAPrivateKey)
    ec_key = ec.generate_private_key(ec.SECP521R1())
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = ec_key.private_bytes(serialization.Encoding.PEM, fmt, nopw)
        loaded = load_private_key_pem(pem)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert loaded.private_numbers() == ec_key.private_numbers()
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, nopw)
    assert isinstance(load_private_key_pem(ed_pem), ed25519.Ed25519PrivateKey)
    spki = ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_public_key_pem(spki) == ed.public_key()
    rsa_pub = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    assert load_public_key_pem(rsa_pub) == rsa_key.public_key()
    encrypted = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(JwkError, match="password"):
        load_private_key_pem(encrypted)
    with pytest.raises(JwkError, match="cannot parse"):
        load_private_key_pem(b"garbage")
    with pytest.raises(JwkError, match="cannot parse"):
        load_public_key_pem(b"garbage")


def test_jwk_rejections() -> None:
    cases: list[tuple[Any, str]] = [
        ([], "JSON object"),
        ({"kty": "oct", "k": "AA"}, "not supported"),
        ({"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}, "P-192"),
        ({"kty": "EC", "crv": "P-256", "x": u(b"\1" * 32)}, "'y'"),
        ({"kty": "OKP", "crv": "X25519", "x": u(b"\0" * 32)}, "X25519"),
        ({"kty": "OKP", "crv": "Ed25519", "x": u(b"\0" * 31)}, "32 bytes"),
        ({"kty": "RSA", "n": "+AB", "e": "AQAB"}, "base64url"),
    ]
    for jwk, match in cases:
        with pytest.raises(JwkError, match=match):
            public_key_from_jwk(jwk)
