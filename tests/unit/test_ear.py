"""EAR token building blocks: AR4SI tiers, trust vectors, extensions, ES256 issuing."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustee.attestation import ear
from trustee.config.model import SignerConfig, TokenBrokerConfig
from trustee.crypto.b64 import b64url_decode_nopad
from trustee.crypto.jwk import public_key_from_jwk
from trustee.crypto.jws import JwsError, split_compact, verify_signature

# --- tiers and status ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "none"),
        (0, "none"),
        (1, "none"),
        (2, "affirming"),
        (3, "affirming"),
        (31, "affirming"),
        (-2, "affirming"),
        (-5, "affirming"),
        (-32, "affirming"),
        (32, "warning"),
        (33, "warning"),
        (36, "warning"),
        (95, "warning"),
        (-33, "warning"),
        (-96, "warning"),
        (96, "contraindicated"),
        (97, "contraindicated"),
        (99, "contraindicated"),
        (127, "contraindicated"),
        (-97, "contraindicated"),
        (-128, "contraindicated"),
    ],
)
def test_tier_boundaries(value: int, expected: str) -> None:
    assert ear.tier(value) == expected


def test_status_is_the_worst_tier() -> None:
    assert ear.status_of(dict.fromkeys(ear.TRUST_CLAIMS, 0)) == "none"
    assert ear.status_of({"hardware": -1, "executables": 1}) == "none"
    assert ear.status_of({"hardware": 2, "executables": 0}) == "affirming"
    assert ear.status_of({"hardware": 2, "executables": 33, "configuration": 3}) == "warning"
    assert (
        ear.status_of({"hardware": 97, "executables": 3, "configuration": 36}) == "contraindicated"
    )
    assert ear.status_of({"configuration": 36, "sourced-data": -100}) == "contraindicated"
    # order of entries does not matter
    assert ear.status_of({"executables": 99, "hardware": 2}) == "contraindicated"


# --- trust vectors -----------------------------------------------------------------------------


def test_trust_vector_fixed_order_and_only_set_entries() -> None:
    vector = ear.trust_vector({"sourced-data": 0, "hardware": 2, "executables": 3})
    assert list(vector.items()) == [("executables", 3), ("hardware", 2), ("sourced-data", 0)]
    full = ear.trust_vector({name: 0 for name in reversed(ear.TRUST_CLAIMS)})
    assert list(full) == [
        "instance-identity",
        "configuration",
        "executables",
        "file-system",
        "hardware",
        "runtime-opaque",
        "storage-opaque",
        "sourced-data",
    ]


def test_absent_trust_claims_set_all_eight_to_zero() -> None:
    vector = ear.trust_vector(None)
    assert vector == dict.fromkeys(ear.TRUST_CLAIMS, 0)
    assert list(vector) == list(ear.TRUST_CLAIMS)
    assert ear.status_of(vector) == "none"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (127, 127),
        (128, -128),
        (130, -126),
        (255, -1),
        (256, 0),
        (257, 1),
        (-129, 127),
        (-128, -128),
    ],
)
def test_trust_claim_values_wrap_like_i8(value: int, stored: int) -> None:
    assert ear.trust_vector({"hardware": value}) == {"hardware": stored}


def test_wrapped_value_changes_tier() -> None:
    # 258 wraps to 2 (affirming), 353 wraps to 97 (contraindicated)
    assert ear.status_of(ear.trust_vector({"hardware": 258})) == "affirming"
    assert ear.status_of(ear.trust_vector({"hardware": 353})) == "contraindicated"


@pytest.mark.parametrize("claims", [[], ["hardware", 2], "<undefined>", 2, True])
def test_trust_claims_must_be_an_object(claims: Any) -> None:
    with pytest.raises(ear.EarError, match=r"^Trust claims is not an object$"):
        ear.trust_vector(claims)


def test_unknown_trust_claim_name_is_an_error() -> None:
    with pytest.raises(ear.EarError, match="hardwar"):
        ear.trust_vector({"hardware": 2, "hardwar": 2})
    with pytest.raises(ear.EarError):
        ear.trust_vector({"file_system": 2})  # the Rego identifier, not the claim name


@pytest.mark.parametrize("value", ["2", 2.0, 2.5, True, False, None, [2], {"v": 2}])
def test_trust_claim_value_must_be_an_integer(value: Any) -> None:
    with pytest.raises(ear.EarError, match="Trust claim value not number"):
        ear.trust_vector({"hardware": value})


def test_empty_trust_claims_is_an_error() -> None:
    with pytest.raises(ear.EarError, match=r"^At least one policy claim must be set\.$"):
        ear.trust_vector({})


# --- extensions --------------------------------------------------------------------------------


def test_extensions_absent_is_empty() -> None:
    assert ear.validate_extensions(None) == []
    assert ear.validate_extensions([]) == []


def test_extensions_sorted_by_name_and_null_values_omitted() -> None:
    result = ear.validate_extensions(
        [
            {"name": "z.ext", "key": -20, "value": 1},
            {"name": "ear.trustee.identifiers", "key": -18, "value": {"validated": {}}},
            {"name": "m.ext", "key": -19, "value": None},
            {"name": "a.ext", "key": 100, "value": [1, "x"]},
        ]
    )
    assert result == [
        ("a.ext", [1, "x"]),
        ("ear.trustee.identifiers", {"validated": {}}),
        ("z.ext", 1),
    ]


def test_null_valued_extension_still_takes_its_name_and_key() -> None:
    with pytest.raises(ear.EarError):
        ear.validate_extensions(
            [{"name": "a", "key": 1, "value": None}, {"name": "b", "key": 1, "value": 2}]
        )


def test_extensions_duplicate_name_or_key() -> None:
    with pytest.raises(ear.EarError, match="duplicate"):
        ear.validate_extensions(
            [{"name": "a", "key": 1, "value": 1}, {"name": "a", "key": 2, "value": 2}]
        )
    with pytest.raises(ear.EarError, match="duplicate"):
        ear.validate_extensions(
            [{"name": "a", "key": 1, "value": 1}, {"name": "b", "key": 1, "value": 2}]
        )


@pytest.mark.parametrize(
    "ext",
    [
        {"name": "a", "key": "1", "value": 1},
        {"name": "a", "key": 1.0, "value": 1},
        {"name": "a", "key": True, "value": 1},
        {"name": "a", "key": 2**31, "value": 1},
        {"name": "a", "key": -(2**31) - 1, "value": 1},
        {"name": "a", "value": 1},
        {"name": 5, "key": 1, "value": 1},
        {"key": 1, "value": 1},
        "a",
    ],
)
def test_extension_entry_validation(ext: Any) -> None:
    with pytest.raises(ear.EarError):
        ear.validate_extensions([ext])


def test_extension_int32_bounds_accepted() -> None:
    result = ear.validate_extensions(
        [{"name": "lo", "key": -(2**31), "value": 1}, {"name": "hi", "key": 2**31 - 1, "value": 2}]
    )
    assert result == [("hi", 2), ("lo", 1)]


@pytest.mark.parametrize("extensions", [{"name": "a"}, "x", 1, "<undefined>"])
def test_extensions_must_be_an_array(extensions: Any) -> None:
    with pytest.raises(ear.EarError):
        ear.validate_extensions(extensions)


def test_appraisal_layout() -> None:
    vector = ear.trust_vector({"executables": 3, "hardware": 2, "configuration": 2})
    annotated = {"report_data": "x", "sample": {"svn": "1"}}
    result = ear.appraisal(vector, "default", annotated, [("ear.trustee.identifiers", {"v": 1})])
    assert list(result) == [
        "ear.status",
        "ear.trustworthiness-vector",
        "ear.appraisal-policy-id",
        "ear.veraison.annotated-evidence",
        "ear.trustee.identifiers",
    ]
    assert result["ear.status"] == "affirming"
    assert result["ear.appraisal-policy-id"] == "default"
    assert result["ear.veraison.annotated-evidence"] == annotated
    # empty annotated evidence is omitted
    assert "ear.veraison.annotated-evidence" not in ear.appraisal(vector, "p", {}, [])


# --- signing -----------------------------------------------------------------------------------


def _p256_key_with(coordinate: str) -> ec.EllipticCurvePrivateKey:
    """A deterministic P-256 key whose public `x` (or `y`) has a leading zero byte."""
    for scalar in range(1, 20000):
        key = ec.derive_private_key(scalar, ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if getattr(numbers, coordinate) < 1 << 248:
            return key
    raise AssertionError("no such key found")  # pragma: no cover


def _broker(key: ec.EllipticCurvePrivateKey | None = None, **config: Any) -> ear.EarBroker:
    cfg = TokenBrokerConfig(**config)
    signer = ear.Signer(key) if key is not None else ear.load_signer(cfg)
    return ear.EarBroker(cfg, signer)


SUBMODS: dict[str, dict[str, Any]] = {
    "gpu0": {"ear.status": "contraindicated", "ear.appraisal-policy-id": "default"},
    "cpu0": {"ear.status": "affirming", "ear.appraisal-policy-id": "default"},
}


def test_issue_header_exact_layout() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = _broker(key).issue(SUBMODS)
    header_b64 = token.split(".")[0]
    header = split_compact(token).header
    numbers = key.public_key().public_numbers()
    assert list(header) == ["typ", "alg", "jwk"]
    assert header["typ"] == "JWT"
    assert header["alg"] == "ES256"
    assert list(header["jwk"]) == ["alg", "kty", "crv", "x", "y"]
    assert header["jwk"]["alg"] == "ES256"
    assert header["jwk"]["kty"] == "EC"
    assert header["jwk"]["crv"] == "P-256"
    assert int.from_bytes(b64url_decode_nopad(header["jwk"]["x"]), "big") == numbers.x
    assert int.from_bytes(b64url_decode_nopad(header["jwk"]["y"]), "big") == numbers.y
    assert "kid" not in header["jwk"]
    # compact serialisation, no whitespace
    assert b" " not in b64url_decode_nopad(header_b64)


@pytest.mark.parametrize("coordinate", ["x", "y"])
def test_jwk_coordinates_left_padded_to_32_bytes(coordinate: str) -> None:
    key = _p256_key_with(coordinate)
    jwk = split_compact(_broker(key).issue(SUBMODS)).header["jwk"]
    raw = b64url_decode_nopad(jwk[coordinate])
    assert len(raw) == 32
    assert raw[0] == 0
    assert len(b64url_decode_nopad(jwk["y" if coordinate == "x" else "x"])) == 32
    assert jwk[coordinate].startswith("A")  # 0x00 leading byte -> 'A' in base64url


def test_issue_claims_order_and_values() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = _broker(key).issue(SUBMODS, now=1760426134.7)
    parsed = split_compact(token)
    claims = parsed.claims()
    assert list(claims) == ["eat_profile", "iat", "ear.verifier-id", "submods", "exp", "iss"]
    assert claims["eat_profile"] == "tag:github.com,2024:confidential-containers/Trustee"
    assert claims["iat"] == 1760426134
    assert claims["exp"] == 1760426134 + 300
    assert claims["iss"] == "CoCo-Attestation-Service"
    assert claims["ear.verifier-id"] == {
        "developer": "https://confidentialcontainers.org",
        "build": "attestation-service 0.1.0",
    }
    assert list(claims["ear.verifier-id"]) == ["developer", "build"]
    assert list(claims["submods"]) == ["cpu0", "gpu0"]
    assert claims["submods"] == SUBMODS
    for absent in ("nbf", "jti", "aud", "eat_nonce", "ear.raw-evidence"):
        assert absent not in claims
    # compact JSON payload
    assert b": " not in parsed.payload and b", " not in parsed.payload


def test_issue_uses_configured_names_and_duration() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    broker = _broker(
        key,
        duration_min=7,
        issuer_name="my-as",
        developer_name="dev",
        build_name="build 9",
        profile_name="tag:example",
    )
    claims = split_compact(broker.issue({}, now=1000)).claims()
    assert claims["iat"] == 1000
    assert claims["exp"] == 1000 + 7 * 60
    assert claims["iss"] == "my-as"
    assert claims["eat_profile"] == "tag:example"
    assert claims["ear.verifier-id"] == {"developer": "dev", "build": "build 9"}


def test_issue_without_now_uses_current_time() -> None:
    import time

    before = int(time.time())
    claims = split_compact(_broker().issue(SUBMODS)).claims()
    after = int(time.time())
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 300


def test_signature_verifies_with_the_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = _broker(key).issue(SUBMODS)
    parsed = split_compact(token)
    assert len(parsed.signature) == 64  # raw r||s, not DER
    verify_signature("ES256", key.public_key(), parsed.signing_input, parsed.signature)
    # the header jwk is the same key
    header_key = public_key_from_jwk(parsed.header["jwk"])
    verify_signature("ES256", header_key, parsed.signing_input, parsed.signature)
    # a different key or tampered payload does not verify
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(JwsError):
        verify_signature("ES256", other, parsed.signing_input, parsed.signature)
    with pytest.raises(JwsError):
        verify_signature("ES256", key.public_key(), parsed.signing_input + b"x", parsed.signature)


def test_ephemeral_signer_is_p256_and_fresh() -> None:
    first = ear.load_signer(TokenBrokerConfig())
    second = ear.load_signer(TokenBrokerConfig())
    assert isinstance(first.key.curve, ec.SECP256R1)
    assert first.x5c is None and first.x5u is None
    assert first.header_jwk() != second.header_jwk()


def test_jwks_is_the_header_jwk() -> None:
    broker = _broker()
    jwks = broker.jwks()
    assert list(jwks) == ["keys"]
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert jwk == split_compact(broker.issue(SUBMODS)).header["jwk"]
    assert jwk["alg"] == "ES256" and jwk["crv"] == "P-256" and jwk["kty"] == "EC"
    assert len(b64url_decode_nopad(jwk["x"])) == 32
    assert len(b64url_decode_nopad(jwk["y"])) == 32


# --- configured signer -------------------------------------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, fmt: Any) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    return path


@pytest.mark.parametrize(
    "fmt",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
)
def test_configured_signer_with_chain(tmp_path: Path, fmt: Any) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    leaf = _cert("as-signer", leaf_key, "test-ca", ca_key, ca=False)
    key_path = _write_key(tmp_path / "signer.pem", leaf_key, fmt)
    chain_path = tmp_path / "chain.pem"
    chain_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    cfg = TokenBrokerConfig(
        signer=SignerConfig(
            key_path=str(key_path),
            cert_path=str(chain_path),
            cert_url="https://as.example/cert.pem",
        )
    )
    broker = ear.EarBroker(cfg, ear.load_signer(cfg))
    token = broker.issue(SUBMODS)
    parsed = split_compact(token)
    jwk = parsed.header["jwk"]
    assert list(jwk) == ["alg", "x5u", "x5c", "kty", "crv", "x", "y"]
    assert jwk["x5u"] == "https://as.example/cert.pem"
    # standard base64 (with padding) of DER, leaf first, file order
    assert jwk["x5c"] == [
        base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode(),
        base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode(),
    ]
    verify_signature("ES256", leaf_key.public_key(), parsed.signing_input, parsed.signature)
    assert broker.jwks() == {"keys": [jwk]}


def test_configured_signer_without_chain(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = _write_key(tmp_path / "k.pem", key, serialization.PrivateFormat.PKCS8)
    cfg = TokenBrokerConfig(signer=SignerConfig(key_path=str(key_path)))
    signer = ear.load_signer(cfg)
    jwk = signer.header_jwk()
    assert list(jwk) == ["alg", "kty", "crv", "x", "y"]
    public = public_key_from_jwk(jwk)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert signer.key.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_non_p256_signer_key_rejected(tmp_path: Path, curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    key_path = _write_key(tmp_path / "k.pem", key, serialization.PrivateFormat.PKCS8)
    cfg = TokenBrokerConfig(signer=SignerConfig(key_path=str(key_path)))
    with pytest.raises(
        ear.EarError, match=r"^Only P-256 attestation token signing keys are supported$"
    ):
        ear.load_signer(cfg)


def test_rsa_signer_key_rejected(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cfg = TokenBrokerConfig(signer=SignerConfig(key_path=str(path)))
    with pytest.raises(ear.EarError, match="Only P-256"):
        ear.load_signer(cfg)


def test_missing_or_bad_signer_files(tmp_path: Path) -> None:
    cfg = TokenBrokerConfig(signer=SignerConfig(key_path=str(tmp_path / "absent.pem")))
    with pytest.raises(ear.EarError, match=r"absent\.pem"):
        ear.load_signer(cfg)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ear.EarError):
        ear.load_signer(TokenBrokerConfig(signer=SignerConfig(key_path=str(garbage))))
    key_path = _write_key(
        tmp_path / "k.pem",
        ec.generate_private_key(ec.SECP256R1()),
        serialization.PrivateFormat.PKCS8,
    )
    empty_chain = tmp_path / "empty.pem"
    empty_chain.write_text("")
    with pytest.raises(ear.EarError, match="cert_path"):
        ear.load_signer(
            TokenBrokerConfig(
                signer=SignerConfig(key_path=str(key_path), cert_path=str(empty_chain))
            )
        )
