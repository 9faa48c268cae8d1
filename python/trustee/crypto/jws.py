"""Compact JWS (RFC 7515) signing, parsing and signature checks, plus JWT time claims.

Algorithms: ES256/ES384/ES512 (raw ``r||s`` signatures, RFC 7518 §3.4), RS256/384/512,
PS256/384/512 (salt length = hash length) and EdDSA (Ed25519). ``none`` is never accepted.
The key type must match the algorithm (an ES256 token is not verified with an RSA key, and the
EC curve must be the one the algorithm names). RSA keys shorter than 2048 bits are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from trustee import jsonfast
from trustee.crypto.b64 import Base64Error, b64url_decode_nopad, b64url_encode
from trustee.crypto.jwk import EC_CURVES, PrivateKey, PublicKey, describe_key, ec_curve_name
from trustee.protocol import limits

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
SUPPORTED_ALGS = (
    "ES256", "ES384", "ES512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "EdDSA",
)  # fmt: skip
MIN_RSA_BITS = 2048


class JwsError(ValueError):
    """A JWS is malformed, its signature is invalid, or its time claims reject it."""


@dataclass(frozen=True)
class Parsed:
    """The pieces of a compact JWS, decoded."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object (JWT claims set)."""
        try:
            value = limits.loads(self.payload, "JWS payload")
        except ValueError as exc:
            raise JwsError(f"JWS payload is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise JwsError(f"JWS payload is JSON {type(value).__name__}, expected an object")
        return value


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return jsonfast.dumps(dict(value))


def _check_alg(alg: object) -> str:
    if not isinstance(alg, str):
        raise JwsError(f"JWS 'alg' must be a string, got {type(alg).__name__}")
    if alg.lower() == "none":
        raise JwsError("unsigned JWS (alg 'none') is never accepted")
    if alg not in SUPPORTED_ALGS:
        raise JwsError(
            f"JWS algorithm {alg!r} is not supported (one of {', '.join(SUPPORTED_ALGS)})"
        )
    return alg


def _key_mismatch(alg: str, key: object) -> JwsError:
    return JwsError(f"algorithm {alg} cannot be used with an {describe_key(key)}")


def _ec_size(alg: str, curve: ec.EllipticCurve) -> int:
    want = _EC_ALG_CURVE[alg]
    have = ec_curve_name(curve)
    if have != want:
        raise JwsError(f"algorithm {alg} needs a {want} key, got a {have} key")
    return EC_CURVES[want][1]


def _rsa_padding(alg: str, digest: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if alg.startswith("PS"):
        return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    return padding.PKCS1v15()


def _check_rsa_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise JwsError(f"RSA key of {key.key_size} bits is too short (at least {MIN_RSA_BITS})")


def encode_header(header: Mapping[str, Any]) -> str:
    """The protected header as a JWS carries it: compact JSON, keys in the given order,
    base64url. A signer with a fixed header can encode it once."""
    return b64url_encode(_compact_json(header))


def sign_compact(header: Mapping[str, Any], payload: bytes, key: PrivateKey) -> str:
    """Sign ``payload``; the header is serialised compactly with its keys in the given order."""
    alg = _check_alg(header.get("alg"))
    signing_input = f"{encode_header(header)}.{b64url_encode(payload)}".encode()
    if alg.startswith("ES"):
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise _key_mismatch(alg, key)
        size = _ec_size(alg, key.curve)
        der = key.sign(signing_input, ec.ECDSA(_HASHES[alg[2:]]()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif alg.startswith(("RS", "PS")):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise _key_mismatch(alg, key)
        _check_rsa_size(key)
        digest = _HASHES[alg[2:]]()
        signature = key.sign(signing_input, _rsa_padding(alg, digest), digest)
    else:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise _key_mismatch(alg, key)
        signature = key.sign(signing_input)
    return f"{signing_input.decode()}.{b64url_encode(signature)}"


def split_compact(token: str) -> Parsed:
    """Split and decode a compact JWS without checking its signature."""
    if not isinstance(token, str):
        raise JwsError(f"a compact JWS must be a string, got {type(token).__name__}")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError(
            f"a compact JWS has 3 dot-separated segments, this one has {len(parts)}"
            + (" (5 segments is a JWE, not a JWS)" if len(parts) == 5 else "")
        )
    names = ("header", "payload", "signature")
    decoded: list[bytes] = []
    for name, part in zip(names, parts, strict=True):
        try:
            decoded.append(b64url_decode_nopad(part))
        except Base64Error as exc:
            raise JwsError(f"JWS {name} segment is not unpadded base64url: {exc}") from exc
    try:
        header = limits.loads(decoded[0], "JWS header")
    except ValueError as exc:
        raise JwsError(f"JWS header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise JwsError(f"JWS header is JSON {type(header).__name__}, expected an object")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return Parsed(header, decoded[1], signing_input, decoded[2])


def verify_signature(
    alg: str, public_key: PublicKey, signing_input: bytes, signature: bytes
) -> None:
    """Check a JWS signature; raises :class:`JwsError` when it does not verify."""
    alg = _check_alg(alg)
    try:
        if alg.startswith("ES"):
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise _key_mismatch(alg, public_key)
            size = _ec_size(alg, public_key.curve)
            if len(signature) != 2 * size:
                raise JwsError(
                    f"{alg} signature must be {2 * size} bytes (raw r||s), got {len(signature)}"
                )
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            der = encode_dss_signature(r, s)
            public_key.verify(der, signing_input, ec.ECDSA(_HASHES[alg[2:]]()))
        elif alg.startswith(("RS", "PS")):
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _key_mismatch(alg, public_key)
            _check_rsa_size(public_key)
            digest = _HASHES[alg[2:]]()
            public_key.verify(signature, signing_input, _rsa_padding(alg, digest), digest)
        else:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise _key_mismatch(alg, public_key)
            public_key.verify(signature, signing_input)
    except InvalidSignature:
        raise JwsError(f"{alg} signature does not verify with the selected key") from None


def _format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JwsError(f"claim {name!r} must be a NumericDate (seconds since epoch), got {value!r}")
    return float(value)


def check_time_claims(
    claims: Mapping[str, Any],
    now: float,
    leeway: float = 60,
    require_exp: bool = True,
    *,
    check_nbf: bool = False,
    check_iat: bool = False,
) -> None:
    """Check ``exp`` (and optionally ``nbf`` and ``iat``, neither in the future) at unix time
    ``now`` with ``leeway`` seconds."""
    exp = _numeric_date(claims, "exp")
    if exp is None:
        if require_exp:
            raise JwsError("token has no 'exp' claim; an expiry is required")
    elif exp + leeway < now:
        raise JwsError(
            f"token expired at {_format_time(exp)} (now {_format_time(now)}, leeway {leeway:g} s)"
        )
    # Neither may lie in the future; the message says which and when.
    for name, wanted, what in (
        ("nbf", check_nbf, "token not valid before {}"),
        ("iat", check_iat, "token issued at {}, in the future"),
    ):
        at = _numeric_date(claims, name) if wanted else None
        if at is not None and at - leeway > now:
            raise JwsError(
                f"{what.format(_format_time(at))} (now {_format_time(now)}, leeway {leeway:g} s)"
            )
