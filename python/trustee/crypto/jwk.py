"""JSON Web Keys (RFC 7517/7518/8037) to and from ``cryptography`` key objects, PEM loading.

Supported: EC P-256/P-384/P-521, RSA, OKP Ed25519.

Member order of the JWKs we emit (JSON objects keep insertion order, and some peers compare
serialised bytes): EC ``kty, crv, alg?, x, y``; RSA ``kty, alg?, n, e``; OKP ``kty, crv, alg?, x``.
That is exactly the TEE public key form the KBS clients send, e.g.
``{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":…,"y":…}``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustee.crypto.b64 import Base64Error, b64url_decode, b64url_encode

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
TeeKeyKind = Literal["ec-p256", "ec-p521", "rsa"]

# JWK curve name -> (curve class, coordinate size in bytes)
EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
_CURVE_NAMES: dict[str, str] = {cls().name: crv for crv, (cls, _) in EC_CURVES.items()}

TEE_EC_ALG = "ECDH-ES+A256KW"
TEE_RSA_ALG = "RSA-OAEP-256"
TEE_RSA_BITS = 2048


class JwkError(ValueError):
    """A JWK or PEM key is malformed or of an unsupported type."""


def ec_curve_name(curve: ec.EllipticCurve) -> str:
    """The JWK ``crv`` name of a curve, or JwkError for curves JOSE does not name."""
    try:
        return _CURVE_NAMES[curve.name]
    except KeyError:
        raise JwkError(
            f"EC curve {curve.name} is not supported (use P-256, P-384 or P-521)"
        ) from None


def _member(jwk: Mapping[str, Any], name: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        kty = jwk.get("kty")
        raise JwkError(f"{kty} JWK needs a non-empty string member {name!r}")
    return value


def _b64_member(jwk: Mapping[str, Any], name: str) -> bytes:
    try:
        return b64url_decode(_member(jwk, name))
    except Base64Error as exc:
        raise JwkError(f"JWK member {name!r} is not base64url: {exc}") from exc


def _coordinate(jwk: Mapping[str, Any], name: str, crv: str, size: int, exact: bool) -> bytes:
    raw = _b64_member(jwk, name)
    if len(raw) > size or (exact and len(raw) != size):
        raise JwkError(
            f"EC JWK coordinate {name!r} is {len(raw)} bytes; {crv} needs exactly {size} "
            "(big-endian, left-padded with zeros)"
        )
    return raw


def ec_coordinates(jwk: Mapping[str, Any], crv: str) -> tuple[bytes, bytes]:
    """``x`` and ``y`` of a JWK of kty EC on curve ``crv`` (a key of EC_CURVES), each exactly
    the curve's size. Whether they make a point of the curve is for whoever uses them to check."""
    x, y = jwk.get("x"), jwk.get("y")
    if isinstance(x, str) and isinstance(y, str):
        # A guest fetches several resources with one TEE key: decode it once.
        return _cached_coordinates(crv, x, y)
    return _coordinates(jwk, crv)


@functools.lru_cache(maxsize=4096)
def _cached_coordinates(crv: str, x: str, y: str) -> tuple[bytes, bytes]:
    return _coordinates({"kty": "EC", "x": x, "y": y}, crv)


def _coordinates(jwk: Mapping[str, Any], crv: str) -> tuple[bytes, bytes]:
    size = EC_CURVES[crv][1]
    return _coordinate(jwk, "x", crv, size, True), _coordinate(jwk, "y", crv, size, True)


