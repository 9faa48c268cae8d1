"""The KBS resource-response JWE (RFC 7516 flattened JSON, kbs-protocol §1.6.1), byte-exact.

Content encryption is always A256GCM with a fresh 32-byte CEK and 12-byte IV; the AAD is the
ASCII of the ``protected`` member. Key management by the TEE key's ``alg``:

* ``ECDH-ES+A256KW`` on P-256 or P-521: ephemeral key on the same curve, Concat KDF (SHA-256,
  empty PartyU/PartyV info), CEK wrapped with AES key wrap (RFC 3394).
* ``RSA-OAEP-256``: OAEP with SHA-256 and MGF1-SHA-256, empty label.
* ``RSA1_5``: PKCS#1 v1.5 (deprecated; a warning is logged for every use).

The protected header is compact JSON with ``alg`` first, ``enc`` second, other members after:
the Rust client does not use the received ``protected`` text as AAD but re-serialises the parsed
header in that order, so any other byte form makes it fail the GCM tag check.

Wire forms: only the RFC 7516 form (protocols 0.2.0 and 0.4.0) exists today. The non-RFC
0.1.x form (kbs-protocol-legacy §4.1) is to be added as another :data:`JweForm` value handled in
:func:`encrypt` / :func:`decrypt`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from trustee.crypto.b64 import Base64Error, b64url_decode_nopad, b64url_encode
from trustee.crypto.jwk import (
    EC_CURVES,
    JwkError,
    PrivateKey,
    describe_key,
    ec_curve_name,
    public_jwk,
    public_key_from_jwk,
)

log = logging.getLogger(__name__)

JweForm = Literal["rfc7516"]
"""Serialisation form. Extension point: add ``"legacy-0.1"`` here and branch on it below."""

ENC = "A256GCM"
ALG_ECDH_ES_A256KW = "ECDH-ES+A256KW"
ALG_RSA_OAEP_256 = "RSA-OAEP-256"
ALG_RSA1_5 = "RSA1_5"
SUPPORTED_ALGS = (ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256, ALG_RSA1_5)
TEE_EC_CURVES = ("P-256", "P-521")
MEMBERS = ("protected", "encrypted_key", "iv", "ciphertext", "tag")

_CEK_BYTES = 32
_IV_BYTES = 12
_TAG_BYTES = 16


class JweError(ValueError):
    """The JWE cannot be built for this TEE key, or a received JWE is invalid."""


def concat_kdf(
    z: bytes, alg: str, keydatalen_bits: int, *, apu: bytes = b"", apv: bytes = b""
) -> bytes:
    """NIST SP 800-56A Concat KDF with SHA-256 as profiled by RFC 7518 §4.6.2.

    OtherInfo = len||AlgorithmID || len||PartyUInfo || len||PartyVInfo || keydatalen (all
    lengths and keydatalen are 32-bit big-endian). The KBS always uses empty PartyU/PartyV.
    """
    if keydatalen_bits <= 0 or keydatalen_bits % 8:
        raise JweError(
            f"Concat KDF key length must be a positive multiple of 8 bits, got {keydatalen_bits}"
        )

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    other_info = (
        field(alg.encode("ascii")) + field(apu) + field(apv) + keydatalen_bits.to_bytes(4, "big")
    )
    out = b""
    for counter in range(1, math.ceil(keydatalen_bits / 256) + 1):
        out += hashlib.sha256(counter.to_bytes(4, "big") + z + other_info).digest()
    return out[: keydatalen_bits // 8]


def encode_protected_header(header: Mapping[str, Any]) -> str:
    """base64url(compact JSON) of a header with ``alg``, ``enc`` first, then the rest in order.

    This is both what the server emits and what the client recomputes as AAD.
    """
    ordered: dict[str, Any] = {"alg": header.get("alg"), "enc": header.get("enc")}
    ordered.update((k, v) for k, v in header.items() if k not in ("alg", "enc"))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)
    return b64url_encode(text.encode())


def _tee_alg(tee_pubkey: Mapping[str, Any]) -> str:
    if not isinstance(tee_pubkey, Mapping):
        raise JweError(f"TEE public key must be a JWK object, got {type(tee_pubkey).__name__}")
    alg = tee_pubkey.get("alg")
    if not isinstance(alg, str):
        raise JweError("TEE public key has no 'alg'; expected one of " + ", ".join(SUPPORTED_ALGS))
    if alg not in SUPPORTED_ALGS:
        raise JweError(
            f"TEE public key alg {alg!r} is not supported (use {', '.join(SUPPORTED_ALGS)})"
        )
    return alg


def _wrap_ecdh(tee_pubkey: Mapping[str, Any], cek: bytes) -> tuple[dict[str, Any], bytes]:
    if tee_pubkey.get("kty") != "EC":
        raise JweError(
            f"alg {ALG_ECDH_ES_A256KW} needs an EC key, got kty {tee_pubkey.get('kty')!r}"
        )
    crv = tee_pubkey.get("crv")
    if crv not in TEE_EC_CURVES:
        raise JweError(f"TEE EC key curve {crv!r} is not supported (use P-256 or P-521)")
    try:
        peer = public_key_from_jwk(tee_pubkey, exact_coordinates=True)
    except JwkError as exc:
        raise JweError(f"TEE public key is invalid: {exc}") from exc
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    ephemeral = ec.generate_private_key(peer.curve)
    z = ephemeral.exchange(ec.ECDH(), peer)
    kek = concat_kdf(z, ALG_ECDH_ES_A256KW, 256)
    epk = public_jwk(ephemeral.public_key())
    header = {
        "alg": ALG_ECDH_ES_A256KW,
        "enc": ENC,
        "epk": {"crv": epk["crv"], "kty": epk["kty"], "x": epk["x"], "y": epk["y"]},
    }
    return header, aes_key_wrap(kek, cek)


def _wrap_rsa(tee_pubkey: Mapping[str, Any], alg: str, cek: bytes) -> bytes:
    if tee_pubkey.get("kty") != "RSA":
        raise JweError(f"alg {alg} needs an RSA key, got kty {tee_pubkey.get('kty')!r}")
    try:
        peer = public_key_from_jwk(tee_pubkey)
    except JwkError as exc:
        raise JweError(f"TEE public key is invalid: {exc}") from exc
    assert isinstance(peer, rsa.RSAPublicKey)
    if alg == ALG_RSA1_5:
        log.warning(
            "encrypting a resource with RSA1_5 (PKCS#1 v1.5) for a TEE key that asked for it; "
            "this key-management algorithm is deprecated, clients should send RSA-OAEP-256"
        )
        return peer.encrypt(cek, padding.PKCS1v15())
    return peer.encrypt(cek, _oaep())


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def encrypt(
    plaintext: bytes, tee_pubkey: Mapping[str, Any], *, form: JweForm = "rfc7516"
) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE key; members ordered protected, encrypted_key, iv,
    ciphertext, tag (all unpadded base64url). Raises :class:`JweError` for unusable keys."""
    if form != "rfc7516":
        raise JweError(f"JWE form {form!r} is not implemented")
    alg = _tee_alg(tee_pubkey)
    cek = AESGCM.generate_key(bit_length=256)
    header: dict[str, Any]
    if alg == ALG_ECDH_ES_A256KW:
        header, encrypted_key = _wrap_ecdh(tee_pubkey, cek)
    else:
        header = {"alg": alg, "enc": ENC}
        encrypted_key = _wrap_rsa(tee_pubkey, alg, cek)
    protected = encode_protected_header(header)
    iv = os.urandom(_IV_BYTES)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return {
        "protected": protected,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(sealed[:-_TAG_BYTES]),
        "tag": b64url_encode(sealed[-_TAG_BYTES:]),
    }


