"""JWE wire forms of the older KBS protocols: the non-RFC 0.1.x form and the 0.2.0 RFC variant.

Known answers are worked examples with fixed values (CEK 00…1f, IV a0…ab,
plaintext `res1val1`); decryption is also cross-checked with bare `cryptography` primitives.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from trustee.crypto.jwk import generate_tee_key, public_jwk
from trustee.protocol import jwe
from trustee.protocol.jwe import JweError, concat_kdf, decrypt, encode_protected_header, encrypt

CEK = bytes(range(32))
IV = bytes(range(0xA0, 0xAC))
PLAINTEXT = b"res1val1"
OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def ud(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    key = generate_tee_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def rsa15(rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return public_jwk(rsa_key, alg="RSA1_5")


def legacy_by_hand(
    key: rsa.RSAPrivateKey, plaintext: bytes, protected: str = '{"alg":"RSA1_5","enc":"A256GCM"}'
) -> dict[str, str]:
    """A 0.1.x-form JWE made from primitives only, as the v0.11 server builds it."""
    cek, iv = os.urandom(32), os.urandom(12)
    return {
        "protected": protected,
        "encrypted_key": u(key.public_key().encrypt(cek, padding.PKCS1v15())),
        "iv": u(iv),
        "ciphertext": u(AESGCM(cek).encrypt(iv, plaintext, b"")),
        "tag": "",
    }


def legacy_decrypt_by_hand(body: dict[str, str], key: rsa.RSAPrivateKey) -> bytes:
    """Steps 2–4 of the G1 client, with primitives only."""
    header = json.loads(body["protected"])
    assert (header["alg"], header["enc"]) == ("RSA1_5", "A256GCM")
    cek = key.decrypt(ud(body["encrypted_key"]), padding.PKCS1v15())
    return AESGCM(cek).decrypt(ud(body["iv"]), ud(body["ciphertext"]), b"")


# ---------------------------------------------------------------- the 0.1.x form


def test_legacy_worked_example(rsa_key: rsa.RSAPrivateKey, rsa15: dict[str, Any]) -> None:
    out = encrypt(PLAINTEXT, rsa15, form="v0.1", cek=CEK, iv=IV)
    assert list(out) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert out["protected"] == '{"alg":"RSA1_5","enc":"A256GCM"}'
    assert out["iv"] == "oKGio6Slpqeoqaqr"
    assert out["ciphertext"] == "lH0PHDOqbo7h1CXInN-8PZ1aJBAKeZPI"
    assert out["tag"] == ""
    assert len(out["encrypted_key"]) == 342
    assert compact(out) == (
        '{"protected":"{\\"alg\\":\\"RSA1_5\\",\\"enc\\":\\"A256GCM\\"}",'
        f'"encrypted_key":"{out["encrypted_key"]}",'
        '"iv":"oKGio6Slpqeoqaqr","ciphertext":"lH0PHDOqbo7h1CXInN-8PZ1aJBAKeZPI","tag":""}'
    )
    # The CEK really is wrapped with PKCS#1 v1.5 under the TEE key.
    assert rsa_key.decrypt(ud(out["encrypted_key"]), padding.PKCS1v15()) == CEK
    assert legacy_decrypt_by_hand(out, rsa_key) == PLAINTEXT
    assert decrypt(out, rsa_key, form="v0.1") == PLAINTEXT


@pytest.mark.parametrize("plaintext", [b"", PLAINTEXT, os.urandom(5000)])
def test_legacy_round_trip(
    rsa_key: rsa.RSAPrivateKey, rsa15: dict[str, Any], plaintext: bytes
) -> None:
    out = encrypt(plaintext, rsa15, form="v0.1")
    assert len(ud(out["ciphertext"])) == len(plaintext) + 16
    assert decrypt(out, rsa_key, form="v0.1") == plaintext
    assert legacy_decrypt_by_hand(out, rsa_key) == plaintext


def test_legacy_is_randomised(rsa15: dict[str, Any]) -> None:
    a, b = encrypt(b"x", rsa15, form="v0.1"), encrypt(b"x", rsa15, form="v0.1")
    assert a["iv"] != b["iv"] and a["encrypted_key"] != b["encrypted_key"]


def test_legacy_logs_no_deprecation_warning(
    rsa15: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trustee.protocol.jwe"):
        encrypt(b"x", rsa15, form="v0.1")
    assert not caplog.records


def test_legacy_decrypts_hand_built(rsa_key: rsa.RSAPrivateKey) -> None:
    assert decrypt(legacy_by_hand(rsa_key, b"interop"), rsa_key, form="v0.1") == b"interop"
    # Extra header members and member order do not matter (the AAD is empty); `tag` is unread.
    odd = legacy_by_hand(rsa_key, b"ok", '{"enc": "A256GCM", "kid": "k", "alg": "RSA1_5"}')
    assert decrypt({**odd, "tag": "ignored"}, rsa_key, form="v0.1") == b"ok"


def test_legacy_encrypt_rejects_other_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    p256 = generate_tee_key("ec-p256")
    cases: list[tuple[Any, str]] = [
        (public_jwk(rsa_key, alg="RSA-OAEP-256"), "RSA1_5"),
        (public_jwk(rsa_key), "RSA1_5"),
        (public_jwk(p256, alg="ECDH-ES+A256KW"), "kty 'EC'"),
        (public_jwk(p256, alg="RSA1_5"), "kty 'EC'"),
        ({"kty": "RSA", "alg": "RSA1_5", "n": "", "e": "AQAB"}, "invalid"),
        (["not", "a", "jwk"], "JWK object"),
    ]
    for jwk, match in cases:
        with pytest.raises(JweError, match=match):
            encrypt(b"x", jwk, form="v0.1")
    with pytest.raises(JweError, match="ephemeral"):
        encrypt(b"x", public_jwk(rsa_key, alg="RSA1_5"), form="v0.1", ephemeral_key=p256)  # type: ignore[arg-type]


@pytest.mark.parametrize("member", ["encrypted_key", "iv", "ciphertext"])
def test_legacy_decrypt_is_strict_base64url(
    rsa_key: rsa.RSAPrivateKey, rsa15: dict[str, Any], member: str
) -> None:
    out = encrypt(PLAINTEXT, rsa15, form="v0.1")
    padded = out[member] + "=" * (-len(out[member]) % 4 or 4)
    with pytest.raises(JweError, match="padding"):
        decrypt({**out, member: padded}, rsa_key, form="v0.1")
    std = out[member].replace("-", "+").replace("_", "/")
    if std != out[member]:
        with pytest.raises(JweError, match="outside the alphabet"):
            decrypt({**out, member: std}, rsa_key, form="v0.1")


def test_legacy_decrypt_rejects_non_canonical_trailing_bits(rsa_key: rsa.RSAPrivateKey) -> None:
    out = encrypt(b"A", public_jwk(rsa_key, alg="RSA1_5"), form="v0.1")
    # 1 byte + 16-byte tag = 17 bytes = 23 characters, whose last one has 2 unused bits.
    text = out["ciphertext"]
    assert len(text) == 23
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bad = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    with pytest.raises(JweError, match="non-canonical"):
        decrypt({**out, "ciphertext": bad}, rsa_key, form="v0.1")
    assert decrypt(out, rsa_key, form="v0.1") == b"A"


def test_legacy_decrypt_rejections(rsa_key: rsa.RSAPrivateKey, rsa15: dict[str, Any]) -> None:
    good = encrypt(PLAINTEXT, rsa15, form="v0.1")
    cases: list[tuple[dict[str, Any], str]] = [
        ({k: v for k, v in good.items() if k != "tag"}, "'tag' is missing"),
        ({**good, "tag": None}, "'tag' is missing or not a string"),
        ({**good, "protected": '{"alg":"RSA-OAEP-256","enc":"A256GCM"}'}, "only RSA1_5"),
        ({**good, "protected": '{"alg":"RSA1_5","enc":"A128GCM"}'}, "A256GCM"),
        ({**good, "protected": '{"alg":"RSA1_5"}'}, "'alg' and 'enc'"),
        ({**good, "protected": "[1]"}, "JSON object"),
        ({**good, "ciphertext": u(b"short")}, "shorter than its 16-byte tag"),
        ({**good, "iv": u(b"\0" * 16)}, "iv is 16 bytes"),
    ]
    for body, match in cases:
        with pytest.raises(JweError, match=match):
            decrypt(body, rsa_key, form="v0.1")
    sealed = bytearray(ud(good["ciphertext"]))
    sealed[-1] ^= 1
    with pytest.raises(JweError, match="authentication failed"):
        decrypt({**good, "ciphertext": u(bytes(sealed))}, rsa_key, form="v0.1")
    # Implicit rejection may yield a 32-byte synthetic key: then the tag check catches it.
    with pytest.raises(JweError, match=r"not encrypted to this key|authentication failed"):
        decrypt(good, generate_tee_key("rsa"), form="v0.1")
    with pytest.raises(JweError, match="needs an RSA private key"):
        decrypt(good, generate_tee_key("ec-p256"), form="v0.1")
    with pytest.raises(JweError, match="JSON object"):
        decrypt([good], rsa_key, form="v0.1")  # type: ignore[arg-type]


def test_forms_do_not_cross(rsa_key: rsa.RSAPrivateKey) -> None:
    rfc = encrypt(PLAINTEXT, public_jwk(rsa_key, alg="RSA1_5"))
    with pytest.raises(JweError, match=r"not JSON text.*RFC 7516"):
        decrypt(rfc, rsa_key, form="v0.1")
    legacy = encrypt(PLAINTEXT, public_jwk(rsa_key, alg="RSA1_5"), form="v0.1")
    for form in ("rfc7516", "rfc7516-p256"):
        with pytest.raises(JweError, match=r"legacy 0\.1\.x form"):
            decrypt(legacy, rsa_key, form=form)


# ---------------------------------------------------------------- the 0.2.0 RFC form


@pytest.mark.parametrize("form", ["rfc7516", "rfc7516-p256"])
@pytest.mark.parametrize(
    ("alg", "protected", "tag"),
    [
        (
            "RSA-OAEP-256",
            "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0",
            "NKUogIvRuAULI5NWrCrBgg",
        ),
        ("RSA1_5", "eyJhbGciOiJSU0ExXzUiLCJlbmMiOiJBMjU2R0NNIn0", "FsQ9RITC9y56YNuUog5wMQ"),
    ],
)
def test_rsa_worked_examples(
    rsa_key: rsa.RSAPrivateKey, form: Any, alg: str, protected: str, tag: str
) -> None:
    out = encrypt(PLAINTEXT, public_jwk(rsa_key, alg=alg), form=form, cek=CEK, iv=IV)
    assert (out["protected"], out["iv"], out["ciphertext"], out["tag"]) == (
        protected,
        "oKGio6Slpqeoqaqr",
        "lH0PHDOqbo4",
        tag,
    )
    pad = OAEP256 if alg == "RSA-OAEP-256" else padding.PKCS1v15()
    assert rsa_key.decrypt(ud(out["encrypted_key"]), pad) == CEK
    assert decrypt(out, rsa_key, form=form) == PLAINTEXT


ECDH_BODY = (
    '{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJlcGsiOnsiY3J2IjoiUC0y'
    "NTYiLCJrdHkiOiJFQyIsIngiOiJmUEo3R0kwRFQzNktVamdEQkxVYXc4Q0phZUozOGhzMXBndElfRWRtbVhnIiwie"
    'SI6IkIzZFZFTnVPMEVBcFBackduM1F3MjdwOXJlWTg2WUlwbmdTM25TSjRjOUUifX0","encrypted_key":"gKD1'
    'vwpNmfEvP8gjKru_DX1FK9aTzjya_ixwxHJWfqsCtH0yg1y_WQ","iv":"oKGio6Slpqeoqaqr","ciphertext":'
    '"lH0PHDOqbo4","tag":"VbzSjB5y_Netf691qUHGhQ"}'
)


@pytest.mark.parametrize("form", ["rfc7516", "rfc7516-p256"])
def test_deterministic_ecdh_worked_example(form: Any) -> None:
    tee = ec.derive_private_key(1, ec.SECP256R1())
    ephemeral = ec.derive_private_key(2, ec.SECP256R1())
    jwk = public_jwk(tee, alg="ECDH-ES+A256KW")
    assert (jwk["x"], jwk["y"]) == (
        "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
        "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
    )
    epk = public_jwk(ephemeral)
    assert (epk["x"], epk["y"]) == (
        "fPJ7GI0DT36KUjgDBLUaw8CJaeJ38hs1pgtI_EdmmXg",
        "B3dVENuO0EApPZrGn3Qw27p9reY86YIpngS3nSJ4c9E",
    )
    z = ephemeral.exchange(ec.ECDH(), tee.public_key())
    assert z.hex() == "7cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc47669978"
    kek = concat_kdf(z, "ECDH-ES+A256KW", 256)
    assert kek.hex() == "12b15310248bff9ed2943d3bf2534d2a3f12e4141171268aa90760ce2ea8e43e"

    out = encrypt(PLAINTEXT, jwk, form=form, cek=CEK, iv=IV, ephemeral_key=ephemeral)
    assert compact(out) == ECDH_BODY
    assert ud(out["encrypted_key"]) == aes_key_wrap(kek, CEK)
    for decrypt_form in ("rfc7516", "rfc7516-p256"):
        assert decrypt(json.loads(ECDH_BODY), tee, form=decrypt_form) == PLAINTEXT


def test_p256_form_rejects_other_curves() -> None:
    p521 = generate_tee_key("ec-p521")
    jwk = public_jwk(p521, alg="ECDH-ES+A256KW")
    with pytest.raises(JweError, match=r"'P-521' is not supported \(use P-256\)"):
        encrypt(b"x", jwk, form="rfc7516-p256")
    body = encrypt(b"x", jwk)  # fine for 0.4.0
    assert decrypt(body, p521) == b"x"
    with pytest.raises(JweError, match="only P-256"):
        decrypt(body, p521, form="rfc7516-p256")


def sorted_aad_jwe(key: ec.EllipticCurvePrivateKey, header_text: str, aad_text: str) -> Any:
    """An ECDH JWE whose `protected` carries `header_text` but whose AAD is `aad_text`."""
    ephemeral = ec.derive_private_key(2, ec.SECP256R1())
    placeholder = json.loads(header_text)
    assert placeholder["epk"]["x"] == "X"
    epk = public_jwk(ephemeral)
    header_text = header_text.replace('"X"', f'"{epk["x"]}"').replace('"Y"', f'"{epk["y"]}"')
    aad_text = aad_text.replace('"X"', f'"{epk["x"]}"').replace('"Y"', f'"{epk["y"]}"')
    kek = concat_kdf(ephemeral.exchange(ec.ECDH(), key.public_key()), "ECDH-ES+A256KW", 256)
    sealed = AESGCM(CEK).encrypt(IV, PLAINTEXT, u(aad_text.encode()).encode())
    return {
        "protected": u(header_text.encode()),
        "encrypted_key": u(aes_key_wrap(kek, CEK)),
        "iv": u(IV),
        "ciphertext": u(sealed[:-16]),
        "tag": u(sealed[-16:]),
    }


def test_p256_form_rebuilds_aad_sorted() -> None:
    key = ec.derive_private_key(1, ec.SECP256R1())
    epk_sent = '{"y":"Y","x":"X","kty":"EC","crv":"P-256"}'
    epk_sorted = '{"crv":"P-256","kty":"EC","x":"X","y":"Y"}'
    sent = f'{{"enc":"A256GCM","zz":1,"epk":{epk_sent},"alg":"ECDH-ES+A256KW","kid":"k"}}'
    # What a 0.2.0 client hashes (sorted) and what a 0.4.0 client hashes (received order).
    aad_sorted = f'{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{epk_sorted},"kid":"k","zz":1}}'
    aad_insertion = f'{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","zz":1,"epk":{epk_sent},"kid":"k"}}'
    g2 = sorted_aad_jwe(key, sent, aad_sorted)
    assert decrypt(g2, key, form="rfc7516-p256") == PLAINTEXT
    with pytest.raises(JweError, match="authentication failed"):
        decrypt(g2, key)
    g3 = sorted_aad_jwe(key, sent, aad_insertion)
    assert decrypt(g3, key) == PLAINTEXT
    with pytest.raises(JweError, match="authentication failed"):
        decrypt(g3, key, form="rfc7516-p256")


def test_sorted_header_encoding() -> None:
    header = {"zz": 1, "enc": "e", "kid": "k", "alg": "a", "epk": {"y": 1, "x": [{"b": 1, "a": 2}]}}
    assert ud(encode_protected_header(header, sort_members=True)) == (
        b'{"alg":"a","enc":"e","epk":{"x":[{"a":2,"b":1}],"y":1},"kid":"k","zz":1}'
    )
    assert ud(encode_protected_header(header)) == (
        b'{"alg":"a","enc":"e","zz":1,"kid":"k","epk":{"y":1,"x":[{"b":1,"a":2}]}}'
    )


# ---------------------------------------------------------------- form names, fixed inputs


def test_form_names() -> None:
    assert jwe.FORMS == ("rfc7516", "rfc7516-p256", "v0.1")
    assert jwe.FORM_BY_PROTOCOL == {
        "0.1.0": "v0.1",
        "0.1.1": "v0.1",
        "0.2.0": "rfc7516-p256",
        "0.4.0": "rfc7516",
    }
    assert jwe.form_for_protocol("0.1.1") == jwe.FORM_V01
    with pytest.raises(JweError, match=r"0\.3\.0"):
        jwe.form_for_protocol("0.3.0")
    with pytest.raises(JweError, match="not implemented"):
        encrypt(b"x", {}, form="legacy-0.1")  # type: ignore[arg-type]
    with pytest.raises(JweError, match="not implemented"):
        decrypt({}, generate_tee_key("rsa"), form="rfc7516-sorted")  # type: ignore[arg-type]


def test_fixed_inputs_are_checked(rsa15: dict[str, Any]) -> None:
    p256 = ec.derive_private_key(1, ec.SECP256R1())
    p521 = generate_tee_key("ec-p521")
    assert isinstance(p521, ec.EllipticCurvePrivateKey)
    with pytest.raises(JweError, match="content key must be 32 bytes"):
        encrypt(b"x", rsa15, cek=b"short")
    with pytest.raises(JweError, match="iv must be 12 bytes"):
        encrypt(b"x", rsa15, form="v0.1", iv=b"\0" * 16)
    with pytest.raises(JweError, match="not on the TEE key's curve"):
        encrypt(b"x", public_jwk(p256, alg="ECDH-ES+A256KW"), ephemeral_key=p521)
    with pytest.raises(JweError, match="no ephemeral key"):
        encrypt(b"x", rsa15, ephemeral_key=p256)
