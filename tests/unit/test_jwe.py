"""KBS resource-response JWE: byte-exact vectors, interop with hand-built JWEs, rejections."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

from trustee.crypto.jwk import generate_tee_key, public_jwk, tee_public_jwk
from trustee.protocol.jwe import JweError, concat_kdf, decrypt, encode_protected_header, encrypt

OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


# ---------------------------------------------------------------- independent helpers


def u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def ud(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def kdf_by_hand(z: bytes) -> bytes:
    """SP 800-56A one-block Concat KDF for ECDH-ES+A256KW, written from the spec text."""
    other_info = bytes.fromhex("0000000e454344482d45532b413235364b57000000000000000000000100")
    return hashlib.sha256(b"\x00\x00\x00\x01" + z + other_info).digest()


def coords(key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    size = (key.curve.key_size + 7) // 8
    n = key.public_numbers()
    return u(n.x.to_bytes(size, "big")), u(n.y.to_bytes(size, "big"))


def manual_decrypt(jwe: dict[str, str], key: Any) -> bytes:
    """Decrypt our output without using our decrypt(): what the Rust client does, by hand."""
    header = json.loads(ud(jwe["protected"]))
    if header["alg"] == "ECDH-ES+A256KW":
        epk = header["epk"]
        curve = {"P-256": ec.SECP256R1(), "P-521": ec.SECP521R1()}[epk["crv"]]
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(ud(epk["x"]), "big"), int.from_bytes(ud(epk["y"]), "big"), curve
        ).public_key()
        cek = aes_key_unwrap(kdf_by_hand(key.exchange(ec.ECDH(), peer)), ud(jwe["encrypted_key"]))
    elif header["alg"] == "RSA-OAEP-256":
        cek = key.decrypt(ud(jwe["encrypted_key"]), OAEP256)
    else:
        cek = key.decrypt(ud(jwe["encrypted_key"]), padding.PKCS1v15())
    return AESGCM(cek).decrypt(
        ud(jwe["iv"]), ud(jwe["ciphertext"]) + ud(jwe["tag"]), jwe["protected"].encode()
    )


def hand_built_jwe(key: Any, plaintext: bytes, header_json: str | None = None) -> dict[str, str]:
    """A JWE made only with cryptography primitives (no code from trustee)."""
    cek, iv = os.urandom(32), os.urandom(12)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        eph = ec.generate_private_key(key.curve)
        x, y = coords(eph.public_key())
        crv = "P-256" if key.curve.name == "secp256r1" else "P-521"
        epk = '{"crv":"' + crv + '","kty":"EC","x":"' + x + '","y":"' + y + '"}'
        header_json = header_json or '{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":' + epk + "}"
        wrapped = aes_key_wrap(kdf_by_hand(eph.exchange(ec.ECDH(), key.public_key())), cek)
    else:
        header_json = header_json or '{"alg":"RSA-OAEP-256","enc":"A256GCM"}'
        wrapped = key.public_key().encrypt(cek, OAEP256)
    protected = u(header_json.encode())
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return {
        "protected": protected,
        "encrypted_key": u(wrapped),
        "iv": u(iv),
        "ciphertext": u(sealed[:-16]),
        "tag": u(sealed[-16:]),
    }


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {kind: generate_tee_key(kind) for kind in ("ec-p256", "ec-p521", "rsa")}


# ---------------------------------------------------------------- vectors


def test_concat_kdf_spec_vector() -> None:
    kek = concat_kdf(b"\x11" * 32, "ECDH-ES+A256KW", 256)
    assert kek.hex() == "2b91f686dd74adb8af60b622c02082ade214b7e61acce682eeb3bfedefbe57c7"
    assert kek == kdf_by_hand(b"\x11" * 32)


def test_concat_kdf_multi_block_and_bad_length() -> None:
    out = concat_kdf(b"\x22" * 66, "X", 384)
    assert len(out) == 48
    assert out[:32] == concat_kdf(b"\x22" * 66, "X", 384)[:32]
    with pytest.raises(JweError, match="multiple of 8"):
        concat_kdf(b"z", "X", 7)


def test_header_vectors() -> None:
    assert (
        encode_protected_header({"alg": "RSA-OAEP-256", "enc": "A256GCM"})
        == "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0"
    )
    assert (
        encode_protected_header({"alg": "fakealg", "enc": "fakeenc"})
        == "eyJhbGciOiJmYWtlYWxnIiwiZW5jIjoiZmFrZWVuYyJ9"
    )
    # alg and enc always lead, other members keep their order
    hdr = encode_protected_header({"zz": 1, "enc": "e", "kid": "k", "alg": "a"})
    assert ud(hdr) == b'{"alg":"a","enc":"e","zz":1,"kid":"k"}'


def test_rsa_oaep_protected_is_exact(keys: dict[str, Any]) -> None:
    out = encrypt(b"x", tee_public_jwk(keys["rsa"]))
    assert out["protected"] == "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0"


@pytest.mark.parametrize(
    ("kind", "crv", "b64len"), [("ec-p256", "P-256", 43), ("ec-p521", "P-521", 88)]
)
def test_ec_header_exact_form(keys: dict[str, Any], kind: str, crv: str, b64len: int) -> None:
    out = encrypt(b"secret", tee_public_jwk(keys[kind]))
    raw = ud(out["protected"]).decode()
    header = json.loads(raw)
    x, y = header["epk"]["x"], header["epk"]["y"]
    assert len(x) == len(y) == b64len
    assert raw == (
        '{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":'
        f'{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}}}'
    )
    assert len(ud(out["encrypted_key"])) == 40


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p521", "rsa"])
def test_output_members_order_and_unpadded(keys: dict[str, Any], kind: str) -> None:
    out = encrypt(b"some resource bytes", tee_public_jwk(keys[kind]))
    assert list(out) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert all("=" not in v and "+" not in v and "/" not in v for v in out.values())
    assert len(ud(out["iv"])) == 12 and len(ud(out["tag"])) == 16
    assert "aad" not in out


# ---------------------------------------------------------------- round trips / interop


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p521", "rsa"])
@pytest.mark.parametrize("plaintext", [b"", b"res1val1", os.urandom(5000)])
def test_round_trip(keys: dict[str, Any], kind: str, plaintext: bytes) -> None:
    out = encrypt(plaintext, tee_public_jwk(keys[kind]))
    assert decrypt(out, keys[kind]) == plaintext
    assert manual_decrypt(out, keys[kind]) == plaintext


def test_rsa1_5_round_trip_warns(keys: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    jwk = public_jwk(keys["rsa"], alg="RSA1_5")
    with caplog.at_level(logging.WARNING, logger="trustee.protocol.jwe"):
        out = encrypt(b"legacy", jwk)
    assert any("RSA1_5" in r.getMessage() for r in caplog.records)
    assert ud(out["protected"]) == b'{"alg":"RSA1_5","enc":"A256GCM"}'
    assert decrypt(out, keys["rsa"]) == b"legacy"
    assert manual_decrypt(out, keys["rsa"]) == b"legacy"


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p521", "rsa"])
def test_decrypt_hand_built(keys: dict[str, Any], kind: str) -> None:
    assert decrypt(hand_built_jwe(keys[kind], b"interop"), keys[kind]) == b"interop"


def test_decrypt_reserialises_header_like_the_client(keys: dict[str, Any]) -> None:
    key = keys["rsa"]
    # Sender used the canonical order as AAD but sent the members in another order:
    # the client parses and re-serialises, so this decrypts.
    jwe = hand_built_jwe(key, b"ok", '{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k1"}')
    canonical_aad = jwe["protected"]
    reordered = u(b'{"enc":"A256GCM","kid":"k1","alg":"RSA-OAEP-256"}')
    assert decrypt({**jwe, "protected": reordered}, key) == b"ok"
    # Spaces in the header are not part of the re-serialised AAD either.
    spaced = u(b'{"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k1"}')
    assert decrypt({**jwe, "protected": spaced}, key) == b"ok"
    # A sender that used its own spaced text as AAD is rejected, exactly as by the client.
    bad = hand_built_jwe(key, b"no", '{"alg": "RSA-OAEP-256", "enc": "A256GCM"}')
    with pytest.raises(JweError, match="authentication failed"):
        decrypt(bad, key)
    assert canonical_aad != reordered


# ---------------------------------------------------------------- tampering


@pytest.mark.parametrize("member", ["ciphertext", "tag", "iv", "encrypted_key"])
@pytest.mark.parametrize("kind", ["ec-p256", "rsa"])
def test_tamper_detected(keys: dict[str, Any], kind: str, member: str) -> None:
    out = encrypt(b"attack at dawn", tee_public_jwk(keys[kind]))
    raw = bytearray(ud(out[member]))
    raw[0] ^= 0x01
    with pytest.raises(JweError):
        decrypt({**out, member: u(bytes(raw))}, keys[kind])


def test_tampered_header_detected(keys: dict[str, Any]) -> None:
    out = encrypt(b"x", tee_public_jwk(keys["rsa"]))
    forged = u(b'{"alg":"RSA-OAEP-256","enc":"A256GCM","x":1}')
    with pytest.raises(JweError, match="authentication failed"):
        decrypt({**out, "protected": forged}, keys["rsa"])


def test_wrong_key_rejected(keys: dict[str, Any]) -> None:
    out = encrypt(b"x", tee_public_jwk(keys["ec-p256"]))
    with pytest.raises(JweError, match="unwrap"):
        decrypt(out, generate_tee_key("ec-p256"))
    with pytest.raises(JweError, match="needs an EC private key"):
        decrypt(out, keys["rsa"])
    with pytest.raises(JweError, match="P-256"):
        decrypt(out, keys["ec-p521"])


# ---------------------------------------------------------------- rejections


def test_encrypt_rejects_unsupported_keys(keys: dict[str, Any]) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    cases: list[tuple[dict[str, Any], str]] = [
        (public_jwk(p384, alg="ECDH-ES+A256KW"), "P-384"),
        (public_jwk(keys["ec-p256"]), "no 'alg'"),
        (public_jwk(keys["ec-p256"], alg="ECDH-ES"), "not supported"),
        (public_jwk(keys["rsa"], alg="RSA-OAEP"), "not supported"),
        (public_jwk(keys["rsa"], alg="ECDH-ES+A256KW"), "needs an EC key"),
        (public_jwk(keys["ec-p256"], alg="RSA-OAEP-256"), "needs an RSA key"),
        ({"kty": "oct", "alg": "A256KW", "k": u(b"k" * 32)}, "not supported"),
    ]
    for jwk, match in cases:
        with pytest.raises(JweError, match=match):
            encrypt(b"x", jwk)


@pytest.mark.parametrize(("size", "crv"), [(31, "P-256"), (33, "P-256"), (65, "P-521")])
def test_encrypt_rejects_wrong_coordinate_size(keys: dict[str, Any], size: int, crv: str) -> None:
    key = keys["ec-p256" if crv == "P-256" else "ec-p521"]
    jwk = tee_public_jwk(key)
    x = ud(jwk["x"])
    jwk["x"] = u(x[len(x) - size :] if size < len(x) else b"\0" * (size - len(x)) + x)
    with pytest.raises(JweError, match="exactly"):
        encrypt(b"x", jwk)


def test_encrypt_rejects_point_off_curve(keys: dict[str, Any]) -> None:
    jwk = tee_public_jwk(keys["ec-p256"])
    jwk["y"] = u((int.from_bytes(ud(jwk["y"]), "big") ^ 1).to_bytes(32, "big"))
    with pytest.raises(JweError, match="not on curve"):
        encrypt(b"x", jwk)


def test_decrypt_rejects_malformed(keys: dict[str, Any]) -> None:
    key = keys["ec-p256"]
    good = encrypt(b"x", tee_public_jwk(key))
    with pytest.raises(JweError, match="'tag' is missing"):
        decrypt({k: v for k, v in good.items() if k != "tag"}, key)
    with pytest.raises(JweError, match="padding"):
        decrypt({**good, "tag": good["tag"] + "=="}, key)
    with pytest.raises(JweError, match="not JSON"):
        decrypt({**good, "protected": u(b"not json")}, key)
    with pytest.raises(JweError, match="A256GCM"):
        decrypt({**good, "protected": u(b'{"alg":"ECDH-ES+A256KW","enc":"A128GCM"}')}, key)
    with pytest.raises(JweError, match="epk"):
        decrypt({**good, "protected": u(b'{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}')}, key)
    with pytest.raises(JweError, match="not supported"):
        decrypt({**good, "protected": u(b'{"alg":"dir","enc":"A256GCM"}')}, key)
    with pytest.raises(JweError, match="not implemented"):
        encrypt(b"x", tee_public_jwk(key), form="legacy-0.1")  # type: ignore[arg-type]


def test_rsa_oaep_uses_sha256(keys: dict[str, Any]) -> None:
    out = encrypt(b"x", tee_public_jwk(keys["rsa"]))
    cek = keys["rsa"].decrypt(ud(out["encrypted_key"]), OAEP256)
    assert len(cek) == 32
    with pytest.raises(ValueError):
        sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        keys["rsa"].decrypt(ud(out["encrypted_key"]), sha1)
    assert isinstance(keys["rsa"], rsa.RSAPrivateKey)
