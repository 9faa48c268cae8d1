"""The vendors' signatures on a collateral bundle's content, and each member's validity window.

The native core checks TDX collateral only while appraising a quote, so a bundle is checked
here with ``cryptography``: every issuer chain ends in a pinned root (Intel SGX Root CA; AMD's
ARK per product) or a configured test root, TCB info and QE identity are ECDSA P-256
signatures over their exact signed JSON text, the CRLs are signed by their issuers, and each
VCEK / ASVK / ASK is signed by its product's ASK / ARK. Validity is reported, never refused:
an expired bundle still serves, and appraisals say it is expired.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from trustee import _core
from trustee.collateral.bundle import DCAP_KINDS, Bundle, BundleError, Member, iso
from trustee.collateral.errors import CollateralError
from trustee.collateral.tdx import TdxCollateral, load_crl


def _pinned(roles: Collection[str]) -> frozenset[str]:
    # The native core's built-in anchors, so the pins live in one place.
    return frozenset(
        hashlib.sha256(der).hexdigest()
        for _product, role, der in _core.vendor_anchors()
        if role in roles
    )


# SHA-256 of the DER of the Intel SGX Root CA.
INTEL_ROOTS = _pinned(("root",))
# AMD's ARKs for Milan, Genoa and Turin.
AMD_ARKS = _pinned(("ARK",))


def check_bundle(bundle: Bundle, test_roots: Sequence[bytes] = ()) -> list[str | None]:
    """One entry per member: None when its signatures hold, else why not (one line)."""
    extra = frozenset(hashlib.sha256(der).hexdigest() for der in test_roots)
    out: list[str | None] = []
    for member in bundle.members:
        try:
            if member.kind in DCAP_KINDS:
                check_tdx(member, INTEL_ROOTS | extra)
            else:
                check_snp(member, bundle, AMD_ARKS | extra)
            out.append(None)
        except BundleError as exc:
            out.append(str(exc))
    return out


def require_valid_signatures(bundle: Bundle, test_roots: Sequence[bytes] = ()) -> None:
    """Raise BundleError (naming the bundle and the member) for the first member that fails."""
    for problem in check_bundle(bundle, test_roots):
        if problem is not None:
            raise BundleError(f"{bundle.path}: {problem}")


def member_window(member: Member) -> tuple[str, str]:
    """(valid from, valid until) of the member's content: its latest issue or start time,
    its earliest nextUpdate or notAfter."""
    return tdx_window(member) if member.kind in DCAP_KINDS else certificate_window(member)


# --------------------------------------------------------------------------- TDX


def tdx_collateral(member: Member) -> TdxCollateral:
    """The member's collateral, checked for form and for the FMSPC and CA its key names."""
    try:
        fields = json.loads(member.data)
        if not isinstance(fields, dict):
            raise CollateralError(f"member {member.path}: not a JSON object")
        collateral = TdxCollateral.from_fields(fields, fetched_at=0.0, origin=member.path)
        collateral.check_matches(
            str(member.key.get("fmspc", "")),
            str(member.key.get("ca", "")),
            member.path,
            DCAP_KINDS[member.kind],
        )
    except (ValueError, CollateralError) as exc:
        raise BundleError(f"member {_one_line(str(exc), member.path)}") from None
    return collateral


def check_tdx(member: Member, roots: Collection[str]) -> None:
    fields = tdx_collateral(member).fields
    where = f"member {member.path}"
    for document, chain_name in (
        ("tcb_info", "tcb_info_issuer_chain"),
        ("qe_identity", "qe_identity_issuer_chain"),
    ):
        signer, _ = _intel_chain(fields[chain_name], roots, f"{where}: {chain_name}")
        if not _verifies(signer, fields[document], fields[f"{document}_signature"]):
            _fail(f"{where}: {document} signature does not verify with {_cn(signer)!r}")
    pck_ca, root = _intel_chain(fields["pck_crl_issuer_chain"], roots, f"{where}: pck_crl chain")
    for name, issuer in (("pck_crl", pck_ca), ("root_ca_crl", root)):
        crl = load_crl(bytes.fromhex(fields[name]), name)
        if not _crl_signed_by(crl, issuer):
            _fail(f"{where}: {name} is not signed by {_cn(issuer)!r}")


