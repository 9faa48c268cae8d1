"""A small X.509 path builder/validator for JWS ``x5c`` endorsement and similar pinned-root uses.

This is not a Web PKI validator: no name constraints, policies, EKU or revocation. It builds a
path from the leaf through the given intermediates (any order) to a certificate in ``anchors``
and checks, on every link, the issuer name, the signature (ECDSA, RSA PKCS#1 v1.5, RSA-PSS,
Ed25519), the validity window at ``at`` (anchors included), and on every issuer the
basicConstraints ``cA`` flag / path length and the keyCertSign key usage when those extensions are
present. A leaf that is itself one of the anchors is trusted as is (a pinned self-signed key).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from trustee.crypto.b64 import b64std_decode

MAX_DEPTH = 8
MAX_SIGNATURE_CHECKS = 32


class ChainError(ValueError):
    """No valid path from the certificate to a trusted anchor."""


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, in file order."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ChainError(f"cannot parse PEM certificates: {exc}") from exc
    if not certs:  # pragma: no cover - cryptography raises instead
        raise ChainError("no PEM certificate found")
    return certs


def certificates_from_x5c(x5c: object) -> list[x509.Certificate]:
    """Decode a JOSE ``x5c`` member: a list of standard-base64 DER certificates, leaf first."""
    if not isinstance(x5c, list) or not x5c:
        raise ChainError("'x5c' must be a non-empty array of base64 DER certificates")
    certs = []
    for i, item in enumerate(x5c):
        if not isinstance(item, str):
            raise ChainError(f"x5c[{i}] is not a string")
        try:
            certs.append(x509.load_der_x509_certificate(b64std_decode(item)))
        except ValueError as exc:
            raise ChainError(f"x5c[{i}] is not a base64 DER certificate: {exc}") from exc
    return certs


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "<empty subject>"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise ChainError(
            f"certificate {_name(cert)!r} is not valid before {_iso(cert.not_valid_before_utc)}"
            f" (checked at {_iso(at)})"
        )
    if at > cert.not_valid_after_utc:
        raise ChainError(
            f"certificate {_name(cert)!r} expired at {_iso(cert.not_valid_after_utc)}"
            f" (checked at {_iso(at)})"
        )


def _check_issuer_role(issuer: x509.Certificate, cas_below: int) -> None:
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is not None:
        if not bc.ca:
            raise ChainError(f"certificate {_name(issuer)!r} issues others but is not a CA")
        if bc.path_length is not None and cas_below > bc.path_length:
            raise ChainError(
                f"CA {_name(issuer)!r} allows {bc.path_length} intermediate CA(s) below it, "
                f"the path has {cas_below}"
            )
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise ChainError(f"CA {_name(issuer)!r} key usage does not allow signing certificates")


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        raise ChainError(
            f"signature of {_name(cert)!r} does not verify with the key of {_name(issuer)!r}"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"cannot check {_name(cert)!r} against {_name(issuer)!r}: {exc}") from exc


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> None:
    """Raise :class:`ChainError` unless ``leaf`` chains to one of ``anchors`` at time ``at``."""
    if not anchors:
        raise ChainError("no trusted certificates configured to anchor the chain")
    at = _utc(at)
    _check_validity(leaf, at)
    if leaf in anchors:
        return
    builder = _PathBuilder(intermediates, anchors, at)
    if not builder.extend([leaf]):
        detail = "; ".join(dict.fromkeys(builder.errors))
        raise ChainError(f"certificate chain of {_name(leaf)!r} is not trusted: {detail}")


class _PathBuilder:
    """Depth-first search over candidate issuers, with a bound on the work an input can cause
    (an ``x5c`` is attacker-supplied: many same-named certificates must not explode the search)."""

    def __init__(
        self,
        intermediates: Sequence[x509.Certificate],
        anchors: Sequence[x509.Certificate],
        at: datetime,
    ) -> None:
        self.anchors = list(anchors)
        self.intermediates = [c for c in intermediates if c not in self.anchors]
        self.at = at
        self.errors: list[str] = []
        self.budget = MAX_SIGNATURE_CHECKS

    def extend(self, path: list[x509.Certificate]) -> bool:
        """True once an issuer of ``path[-1]`` leads to an anchor."""
        cert = path[-1]
        if len(path) > MAX_DEPTH:
            self.errors.append(f"path longer than {MAX_DEPTH} certificates")
            return False
        cas_below = len(path) - 1  # certificates between the leaf and the next issuer
        candidates = [(c, True) for c in self.anchors] + [
            (c, False) for c in self.intermediates if c not in path
        ]
        matched = False
        for issuer, is_anchor in candidates:
            if issuer.subject != cert.issuer:
                continue
            matched = True
            if self.budget <= 0:
                self.errors.append("too many candidate issuer certificates; giving up")
                return False
            self.budget -= 1
            try:
                _check_signed_by(cert, issuer)
                _check_issuer_role(issuer, cas_below)
                _check_validity(issuer, self.at)
            except ChainError as exc:
                self.errors.append(str(exc))
                continue
            if is_anchor or self.extend([*path, issuer]):
                return True
        if not matched:
            self.errors.append(
                f"no issuer {cert.issuer.rfc4514_string()!r} of {_name(cert)!r} among the "
                f"{len(self.intermediates)} intermediate(s) and {len(self.anchors)} trusted "
                "certificate(s)"
            )
        return False


def load_certificate_files(paths: Sequence[str]) -> list[bytes]:
    """DER of every certificate in the given PEM or DER files; ValueError names the file."""
    out: list[bytes] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: {exc.strerror or exc}") from exc
        if b"-----BEGIN" in data:
            try:
                with warnings.catch_warnings():
                    # AMD issues VCEKs with serial number 0, which cryptography warns about.
                    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                    certs = load_pem_certificates(data)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc
            if not certs:
                raise ValueError(f"{path}: no certificate in the PEM file")
            out.extend(c.public_bytes(Encoding.DER) for c in certs)
        else:
            out.append(data)
    return out
