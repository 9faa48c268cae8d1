"""A throw-away PKI for e2e tests: CA, HTTPS server cert, token signer chain, admin keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from trustee.crypto.jws import sign_compact

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    ca: bool = False,
    san_ip: str | None = None,
    days: int = 30,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
            critical=False,
        )
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)


def pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_public(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pem_cert(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Pki:
    root: Path
    ca_cert: Path
    https_key: Path
    https_cert: Path
    signer_key: Path
    signer_chain: Path
    admin_key: ed25519.Ed25519PrivateKey
    admin_public: Path
    other_admin_key: ed25519.Ed25519PrivateKey

    def admin_token(
        self,
        role: str = "admin",
        issuer: str = "issuer",
        audience: Any = ("kbs",),
        key: ed25519.Ed25519PrivateKey | None = None,
        lifetime: int = 600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": issuer, "role": role, "aud": list(audience)}
        claims.update({"iat": now, "exp": now + lifetime})
        claims.update(extra)
        claims = {k: v for k, v in claims.items() if v is not None}
        return sign_compact(
            {"alg": "EdDSA", "typ": "JWT"}, json.dumps(claims).encode(), key or self.admin_key
        )

    def write_admin_token(self, name: str, token: str) -> Path:
        path = self.root / name
        path.write_text(token)
        return path


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("trustee-test-ca", ca_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_cert("trustee-test-intermediate", inter_key, (ca, ca_key), ca=True)
    https_key = ec.generate_private_key(ec.SECP256R1())
    https = make_cert("127.0.0.1", https_key, (ca, ca_key), san_ip="127.0.0.1")
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = make_cert("token-signer", signer_key, (inter, inter_key))
    admin_key = ed25519.Ed25519PrivateKey.generate()
    pki = Pki(
        root=root,
        ca_cert=root / "ca.pem",
        https_key=root / "https.key",
        https_cert=root / "https.crt",
        signer_key=root / "token-signer.key",
        signer_chain=root / "token-signer-chain.pem",
        admin_key=admin_key,
        admin_public=root / "admin-public.pem",
        other_admin_key=ed25519.Ed25519PrivateKey.generate(),
    )
    pki.ca_cert.write_bytes(pem_cert(ca))
    pki.https_key.write_bytes(pem_key(https_key))
    pki.https_cert.write_bytes(pem_cert(https))
    pki.signer_key.write_bytes(pem_key(signer_key))
    pki.signer_chain.write_bytes(pem_cert(signer, inter))
    pki.admin_public.write_bytes(pem_public(admin_key))
    return pki


def rsa_tee_key_pem(path: Path) -> Path:
    """An RSA-2048 PKCS#1 PEM, the form kbs-client's --tee-key-file takes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path