def tdx_window(member: Member) -> tuple[str, str]:
    """(latest issue / start, earliest nextUpdate / notAfter) of everything the member holds."""
    fields = tdx_collateral(member).fields
    starts: list[datetime] = []
    ends: list[datetime] = []
    for name in ("tcb_info", "qe_identity"):
        document = json.loads(fields[name])
        for key, into in (("issueDate", starts), ("nextUpdate", ends)):
            try:
                into.append(_parse_time(document[key]))
            except (KeyError, TypeError, AttributeError, ValueError):
                if key == "nextUpdate":  # from_fields has required it already
                    raise
    for name in ("pck_crl", "root_ca_crl"):
        crl = load_crl(bytes.fromhex(fields[name]), name)
        starts.append(crl.last_update_utc)
        if crl.next_update_utc is not None:
            ends.append(crl.next_update_utc)
    for name in ("tcb_info_issuer_chain", "qe_identity_issuer_chain", "pck_crl_issuer_chain"):
        for cert in x509.load_pem_x509_certificates(fields[name].encode()):
            starts.append(cert.not_valid_before_utc)
            ends.append(cert.not_valid_after_utc)
    return iso(max(starts).timestamp()), iso(min(ends).timestamp())


def _intel_chain(
    pem: str, roots: Collection[str], where: str
) -> tuple[x509.Certificate, x509.Certificate]:
    """(signing certificate, root) of a two-certificate Intel chain ending in a trusted root."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    if len(certs) < 2:
        _fail(f"{where}: holds {len(certs)} certificate(s), expected the signer and the root")
    signer, root = certs[0], certs[-1]
    _require_trusted_root(root, roots, where)
    if not _signed_by(signer, root):
        _fail(f"{where}: {_cn(signer)!r} is not signed by {_cn(root)!r}")
    return signer, root


def _verifies(signer: x509.Certificate, text: str, signature_hex: str) -> bool:
    raw = bytes.fromhex(signature_hex)
    key = signer.public_key()
    if len(raw) != 64 or not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, text.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- SNP


def check_snp(member: Member, bundle: Bundle, arks: Collection[str]) -> None:
    where = f"member {member.path}"
    cert = snp_certificate(member)
    product = str(member.key.get("product", ""))
    if member.kind == "snp-ark":
        _require_trusted_root(cert, arks, where)
        return
    issuer_kind = "snp-ask" if member.kind == "snp-vcek" else "snp-ark"
    issuer = next((m for m in bundle.of_kind(issuer_kind) if m.key.get("product") == product), None)
    if issuer is None:
        _fail(f"{where}: the bundle holds no {issuer_kind[4:].upper()} for {product}")
    issuer_cert = snp_certificate(issuer)
    if not _signed_by(cert, issuer_cert):
        _fail(f"{where}: not signed by the {product} {issuer_kind[4:].upper()} ({issuer.path})")


def snp_certificate(member: Member) -> x509.Certificate:
    try:
        with warnings.catch_warnings():
            # AMD issues VCEKs with serial number 0, which cryptography warns about.
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(member.data)
    except ValueError as exc:
        raise BundleError(f"member {member.path}: not a DER certificate: {exc}") from None


def certificate_window(member: Member) -> tuple[str, str]:
    cert = snp_certificate(member)
    return iso(cert.not_valid_before_utc.timestamp()), iso(cert.not_valid_after_utc.timestamp())


# --------------------------------------------------------------------------- shared


def _require_trusted_root(root: x509.Certificate, roots: Collection[str], where: str) -> None:
    if root.subject != root.issuer or not _signed_by(root, root):
        _fail(f"{where}: {_cn(root)!r} is not a self-signed root")
    fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
    if fingerprint not in roots:
        _fail(f"{where}: root {_cn(root)!r} (SHA-256 {fingerprint}) is not a trusted root")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or crl.issuer != issuer.subject:
        return False
    return crl.is_signature_valid(key)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _cn(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = values[0].value if values else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode(errors="replace")


def _one_line(text: str, path: str) -> str:
    return text if text.startswith(path) else f"{path}: {text}"


def _fail(message: str) -> NoReturn:
    raise BundleError(message)
