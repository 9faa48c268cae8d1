"""X.509 path validation for x5c endorsement, with a test PKI generated here."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from trustee.crypto.x509chain import (
    ChainError,
    certificates_from_x5c,
    load_pem_certificates,
    verify_chain,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_cert(
    cn: str,
    key: Any,
    issuer: tuple[x509.Certificate, Any] | None = None,
    *,
    ca: bool | None = True,
    path_length: int | None = None,
    days: tuple[int, int] = (-1, 365),
    pss: bool = False,
    key_cert_sign: bool = True,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, key_cert_sign, True, False, False),
            critical=True,
        )
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    rsa_padding = padding.PSS(padding.MGF1(hashes.SHA256()), 32) if pss else None
    if rsa_padding is not None:
        return builder.sign(signer, algorithm, rsa_padding=rsa_padding)
    return builder.sign(signer, algorithm)


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    int1_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    int2_key = ed25519.Ed25519PrivateKey.generate()
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root = make_cert("Test Root", root_key)
    int1 = make_cert("Int 1", int1_key, (root, root_key))  # ECDSA signature
    int2 = make_cert("Int 2", int2_key, (int1, int1_key), pss=True)  # RSA-PSS signature
    leaf = make_cert("Leaf", leaf_key, (int2, int2_key), ca=False)  # Ed25519 signature
    leaf_pkcs1 = make_cert("Leaf PKCS1", leaf_key, (int1, int1_key), ca=False)
    return {
        "root": root,
        "root_key": root_key,
        "int1": int1,
        "int1_key": int1_key,
        "int2": int2,
        "int2_key": int2_key,
        "leaf": leaf,
        "leaf_key": leaf_key,
        "leaf_pkcs1": leaf_pkcs1,
    }


def test_self_signed_root_as_anchor(pki: dict[str, Any]) -> None:
    verify_chain(pki["root"], [], [pki["root"]], NOW)


def test_self_signed_not_anchored(pki: dict[str, Any]) -> None:
    other = make_cert("Test Root", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain(other, [], [pki["root"]], NOW)


def test_full_chain(pki: dict[str, Any]) -> None:
    verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [pki["root"]], NOW)
    verify_chain(pki["leaf_pkcs1"], [pki["int1"]], [pki["root"]], NOW)


def test_permuted_intermediates(pki: dict[str, Any]) -> None:
    verify_chain(pki["leaf"], [pki["int1"], pki["int2"]], [pki["root"]], NOW)
    # extra unrelated certificates and the root inside the intermediates do no harm
    stray = make_cert("Stray", ec.generate_private_key(ec.SECP256R1()))
    verify_chain(pki["leaf"], [stray, pki["root"], pki["int1"], pki["int2"]], [pki["root"]], NOW)


def test_intermediate_as_anchor(pki: dict[str, Any]) -> None:
    verify_chain(pki["leaf"], [], [pki["int2"]], NOW)
    verify_chain(pki["leaf"], [pki["int2"]], [pki["int1"]], NOW)


def test_missing_intermediate(pki: dict[str, Any]) -> None:
    with pytest.raises(ChainError, match="no issuer 'CN=Int 2'"):
        verify_chain(pki["leaf"], [pki["int1"]], [pki["root"]], NOW)


def test_wrong_anchor(pki: dict[str, Any]) -> None:
    other_key = ec.generate_private_key(ec.SECP384R1())
    other_root = make_cert("Other Root", other_key)
    with pytest.raises(ChainError, match="not trusted"):
        verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [other_root], NOW)
    # same subject name as the real root but a different key
    impostor = make_cert("Test Root", other_key)
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [impostor], NOW)
    with pytest.raises(ChainError, match="no trusted certificates"):
        verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [], NOW)


def test_forged_intermediate(pki: dict[str, Any]) -> None:
    # an attacker's "Int 1" (same name, own key) signing an "Int 2" replacement
    fake_key = ec.generate_private_key(ec.SECP384R1())
    fake_int1 = make_cert("Int 1", fake_key, (pki["root"], fake_key))
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain(fake_int1, [], [pki["root"]], NOW)
    # a key type that cannot have signed it is reported as such
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    odd = make_cert("Int 1", rsa_key, (pki["root"], rsa_key))
    with pytest.raises(ChainError, match="cannot check"):
        verify_chain(odd, [], [pki["root"]], NOW)


def test_expired_certificates(pki: dict[str, Any]) -> None:
    later = NOW + timedelta(days=400)
    with pytest.raises(ChainError, match="'CN=Leaf' expired at 2027-01-01T00:00:00Z"):
        verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [pki["root"]], later)
    old_int = make_cert("Int 2", pki["int2_key"], (pki["int1"], pki["int1_key"]), days=(-10, -1))
    with pytest.raises(ChainError, match="'CN=Int 2' expired"):
        verify_chain(pki["leaf"], [old_int, pki["int1"]], [pki["root"]], NOW)
    with pytest.raises(ChainError, match="not valid before"):
        verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [pki["root"]], NOW - timedelta(2))
    # naive datetimes are taken as UTC
    verify_chain(pki["leaf"], [pki["int2"], pki["int1"]], [pki["root"]], NOW.replace(tzinfo=None))


def test_issuer_must_be_ca(pki: dict[str, Any]) -> None:
    not_ca_key = ec.generate_private_key(ec.SECP256R1())
    not_ca = make_cert("NotCA", not_ca_key, (pki["root"], pki["root_key"]), ca=False)
    leaf = make_cert("Leaf2", ec.generate_private_key(ec.SECP256R1()), (not_ca, not_ca_key))
    with pytest.raises(ChainError, match="not a CA"):
        verify_chain(leaf, [not_ca], [pki["root"]], NOW)
    # without basicConstraints at all the issuer is accepted ("where present")
    bare = make_cert("Bare", not_ca_key, (pki["root"], pki["root_key"]), ca=None)
    leaf3 = make_cert("Leaf3", ec.generate_private_key(ec.SECP256R1()), (bare, not_ca_key))
    verify_chain(leaf3, [bare], [pki["root"]], NOW)


def test_key_usage_and_path_length(pki: dict[str, Any]) -> None:
    k = ec.generate_private_key(ec.SECP256R1())
    no_sign = make_cert("NoSign", k, (pki["root"], pki["root_key"]), key_cert_sign=False)
    leaf = make_cert("L", ec.generate_private_key(ec.SECP256R1()), (no_sign, k), ca=False)
    with pytest.raises(ChainError, match="key usage"):
        verify_chain(leaf, [no_sign], [pki["root"]], NOW)
    # root allows 0 intermediate CAs below it
    rk = ec.generate_private_key(ec.SECP256R1())
    root0 = make_cert("Root0", rk, path_length=0)
    mid = make_cert("Mid", k, (root0, rk))
    leaf2 = make_cert("L2", ec.generate_private_key(ec.SECP256R1()), (mid, k), ca=False)
    verify_chain(mid, [], [root0], NOW)
    with pytest.raises(ChainError, match="allows 0 intermediate"):
        verify_chain(leaf2, [mid], [root0], NOW)


def test_load_pem_stack_and_x5c(pki: dict[str, Any]) -> None:
    pem = b"".join(
        pki[n].public_bytes(serialization.Encoding.PEM) for n in ("leaf", "int2", "int1")
    )
    certs = load_pem_certificates(pem)
    assert certs == [pki["leaf"], pki["int2"], pki["int1"]]
    with pytest.raises(ChainError, match="cannot parse"):
        load_pem_certificates(b"not a pem")
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]
    assert certificates_from_x5c(x5c) == certs
    for bad in ([], "abc", [1], ["!!!!"], [base64.b64encode(b"junk").decode()]):
        with pytest.raises(ChainError):
            certificates_from_x5c(bad)


def test_missing_deeper_intermediate_named(pki: dict[str, Any]) -> None:
    with pytest.raises(ChainError, match="no issuer 'CN=Int 1' of 'CN=Int 2'"):
        verify_chain(pki["leaf"], [pki["int2"]], [pki["root"]], NOW)


def test_search_is_bounded() -> None:
    # many mutually-verifying same-named self-issued CA certificates (attacker-made x5c)
    key = ec.generate_private_key(ec.SECP256R1())
    clones = [make_cert("Loop", key) for _ in range(12)]
    leaf = make_cert("Leaf", ec.generate_private_key(ec.SECP256R1()), (clones[0], key), ca=False)
    anchor = make_cert("Anchor", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ChainError, match="too many candidate issuer"):
        verify_chain(leaf, clones, [anchor], NOW)
