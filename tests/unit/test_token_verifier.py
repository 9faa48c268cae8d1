"""Attestation-token verification and TEE public key extraction."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from trustee.crypto.jwk import public_jwk
from trustee.crypto.jws import sign_compact
from trustee.token.verifier import (
    AttestationTokenVerifier,
    TokenVerifierConfig,
    TokenVerifierConfigError,
    TokenVerifyError,
    extract_tee_pubkey,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW_DT = datetime.fromtimestamp(NOW, UTC)


def ear_claims(exp_delta: int = 300, **extra: Any) -> dict[str, Any]:
    return {
        "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
        "iat": NOW,
        "submods": {"cpu0": {"ear.status": "affirming"}},
        "exp": NOW + exp_delta,
        "iss": "CoCo-Attestation-Service",
        **extra,
    }


def header_jwk_token(
    key: Any, claims: dict[str, Any], *, jwk: dict[str, Any] | None = None, alg: str = "ES256"
) -> str:
    jwk = jwk if jwk is not None else public_jwk(key, alg=alg)
    header = {"typ": "JWT", "alg": alg, "jwk": jwk}
    return sign_compact(header, json.dumps(claims).encode(), key)


def kid_token(key: Any, kid: str, claims: dict[str, Any], alg: str = "ES256") -> str:
    return sign_compact({"alg": alg, "typ": "JWT", "kid": kid}, json.dumps(claims).encode(), key)


def make_verifier(
    fetch: Any = None, monotonic: Callable[[], float] = lambda: 0.0, **config: Any
) -> AttestationTokenVerifier:
    return AttestationTokenVerifier(
        TokenVerifierConfig(**config), fetch, clock=lambda: NOW, monotonic=monotonic
    )


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# ---------------------------------------------------------------- configuration


def test_no_trust_material_is_a_startup_error() -> None:
    with pytest.raises(TokenVerifierConfigError, match="no trusted verification materials"):
        make_verifier()


def test_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(TokenVerifierConfigError, match="needs an HTTP fetcher"):
        make_verifier(trusted_jwk_sets=["https://idp.example/jwks"])
    with pytest.raises(TokenVerifierConfigError, match="only https://"):
        make_verifier(trusted_jwk_sets=["http://idp.example/jwks"], fetch=object())
    with pytest.raises(TokenVerifierConfigError, match="cannot read"):
        make_verifier(trusted_jwk_sets=[str(tmp_path / "missing.json")])
    with pytest.raises(TokenVerifierConfigError, match="cannot read trusted certificate"):
        make_verifier(trusted_certs_paths=[str(tmp_path / "missing.pem")])
    (tmp_path / "junk.pem").write_bytes(b"junk")
    with pytest.raises(TokenVerifierConfigError, match=r"junk.pem"):
        make_verifier(trusted_certs_paths=[str(tmp_path / "junk.pem")])
    (tmp_path / "notjwks.json").write_text('{"a": 1}')
    with pytest.raises(TokenVerifierConfigError, match="not a JWK set"):
        make_verifier(trusted_jwk_sets=[str(tmp_path / "notjwks.json")])
    with pytest.raises(TokenVerifierConfigError, match="JSON pointer"):
        make_verifier(insecure_header_jwk=True, extra_teekey_paths=["no/slash"])


# ---------------------------------------------------------------- insecure header jwk


async def test_insecure_header_jwk_ok(signer: ec.EllipticCurvePrivateKey) -> None:
    claims = ear_claims()
    verifier = make_verifier(insecure_header_jwk=True)
    assert await verifier.verify(header_jwk_token(signer, claims)) == claims


async def test_expiry(signer: ec.EllipticCurvePrivateKey) -> None:
    verifier = make_verifier(insecure_header_jwk=True)
    with pytest.raises(TokenVerifyError, match=r"token expired at 2025-12-31T23:58:59Z"):
        await verifier.verify(header_jwk_token(signer, ear_claims(exp_delta=-61)))
    await verifier.verify(header_jwk_token(signer, ear_claims(exp_delta=-59)))
    no_exp = ear_claims()
    del no_exp["exp"]
    with pytest.raises(TokenVerifyError, match="no 'exp'"):
        await verifier.verify(header_jwk_token(signer, no_exp))
    # nbf is not checked
    await verifier.verify(header_jwk_token(signer, ear_claims(nbf=NOW + 3600)))


async def test_forged_tokens_rejected(signer: ec.EllipticCurvePrivateKey) -> None:
    verifier = make_verifier(insecure_header_jwk=True)
    other = ec.generate_private_key(ec.SECP256R1())
    # header claims one key, signature made with another
    forged = header_jwk_token(other, ear_claims(), jwk=public_jwk(signer, alg="ES256"))
    with pytest.raises(TokenVerifyError, match="signature"):
        await verifier.verify(forged)
    # payload swapped after signing
    h, _, s = header_jwk_token(signer, ear_claims()).split(".")
    evil = base64.urlsafe_b64encode(json.dumps(ear_claims(admin=True)).encode()).rstrip(b"=")
    with pytest.raises(TokenVerifyError, match="signature"):
        await verifier.verify(f"{h}.{evil.decode()}.{s}")
    with pytest.raises(TokenVerifyError, match="malformed token"):
        await verifier.verify("not.a-token")


async def test_alg_selection(signer: ec.EllipticCurvePrivateKey) -> None:
    verifier = make_verifier(insecure_header_jwk=True)
    # JWK without alg: the header alg is used
    await verifier.verify(header_jwk_token(signer, ear_claims(), jwk=public_jwk(signer)))
    # JWK alg and header alg must agree
    mismatch = header_jwk_token(signer, ear_claims(), jwk=public_jwk(signer, alg="ES384"))
    with pytest.raises(TokenVerifyError, match="does not match the key's alg 'ES384'"):
        await verifier.verify(mismatch)
    unsigned = sign_compact({"alg": "ES256"}, json.dumps(ear_claims()).encode(), signer)
    with pytest.raises(TokenVerifyError, match="neither 'jwk' nor"):
        await verifier.verify(unsigned)


# ---------------------------------------------------------------- x5c endorsement


def cert(
    cn: str, key: Any, issuer: tuple[x509.Certificate, Any] | None, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW_DT - timedelta(days=1))
        .not_valid_after(NOW_DT + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def x5c(*certs: x509.Certificate) -> list[str]:
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certs]


@pytest.fixture(scope="module")
def pki(signer: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    root_key = ec.generate_private_key(ec.SECP384R1())
    int_key = ec.generate_private_key(ec.SECP256R1())
    root = cert("AS Root", root_key, None, True)
    inter = cert("AS Intermediate", int_key, (root, root_key), True)
    leaf = cert("AS Signer", signer, (inter, int_key), False)
    return {"root": root, "inter": inter, "leaf": leaf}


@pytest.fixture
def trusted_root(tmp_path: Path, pki: dict[str, Any]) -> str:
    path = tmp_path / "roots.pem"
    other = cert("Other", ec.generate_private_key(ec.SECP256R1()), None, True)
    path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (other, pki["root"]))
    )
    return str(path)


def jwk_with_x5c(key: Any, chain: list[str]) -> dict[str, Any]:
    jwk = public_jwk(key)
    return {"alg": "ES256", "x5c": chain, **jwk}


async def test_x5c_chain_trusted(
    signer: ec.EllipticCurvePrivateKey, pki: dict[str, Any], trusted_root: str
) -> None:
    verifier = make_verifier(trusted_certs_paths=[trusted_root])
    jwk = jwk_with_x5c(signer, x5c(pki["leaf"], pki["inter"]))
    claims = ear_claims()
    assert await verifier.verify(header_jwk_token(signer, claims, jwk=jwk)) == claims
    # permuted chain order is fine as well
    jwk = jwk_with_x5c(signer, x5c(pki["leaf"], pki["root"], pki["inter"]))
    assert await verifier.verify(header_jwk_token(signer, claims, jwk=jwk)) == claims


async def test_x5c_failures(
    signer: ec.EllipticCurvePrivateKey, pki: dict[str, Any], trusted_root: str, tmp_path: Path
) -> None:
    verifier = make_verifier(trusted_certs_paths=[trusted_root])
    no_x5c = header_jwk_token(signer, ear_claims())
    with pytest.raises(TokenVerifyError, match="no x5c certificate chain"):
        await verifier.verify(no_x5c)
    other = ec.generate_private_key(ec.SECP256R1())
    mismatch = jwk_with_x5c(other, x5c(pki["leaf"], pki["inter"]))
    with pytest.raises(TokenVerifyError, match="x5c leaf key does not match header jwk"):
        await verifier.verify(header_jwk_token(other, ear_claims(), jwk=mismatch))
    missing_int = jwk_with_x5c(signer, x5c(pki["leaf"]))
    with pytest.raises(TokenVerifyError, match="x5c chain is not trusted"):
        await verifier.verify(header_jwk_token(signer, ear_claims(), jwk=missing_int))
    garbage = jwk_with_x5c(signer, ["bm90IGEgY2VydA=="])
    with pytest.raises(TokenVerifyError, match="x5c is invalid"):
        await verifier.verify(header_jwk_token(signer, ear_claims(), jwk=garbage))
    # wrong anchor
    (tmp_path / "other.pem").write_bytes(
        cert("Other", other, None, True).public_bytes(serialization.Encoding.PEM)
    )
    wrong = make_verifier(trusted_certs_paths=[str(tmp_path / "other.pem")])
    good = jwk_with_x5c(signer, x5c(pki["leaf"], pki["inter"]))
    with pytest.raises(TokenVerifyError, match="x5c chain is not trusted"):
        await wrong.verify(header_jwk_token(signer, ear_claims(), jwk=good))


async def test_header_jwk_needs_certs_when_not_insecure(
    signer: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": []}))
    verifier = make_verifier(trusted_jwk_sets=[str(jwks)])
    with pytest.raises(TokenVerifyError, match="no trusted_certs_paths"):
        await verifier.verify(header_jwk_token(signer, ear_claims()))


# ---------------------------------------------------------------- kid + JWK sets


def jwks_doc(*entries: tuple[str, Any, str | None]) -> dict[str, Any]:
    keys = []
    for kid, key, alg in entries:
        jwk = public_jwk(key, alg=alg)
        jwk["kid"] = kid
        keys.append(jwk)
    return {"keys": keys}


async def test_jwks_file_with_kid(signer: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "jwks.json"
    doc = jwks_doc(("ec-1", signer, "ES256"), ("rsa-1", rsa_key, "RS256"), ("noalg", signer, None))
    doc["keys"].append({"kid": "broken", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
    path.write_text(json.dumps(doc))
    for location in (str(path), path.as_uri()):
        verifier = make_verifier(trusted_jwk_sets=[location])
        claims = ear_claims()
        assert await verifier.verify(kid_token(signer, "ec-1", claims)) == claims
        assert await verifier.verify(kid_token(rsa_key, "rsa-1", claims, "RS256")) == claims
        assert await verifier.verify(kid_token(signer, "noalg", claims)) == claims
        with pytest.raises(TokenVerifyError, match="kid 'nope' not found in trusted JWK sets"):
            await verifier.verify(kid_token(signer, "nope", claims))
        with pytest.raises(TokenVerifyError, match=r"kid 'broken' .* is unusable"):
            await verifier.verify(kid_token(signer, "broken", claims))
        # a kid bound to an RSA key cannot verify an ES256 token
        with pytest.raises(TokenVerifyError, match="does not match"):
            await verifier.verify(kid_token(signer, "rsa-1", claims))
        with pytest.raises(TokenVerifyError, match="expired"):
            await verifier.verify(kid_token(signer, "ec-1", ear_claims(exp_delta=-100)))


class FakeFetch:
    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.calls: list[str] = []

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.routes:
            raise OSError(f"HTTP 404 for {url}")
        body = self.routes[url]
        return body if isinstance(body, bytes) else json.dumps(body).encode()


async def test_jwks_over_https(signer: ec.EllipticCurvePrivateKey) -> None:
    fetch = FakeFetch({"https://as.example/jwks.json": jwks_doc(("k1", signer, "ES256"))})
    verifier = make_verifier(fetch, trusted_jwk_sets=["https://as.example/jwks.json"])
    claims = ear_claims()
    assert await verifier.verify(kid_token(signer, "k1", claims)) == claims
    assert await verifier.verify(kid_token(signer, "k1", claims)) == claims
    assert fetch.calls == ["https://as.example/jwks.json"]  # cached


async def test_openid_discovery(signer: ec.EllipticCurvePrivateKey) -> None:
    fetch = FakeFetch(
        {
            "https://idp.example/.well-known/openid-configuration": {
                "issuer": "https://idp.example",
                "jwks_uri": "https://idp.example/protocol/certs",
            },
            "https://idp.example/protocol/certs": jwks_doc(("idp-key", signer, "ES256")),
        }
    )
    verifier = make_verifier(fetch, trusted_jwk_sets=["https://idp.example/"])
    await verifier.load_remote_jwk_sets()
    assert fetch.calls == [
        "https://idp.example/",
        "https://idp.example/.well-known/openid-configuration",
        "https://idp.example/protocol/certs",
    ]
    assert await verifier.verify(kid_token(signer, "idp-key", ear_claims()))
    # the discovery document URL itself also works
    fetch.calls.clear()
    direct = make_verifier(
        fetch, trusted_jwk_sets=["https://idp.example/.well-known/openid-configuration"]
    )
    assert await direct.verify(kid_token(signer, "idp-key", ear_claims()))
    assert fetch.calls == [
        "https://idp.example/.well-known/openid-configuration",
        "https://idp.example/protocol/certs",
    ]


async def test_remote_failure_reported() -> None:
    fetch = FakeFetch({"https://down.example/.well-known/openid-configuration": {"x": 1}})
    verifier = make_verifier(fetch, trusted_jwk_sets=["https://down.example"])
    with pytest.raises(TokenVerifierConfigError, match=r"HTTP 404 .* no https 'jwks_uri'"):
        await verifier.load_remote_jwk_sets()
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenVerifyError, match=r"not found .* could not be loaded"):
        await verifier.verify(kid_token(key, "k", ear_claims()))


async def test_unknown_kid_refetch_rate_limited(signer: ec.EllipticCurvePrivateKey) -> None:
    url = "https://as.example/jwks.json"
    new_key = ec.generate_private_key(ec.SECP256R1())
    fetch = FakeFetch({url: jwks_doc(("old", signer, "ES256"))})
    t = [1000.0]
    verifier = make_verifier(fetch, monotonic=lambda: t[0], trusted_jwk_sets=[url])
    assert await verifier.verify(kid_token(signer, "old", ear_claims()))
    assert len(fetch.calls) == 1
    fetch.routes[url] = jwks_doc(("old", signer, "ES256"), ("new", new_key, "ES256"))
    t[0] += 30  # too soon to refetch
    with pytest.raises(TokenVerifyError, match="kid 'new' not found"):
        await verifier.verify(kid_token(new_key, "new", ear_claims()))
    assert len(fetch.calls) == 1
    t[0] += 31  # 61 s after the last fetch: an unknown kid triggers one refetch
    assert await verifier.verify(kid_token(new_key, "new", ear_claims()))
    assert len(fetch.calls) == 2
    with pytest.raises(TokenVerifyError, match="not found"):
        await verifier.verify(kid_token(new_key, "gone", ear_claims()))
    assert len(fetch.calls) == 2


# ---------------------------------------------------------------- tee-pubkey extraction


def test_tee_pubkey_extraction_order() -> None:
    def k(tag: str) -> dict[str, Any]:
        return {"kty": "EC", "tag": tag}

    ear = {"runtime_data_claims": {"tee-pubkey": k("cpu0")}}
    legacy_ear = {"runtime_data_claims": {"tee-pubkey": k("cpu")}}
    claims: dict[str, Any] = {
        "tdx": {"attester_runtime_data": {"tee-pubkey": k("ita")}},
        "customized_claims": {"runtime_data": {"tee-pubkey": k("coco")}},
        "submods": {
            "cpu0": {"ear.veraison.annotated-evidence": ear},
            "cpu": {"ear.veraison.annotated-evidence": legacy_ear},
        },
        "tee-pubkey": k("top"),
        "my/claims": {"key": k("extra")},
    }

    def tag(c: dict[str, Any], extra: list[str] | None = None) -> str | None:
        found = extract_tee_pubkey(c, extra or [])
        return None if found is None else found["tag"]

    assert tag(claims, ["/missing", "/my~1claims/key"]) == "extra"
    assert tag(claims) == "ita"
    claims["tdx"] = {"attester_user_data": {"tee-pubkey": k("ita-vtpm")}}
    assert tag(claims) == "ita-vtpm"
    del claims["tdx"]
    assert tag(claims) == "coco"
    del claims["customized_claims"]
    assert tag(claims) == "cpu0"
    del claims["submods"]["cpu0"]
    assert tag(claims) == "cpu"
    del claims["submods"]
    assert tag(claims) == "top"
    del claims["tee-pubkey"]
    assert tag(claims) is None
    with pytest.raises(TokenVerifyError, match="not a TEE public key"):
        extract_tee_pubkey({"tee-pubkey": "string"})


async def test_verifier_extracts_from_ear_token(signer: ec.EllipticCurvePrivateKey) -> None:
    tee = {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "x", "y": "y"}
    claims = ear_claims()
    claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"] = {
        "runtime_data_claims": {"nonce": "n", "tee-pubkey": tee}
    }
    verifier = make_verifier(insecure_header_jwk=True, extra_teekey_paths=["/nowhere"])
    verified = await verifier.verify(header_jwk_token(signer, claims))
    assert verifier.extract_tee_pubkey(verified) == tee