def _member(jwe: Mapping[str, Any], name: str) -> bytes:
    value = jwe.get(name)
    if not isinstance(value, str):
        raise JweError(f"JWE member {name!r} is missing or not a string")
    try:
        return b64url_decode_nopad(value)
    except Base64Error as exc:
        raise JweError(f"JWE member {name!r}: {exc}") from exc


def _unwrap_ecdh(header: Mapping[str, Any], private_key: PrivateKey, wrapped: bytes) -> bytes:
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise JweError(
            f"JWE alg {ALG_ECDH_ES_A256KW} needs an EC private key, "
            f"have an {describe_key(private_key)}"
        )
    if "epk" not in header:
        raise JweError(f"JWE header for {ALG_ECDH_ES_A256KW} has no 'epk' (ephemeral key)")
    try:
        epk = public_key_from_jwk(header["epk"], exact_coordinates=True)
    except JwkError as exc:
        raise JweError(f"JWE header 'epk' is invalid: {exc}") from exc
    if not isinstance(epk, ec.EllipticCurvePublicKey):
        raise JweError("JWE header 'epk' must be an EC key")
    mine = ec_curve_name(private_key.curve)
    if ec_curve_name(epk.curve) != mine:
        raise JweError(f"JWE 'epk' is on {ec_curve_name(epk.curve)}, the TEE key is on {mine}")
    z = private_key.exchange(ec.ECDH(), epk)
    if len(z) != EC_CURVES[mine][1]:  # pragma: no cover - cryptography pads Z to field size
        raise JweError("ECDH shared secret has an unexpected length")
    kek = concat_kdf(z, ALG_ECDH_ES_A256KW, 256)
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        raise JweError("cannot unwrap the content key: not encrypted to this TEE key") from None


