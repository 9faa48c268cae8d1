"""A TLS certificate or key that cannot be loaded is reported against the right config key."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustee.config.errors import ConfigError
from trustee.config.model import HttpServerConfig
from trustee.http.listen import build_ssl_context


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kbs")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_file = tmp_path / "https.crt", tmp_path / "https.key"
    cert.write_bytes(_cert_pem(key))
    key_file.write_bytes(_key_pem(key))
    return cert, key_file


def _load(cert: Path, key: Path) -> ConfigError:
    cfg = HttpServerConfig(certificate=str(cert), private_key=str(key))
    with pytest.raises(ConfigError) as info:
        build_ssl_context(cfg)
    return info.value


def test_good_pair_loads(files: tuple[Path, Path]) -> None:
    cert, key = files
    build_ssl_context(HttpServerConfig(certificate=str(cert), private_key=str(key)))


def test_key_of_another_certificate_names_the_key(files: tuple[Path, Path]) -> None:
    cert, key = files
    key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    err = _load(cert, key)
    assert err.key == "http_server.private_key"
    assert "does not match the certificate" in err.message


def test_garbage_key_names_the_key(files: tuple[Path, Path]) -> None:
    cert, key = files
    key.write_text("not a key\n")
    err = _load(cert, key)
    assert err.key == "http_server.private_key"
    assert str(key) in err.message


def test_garbage_certificate_names_the_certificate(files: tuple[Path, Path]) -> None:
    cert, key = files
    cert.write_text("not a certificate\n")
    err = _load(cert, key)
    assert err.key == "http_server.certificate"
    assert "no PEM certificate" in err.message


def test_missing_key_file_names_the_key(files: tuple[Path, Path]) -> None:
    cert, key = files
    key.unlink()
    err = _load(cert, key)
    assert err.key == "http_server.private_key"
    assert "cannot read" in err.message
