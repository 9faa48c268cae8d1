"""Certificate, CRL and signature helpers shared by the simulated TDX and SNP PKIs."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Sequence
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID

IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# AMD signs ARK, ASK and VEK certificates with RSASSA-PSS, SHA-384, MGF1-SHA-384, 48-byte salt;
# verifiers that pin those parameters must see exactly them.
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def intel_name(common_name: str) -> x509.Name:
    # Same attribute order as Intel's certificates; the organisation marks the PKI as a test one.
    return name(
        (NameOID.COMMON_NAME, common_name),
        (NameOID.ORGANIZATION_NAME, "Trustee test PKI (not Intel)"),
        (NameOID.LOCALITY_NAME, "Santa Clara"),
        (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        (NameOID.COUNTRY_NAME, "US"),
    )


def amd_name(common_name: str) -> x509.Name:
    # Same attribute order as AMD's certificates (OU first, CN last).
    return name(
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering (Trustee test PKI, not AMD)"),
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.LOCALITY_NAME, "Santa Clara"),
        (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        (NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        (NameOID.COMMON_NAME, common_name),
    )


def random_serial() -> int:
    # 20 bytes like Intel's serials, top bit clear so the DER INTEGER stays positive.
    return secrets.randbits(159) | 1


def key_usage(
    *, sign: bool = False, cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=sign,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def crl_distribution_point(url: str) -> x509.CRLDistributionPoints:
    """One distribution point naming one URL, as the vendor certificates carry it."""
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


class Signer(NamedTuple):
    """Who signs a certificate: the issuer's name and private key."""

    name: x509.Name
    key: IssuerKey


def issue(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    signer: Signer,
    validity: tuple[datetime.datetime, datetime.datetime],
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
    *,
    serial: int | None = None,
) -> x509.Certificate:
    not_before, not_after = validity
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if isinstance(signer.key, rsa.RSAPrivateKey):
        return builder.sign(signer.key, hashes.SHA384(), rsa_padding=AMD_PSS)
    return builder.sign(signer.key, hashes.SHA256())


def crl(
    *,
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    this_update: datetime.datetime,
    next_update: datetime.datetime,
    revoked_serials: Sequence[int] = (),
    number: int = 1,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(issuer_key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def ecdsa_raw(key: ec.EllipticCurvePrivateKey, data: bytes, size: int) -> tuple[int, int]:
    """Sign with the curve's matching hash and return (r, s); `size` is the coordinate length."""
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if size == 32 else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(algorithm)))
    return r, s


def p256_sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 as Intel encodes it: r‖s, 32 bytes each, big-endian."""
    r, s = ecdsa_raw(key, data, 32)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def p256_verify_raw(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """Raises `InvalidSignature` unless `signature` (r‖s, big-endian) signs `data`."""
    if len(signature) != 64:
        raise ValueError(f"P-256 raw signature must be 64 bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))


def raw_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    """x‖y without the SEC1 0x04 prefix, as quotes carry the attestation key."""
    point = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]


def utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no timezone; pass an aware UTC datetime")
    return moment.astimezone(datetime.UTC).replace(microsecond=0)


def now_utc() -> datetime.datetime:
    return utc(datetime.datetime.now(datetime.UTC))


def intel_time(moment: datetime.datetime) -> str:
    """The timestamp form of Intel's TCB info and QE identity (`2025-06-19T10:16:03Z`)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