def public_key_from_jwk(jwk: Mapping[str, Any], *, exact_coordinates: bool = True) -> PublicKey:
    """Build a public key from a JWK mapping.

    ``exact_coordinates=False`` accepts EC coordinates shorter than the field size (some older
    signers did not left-pad them); longer ones are always rejected. Points are checked to be on
    the curve.
    """
    if not isinstance(jwk, Mapping):
        raise JwkError(f"a JWK must be a JSON object, got {type(jwk).__name__}")
    kty = jwk.get("kty")
    if kty == "EC":
        crv = _member(jwk, "crv")
        if crv not in EC_CURVES:
            raise JwkError(f"EC JWK curve {crv!r} is not supported (use P-256, P-384 or P-521)")
        curve_cls, size = EC_CURVES[crv]
        x = int.from_bytes(_coordinate(jwk, "x", crv, size, exact_coordinates), "big")
        y = int.from_bytes(_coordinate(jwk, "y", crv, size, exact_coordinates), "big")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, curve_cls()).public_key()
        except ValueError as exc:
            raise JwkError(f"EC JWK point is not on curve {crv}") from exc
    if kty == "RSA":
        n = int.from_bytes(_b64_member(jwk, "n"), "big")
        e = int.from_bytes(_b64_member(jwk, "e"), "big")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise JwkError(f"RSA JWK is invalid: {exc}") from exc
    if kty == "OKP":
        crv = _member(jwk, "crv")
        if crv != "Ed25519":
            raise JwkError(f"OKP JWK curve {crv!r} is not supported (only Ed25519)")
        raw = _b64_member(jwk, "x")
        if len(raw) != 32:
            raise JwkError(f"Ed25519 JWK 'x' must be 32 bytes, got {len(raw)}")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    raise JwkError(f"JWK key type {kty!r} is not supported (use EC, RSA or OKP)")


def _uint_b64(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def public_jwk(key: PublicKey | PrivateKey, *, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of a key (a private key contributes its public half)."""
    pub = key.public_key() if not isinstance(key, PublicKey) else key
    jwk: dict[str, Any]
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = ec_curve_name(pub.curve)
        size = EC_CURVES[crv][1]
        numbers = pub.public_numbers()
        jwk = {"kty": "EC", "crv": crv}
        if alg is not None:
            jwk["alg"] = alg
        jwk["x"] = _uint_b64(numbers.x, size)
        jwk["y"] = _uint_b64(numbers.y, size)
        return jwk
    if isinstance(pub, rsa.RSAPublicKey):
        rsa_numbers = pub.public_numbers()
        jwk = {"kty": "RSA"}
        if alg is not None:
            jwk["alg"] = alg
        jwk["n"] = _uint_b64(rsa_numbers.n)
        jwk["e"] = _uint_b64(rsa_numbers.e)
        return jwk
    jwk = {"kty": "OKP", "crv": "Ed25519"}
    if alg is not None:
        jwk["alg"] = alg
    jwk["x"] = b64url_encode(
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return jwk


def tee_public_jwk(private_key: PrivateKey) -> dict[str, Any]:
    """The TEE public key exactly as the KBS clients put it into the attestation request."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        crv = ec_curve_name(private_key.curve)
        if crv not in ("P-256", "P-521"):
            raise JwkError(f"a TEE EC key must be P-256 or P-521, not {crv}")
        return public_jwk(private_key, alg=TEE_EC_ALG)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return public_jwk(private_key, alg=TEE_RSA_ALG)
    raise JwkError("a TEE key must be EC (P-256/P-521) or RSA; Ed25519 cannot encrypt")


def generate_tee_key(kind: TeeKeyKind = "ec-p256") -> PrivateKey:
    """A fresh TEE key pair like the clients make (P-256 by default, RSA-2048 on request)."""
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=TEE_RSA_BITS)
    raise JwkError(f"unknown TEE key kind {kind!r} (use ec-p256, ec-p521 or rsa)")


def load_private_key_pem(data: bytes) -> PrivateKey:
    """An unencrypted PEM private key: RSA (PKCS#1/PKCS#8), EC (SEC1/PKCS#8) or Ed25519."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise JwkError("the PEM private key is password-protected; supply it unencrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise JwkError(f"cannot parse PEM private key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_curve_name(key.curve)
        return key
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise JwkError(
        f"PEM private key type {type(key).__name__} is not supported (use EC, RSA or Ed25519)"
    )


def load_public_key_pem(data: bytes) -> PublicKey:
    """A PEM public key (SubjectPublicKeyInfo, or PKCS#1 ``RSA PUBLIC KEY``)."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise JwkError(f"cannot parse PEM public key: {exc}") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        ec_curve_name(key.curve)
        return key
    if isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise JwkError(
        f"PEM public key type {type(key).__name__} is not supported (use EC, RSA or Ed25519)"
    )


def describe_key(key: object) -> str:
    """A short human description of a key object, for error messages."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC {_CURVE_NAMES.get(key.curve.name, key.curve.name)} key"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA-{key.key_size} key"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519 key"
    return f"{type(key).__name__} object"


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Whether two public keys are the same key (compared by SubjectPublicKeyInfo bytes)."""
    enc, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(enc, fmt) == b.public_bytes(enc, fmt)