def _unwrap_rsa(alg: str, private_key: PrivateKey, wrapped: bytes) -> bytes:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise JweError(
            f"JWE alg {alg} needs an RSA private key, have an {describe_key(private_key)}"
        )
    pad = padding.PKCS1v15() if alg == ALG_RSA1_5 else _oaep()
    try:
        return private_key.decrypt(wrapped, pad)
    except ValueError:
        raise JweError(
            f"cannot decrypt the content key ({alg}): not encrypted to this key"
        ) from None


def decrypt(jwe: Mapping[str, Any], private_key: PrivateKey, *, form: JweForm = "rfc7516") -> bytes:
    """Decrypt a flattened JWE the way the Rust KBS client does."""
    if form != "rfc7516":
        raise JweError(f"JWE form {form!r} is not implemented")
    if not isinstance(jwe, Mapping):
        raise JweError(f"a JWE must be a JSON object, got {type(jwe).__name__}")
    protected = _member(jwe, "protected")
    try:
        header = json.loads(protected)
    except (UnicodeDecodeError, ValueError) as exc:
        raise JweError(f"JWE protected header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise JweError("JWE protected header must be a JSON object")
    alg, enc = header.get("alg"), header.get("enc")
    if not isinstance(alg, str) or not isinstance(enc, str):
        raise JweError("JWE protected header needs string members 'alg' and 'enc'")
    if enc != ENC:
        raise JweError(f"JWE content encryption {enc!r} is not supported (only {ENC})")
    wrapped = _member(jwe, "encrypted_key")
    iv, ciphertext, tag = _member(jwe, "iv"), _member(jwe, "ciphertext"), _member(jwe, "tag")
    if alg == ALG_ECDH_ES_A256KW:
        cek = _unwrap_ecdh(header, private_key, wrapped)
    elif alg in (ALG_RSA_OAEP_256, ALG_RSA1_5):
        cek = _unwrap_rsa(alg, private_key, wrapped)
    else:
        raise JweError(f"JWE key management {alg!r} is not supported ({', '.join(SUPPORTED_ALGS)})")
    if len(cek) != _CEK_BYTES:
        raise JweError(f"content key is {len(cek)} bytes, A256GCM needs {_CEK_BYTES}")
    if len(iv) != _IV_BYTES:
        raise JweError(f"JWE iv is {len(iv)} bytes, A256GCM needs {_IV_BYTES}")
    if len(tag) != _TAG_BYTES:
        raise JweError(f"JWE tag is {len(tag)} bytes, A256GCM needs {_TAG_BYTES}")
    aad = encode_protected_header(header).encode("ascii")
    try:
        return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag:
        raise JweError("JWE authentication failed: ciphertext, iv, tag or header altered") from None
