"""The KBS resource-response JWE in every wire form a KBS generation used, byte-exact.

Wire forms (the ``form`` argument of :func:`encrypt` / :func:`decrypt`):

``"rfc7516"`` — protocol 0.4.0 (trustee v0.14+). RFC 7516 flattened JSON; members
  ``protected, encrypted_key, iv, ciphertext, tag`` (unpadded base64url, tag detached, no
  ``aad``). Content encryption A256GCM, AAD = the ASCII of ``protected``. Key management by the
  TEE key's ``alg``: ``ECDH-ES+A256KW`` on P-256 or P-521 (ephemeral key on the same curve,
  Concat KDF with SHA-256 and empty PartyU/PartyV info, RFC 3394 key wrap), ``RSA-OAEP-256``
  (OAEP SHA-256/MGF1-SHA-256, empty label) or ``RSA1_5`` (deprecated; warned about on every use).

``"rfc7516-p256"`` — protocol 0.2.0 (trustee v0.12/v0.13, kbs-client v0.12/v0.13). The same
  bytes as ``"rfc7516"``, but those servers and clients only know P-256, so another EC curve is
  refused in both directions. On decryption the AAD is rebuilt the way that client does it:
  ``alg``, ``enc``, then every other member in sorted key order, nested objects sorted too.

``"v0.1"`` — protocols 0.1.0 / 0.1.1 (trustee v0.9–v0.11, kbs-client ≤ v0.11). Not RFC 7516:
  ``protected`` carries the header JSON text itself (``{"alg":"RSA1_5","enc":"A256GCM"}``), the
  CEK is wrapped with RSAES-PKCS1-v1_5 (the TEE key must be RSA with ``alg`` ``RSA1_5``), AES-GCM
  runs with an empty AAD and its tag is appended to ``ciphertext``; ``tag`` is present but ``""``.

:data:`FORM_BY_PROTOCOL` maps a KBS protocol version to its form (from the generations table).

The RFC protected header is compact JSON with ``alg`` first, ``enc`` second, other members after:
the Rust clients do not use the received ``protected`` text as AAD but re-serialise the parsed
header in that order, so any other byte form makes them fail the GCM tag check. Our ECDH header
nests ``epk`` as ``crv, kty, x, y``, which satisfies both the 0.2.0 (sorted) and the 0.4.0
(insertion-order) re-serialisation.

:func:`encrypt` takes fixed ``cek`` / ``iv`` / ``ephemeral_key`` only so that known-answer tests
can reproduce the specification's examples; production callers never pass them.

ECDH-ES sealing is done by the native core (``trustee._core.seal_ecdh_es``): this module reads
the guest's JWK and hands over its decoded coordinates. RSA key management and the legacy form
stay here, as does every decryption (the client's side, which never loads the native core).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from trustee import jsonfast
from trustee.crypto.b64 import Base64Error, b64url_decode_nopad, b64url_encode
from trustee.crypto.jwk import (
    EC_CURVES,
    JwkError,
    PrivateKey,
    describe_key,
    ec_coordinates,
    ec_curve_name,
    public_key_from_jwk,
)
from trustee.protocol.generations import WIRE_GENERATIONS

log = logging.getLogger(__name__)

JweForm = Literal["rfc7516", "rfc7516-p256", "v0.1"]
"""Serialisation form; see the module docstring."""

FORM_RFC7516: Final = "rfc7516"
FORM_RFC7516_P256: Final = "rfc7516-p256"
FORM_V01: Final = "v0.1"
FORMS: tuple[JweForm, ...] = get_args(JweForm)

FORM_BY_PROTOCOL: dict[str, JweForm] = {v: g.jwe_form for v, g in WIRE_GENERATIONS.items()}

ENC = "A256GCM"
ALG_ECDH_ES_A256KW = "ECDH-ES+A256KW"
ALG_RSA_OAEP_256 = "RSA-OAEP-256"
ALG_RSA1_5 = "RSA1_5"
SUPPORTED_ALGS = (ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256, ALG_RSA1_5)
TEE_EC_CURVES = ("P-256", "P-521")
MEMBERS = ("protected", "encrypted_key", "iv", "ciphertext", "tag")

# Exactly the bytes the 0.1.x servers put into `protected` (their header map serialised sorted).
LEGACY_PROTECTED = '{"alg":"RSA1_5","enc":"A256GCM"}'

_CEK_BYTES = 32
_IV_BYTES = 12
_TAG_BYTES = 16


class JweError(ValueError):
    """The JWE cannot be built for this TEE key, or a received JWE is invalid."""


def form_for_protocol(version: str) -> JweForm:
    """The JWE form a client speaking KBS protocol ``version`` can decrypt."""
    try:
        return FORM_BY_PROTOCOL[version]
    except KeyError:
        raise JweError(
            f"no JWE form is known for KBS protocol {version!r} "
            f"(known: {', '.join(FORM_BY_PROTOCOL)})"
        ) from None


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise JweError(f"JWE form {form!r} is not implemented (known: {', '.join(FORMS)})")


def ec_curves(form: JweForm) -> tuple[str, ...]:
    return ("P-256",) if form == FORM_RFC7516_P256 else TEE_EC_CURVES


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


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def encode_protected_header(header: Mapping[str, Any], *, sort_members: bool = False) -> str:
    """base64url(compact JSON) of a header with ``alg``, ``enc`` first, then the rest.

    The rest keeps its order, or with ``sort_members`` is sorted by key at every nesting level
    (the 0.2.0 client's serde_json had no order preservation). This is both what the server
    emits and what the client recomputes as AAD.
    """
    ordered: dict[str, Any] = {"alg": header.get("alg"), "enc": header.get("enc")}
    rest = [(k, v) for k, v in header.items() if k not in ("alg", "enc")]
    if sort_members:
        rest = [(k, _sorted_deep(v)) for k, v in sorted(rest)]
    ordered.update(rest)
    return b64url_encode(jsonfast.dumps(ordered))


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


# A guest's EC key as ECDH-ES sealing takes it: the curve and the decoded coordinates.
EcRecipient = tuple[str, bytes, bytes]


def _ec_recipient(tee_pubkey: Mapping[str, Any], curves: tuple[str, ...]) -> EcRecipient:
    if tee_pubkey.get("kty") != "EC":
        raise JweError(
            f"alg {ALG_ECDH_ES_A256KW} needs an EC key, got kty {tee_pubkey.get('kty')!r}"
        )
    crv = tee_pubkey.get("crv")
    if crv not in curves:
        raise JweError(f"TEE EC key curve {crv!r} is not supported (use {' or '.join(curves)})")
    try:
        return (crv, *ec_coordinates(tee_pubkey, crv))
    except JwkError as exc:
        raise JweError(f"TEE public key is invalid: {exc}") from exc


def ec_recipient(tee_pubkey: Mapping[str, Any], form: JweForm) -> EcRecipient | None:
    """The guest key to seal to with ECDH-ES in ``form``; None when the form or the key's
    ``alg`` means RSA. Raises :class:`JweError` as :func:`encrypt` would."""
    _check_form(form)
    if form == FORM_V01 or _tee_alg(tee_pubkey) != ALG_ECDH_ES_A256KW:
        return None
    return _ec_recipient(tee_pubkey, ec_curves(form))


def _seal_ec(
    recipient: EcRecipient,
    plaintext: bytes,
    cek: bytes | None,
    iv: bytes | None,
    scalar: bytes | None,
) -> dict[str, str]:
    # Loaded here: the client, which only decrypts, never needs the native core.
    from trustee import _core

    try:
        return _core.seal_ecdh_es(*recipient, plaintext, cek, iv, scalar).members()
    except _core.CryptoError as exc:
        raise JweError(str(exc)) from exc


def _ephemeral_scalar(key: ec.EllipticCurvePrivateKey | None, crv: str) -> bytes | None:
    if key is None:
        return None
    curve, size = EC_CURVES[crv]
    if key.curve.name != curve().name:
        raise JweError(f"the fixed ephemeral key is not on the TEE key's curve {crv}")
    return key.private_numbers().private_value.to_bytes(size, "big")


def _rsa_peer(tee_pubkey: Mapping[str, Any], alg: str) -> rsa.RSAPublicKey:
    if tee_pubkey.get("kty") != "RSA":
        raise JweError(f"alg {alg} needs an RSA key, got kty {tee_pubkey.get('kty')!r}")
    try:
        peer = public_key_from_jwk(tee_pubkey)
    except JwkError as exc:
        raise JweError(f"TEE public key is invalid: {exc}") from exc
    assert isinstance(peer, rsa.RSAPublicKey)
    return peer


def _wrap_rsa(tee_pubkey: Mapping[str, Any], alg: str, cek: bytes) -> bytes:
    peer = _rsa_peer(tee_pubkey, alg)
    if alg == ALG_RSA1_5:
        log.warning(
            "encrypting a resource with RSA1_5 (PKCS#1 v1.5) for a TEE key that asked for it; "
            "this key-management algorithm is deprecated, clients should send RSA-OAEP-256"
        )
        return peer.encrypt(cek, padding.PKCS1v15())
    return peer.encrypt(cek, _oaep())


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _fixed(value: bytes | None, size: int, what: str) -> bytes | None:
    if value is None:
        return None
    if len(value) != size:
        raise JweError(f"a fixed {what} must be {size} bytes, got {len(value)}")
    return bytes(value)


def _or_random(value: bytes | None, size: int) -> bytes:
    return os.urandom(size) if value is None else value


def encrypt(
    plaintext: bytes,
    tee_pubkey: Mapping[str, Any],
    *,
    form: JweForm = FORM_RFC7516,
    cek: bytes | None = None,
    iv: bytes | None = None,
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE key in the given wire form.

    Members are ordered protected, encrypted_key, iv, ciphertext, tag. ``cek``, ``iv`` and
    ``ephemeral_key`` replace the random values for known-answer tests only. Raises
    :class:`JweError` for a key the form cannot serve.
    """
    _check_form(form)
    cek = _fixed(cek, _CEK_BYTES, "content key")
    iv = _fixed(iv, _IV_BYTES, "iv")
    if form == FORM_V01:
        if ephemeral_key is not None:
            raise JweError("the legacy JWE form has no ephemeral key (it is RSA only)")
        return _encrypt_v01(
            plaintext, tee_pubkey, _or_random(cek, _CEK_BYTES), _or_random(iv, _IV_BYTES)
        )
    alg = _tee_alg(tee_pubkey)
    if alg == ALG_ECDH_ES_A256KW:
        recipient = _ec_recipient(tee_pubkey, ec_curves(form))
        scalar = _ephemeral_scalar(ephemeral_key, recipient[0])
        return _seal_ec(recipient, plaintext, cek, iv, scalar)
    if ephemeral_key is not None:
        raise JweError(f"alg {alg} has no ephemeral key; a fixed one cannot be used")
    content_key, nonce = _or_random(cek, _CEK_BYTES), _or_random(iv, _IV_BYTES)
    encrypted_key = _wrap_rsa(tee_pubkey, alg, content_key)
    protected = encode_protected_header({"alg": alg, "enc": ENC})
    sealed = AESGCM(content_key).encrypt(nonce, plaintext, protected.encode("ascii"))
    return {
        "protected": protected,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(nonce),
        "ciphertext": b64url_encode(sealed[:-_TAG_BYTES]),
        "tag": b64url_encode(sealed[-_TAG_BYTES:]),
    }


def _encrypt_v01(
    plaintext: bytes, tee_pubkey: Mapping[str, Any], cek: bytes, iv: bytes
) -> dict[str, str]:
    if not isinstance(tee_pubkey, Mapping):
        raise JweError(f"TEE public key must be a JWK object, got {type(tee_pubkey).__name__}")
    kty, alg = tee_pubkey.get("kty"), tee_pubkey.get("alg")
    if kty != "RSA" or alg != ALG_RSA1_5:
        # The 0.1.x servers had exactly this restriction; their clients never send anything else.
        raise JweError(
            f"the legacy (0.1.x) JWE needs an RSA TEE key with alg {ALG_RSA1_5!r}, "
            f"got kty {kty!r} alg {alg!r}"
        )
    # No deprecation warning here, unlike the RFC form: these clients cannot do anything else.
    encrypted_key = _rsa_peer(tee_pubkey, ALG_RSA1_5).encrypt(cek, padding.PKCS1v15())
    sealed = AESGCM(cek).encrypt(iv, plaintext, None)
    return {
        "protected": LEGACY_PROTECTED,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(sealed),
        "tag": "",
    }


def _string_member(jwe: Mapping[str, Any], name: str) -> str:
    value = jwe.get(name)
    if not isinstance(value, str):
        raise JweError(f"JWE member {name!r} is missing or not a string")
    return value


def _member(jwe: Mapping[str, Any], name: str) -> bytes:
    try:
        return b64url_decode_nopad(_string_member(jwe, name))
    except Base64Error as exc:
        raise JweError(f"JWE member {name!r}: {exc}") from exc


def _unwrap_ecdh(
    header: Mapping[str, Any],
    private_key: PrivateKey,
    wrapped: bytes,
    curves: tuple[str, ...],
) -> bytes:
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
    mine, theirs = ec_curve_name(private_key.curve), ec_curve_name(epk.curve)
    if theirs != mine:
        raise JweError(f"JWE 'epk' is on {theirs}, the TEE key is on {mine}")
    if mine not in curves:
        raise JweError(
            f"ECDH on {mine} is not supported in this JWE form (only {', '.join(curves)})"
        )
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
    failure = JweError(f"cannot decrypt the content key ({alg}): not encrypted to this key")
    try:
        cek = private_key.decrypt(wrapped, pad)
    except ValueError:
        raise failure from None
    # OpenSSL's implicit rejection answers a PKCS#1 v1.5 padding failure with a synthetic
    # message instead of an error; its length is the only cheap tell before the GCM tag check.
    if alg == ALG_RSA1_5 and len(cek) != _CEK_BYTES:
        raise failure
    return cek


def _check_sizes(cek: bytes, iv: bytes) -> None:
    if len(cek) != _CEK_BYTES:
        raise JweError(f"content key is {len(cek)} bytes, A256GCM needs {_CEK_BYTES}")
    if len(iv) != _IV_BYTES:
        raise JweError(f"JWE iv is {len(iv)} bytes, A256GCM needs {_IV_BYTES}")


def _header_alg_enc(header: Any) -> tuple[str, str]:
    if not isinstance(header, dict):
        raise JweError("JWE protected header must be a JSON object")
    alg, enc = header.get("alg"), header.get("enc")
    if not isinstance(alg, str) or not isinstance(enc, str):
        raise JweError("JWE protected header needs string members 'alg' and 'enc'")
    if enc != ENC:
        raise JweError(f"JWE content encryption {enc!r} is not supported (only {ENC})")
    return alg, enc


def decrypt(
    jwe: Mapping[str, Any], private_key: PrivateKey, *, form: JweForm = FORM_RFC7516
) -> bytes:
    """Decrypt a resource response the way that form's Rust KBS client does."""
    _check_form(form)
    if not isinstance(jwe, Mapping):
        raise JweError(f"a JWE must be a JSON object, got {type(jwe).__name__}")
    if form == FORM_V01:
        return _decrypt_v01(jwe, private_key)
    if _string_member(jwe, "protected").lstrip().startswith("{"):
        raise JweError(
            "JWE 'protected' is JSON text, not base64url: this is the legacy 0.1.x form, "
            "which only protocol 0.1.0/0.1.1 clients read"
        )
    protected = _member(jwe, "protected")
    try:
        header = json.loads(protected)
    except (UnicodeDecodeError, ValueError) as exc:
        raise JweError(f"JWE protected header is not JSON: {exc}") from exc
    alg, _ = _header_alg_enc(header)
    wrapped = _member(jwe, "encrypted_key")
    iv, ciphertext, tag = _member(jwe, "iv"), _member(jwe, "ciphertext"), _member(jwe, "tag")
    if alg == ALG_ECDH_ES_A256KW:
        cek = _unwrap_ecdh(header, private_key, wrapped, ec_curves(form))
    elif alg in (ALG_RSA_OAEP_256, ALG_RSA1_5):
        cek = _unwrap_rsa(alg, private_key, wrapped)
    else:
        raise JweError(f"JWE key management {alg!r} is not supported ({', '.join(SUPPORTED_ALGS)})")
    _check_sizes(cek, iv)
    if len(tag) != _TAG_BYTES:
        raise JweError(f"JWE tag is {len(tag)} bytes, A256GCM needs {_TAG_BYTES}")
    sort_members = form == FORM_RFC7516_P256
    aad = encode_protected_header(header, sort_members=sort_members).encode("ascii")
    try:
        return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag:
        raise JweError("JWE authentication failed: ciphertext, iv, tag or header altered") from None


def _decrypt_v01(jwe: Mapping[str, Any], private_key: PrivateKey) -> bytes:
    # Every member must be a string even though `tag` is never read: the 0.1.x client's
    # response type requires all five.
    for name in MEMBERS:
        _string_member(jwe, name)
    try:
        header = json.loads(jwe["protected"])
    except ValueError:
        raise JweError(
            "JWE 'protected' is not JSON text as the legacy 0.1.x form requires "
            "(a base64url header means an RFC 7516 JWE for protocol 0.2.0/0.4.0 clients)"
        ) from None
    alg, _ = _header_alg_enc(header)
    if alg != ALG_RSA1_5:
        raise JweError(f"legacy JWE key management {alg!r} is not supported (only {ALG_RSA1_5})")
    wrapped, iv, sealed = (
        _member(jwe, "encrypted_key"),
        _member(jwe, "iv"),
        _member(jwe, "ciphertext"),
    )
    cek = _unwrap_rsa(ALG_RSA1_5, private_key, wrapped)
    _check_sizes(cek, iv)
    if len(sealed) < _TAG_BYTES:
        raise JweError(
            f"legacy JWE ciphertext is {len(sealed)} bytes, shorter than its {_TAG_BYTES}-byte tag"
        )
    try:
        return AESGCM(cek).decrypt(iv, sealed, None)
    except InvalidTag:
        raise JweError("JWE authentication failed: ciphertext, iv or tag altered") from None
