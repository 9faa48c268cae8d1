"""The vendors' signatures on a collateral bundle's content, and each member's validity window.

The signatures are checked by the native core, by the code that checks collateral during an
appraisal: DCAP collateral (issuer chains ending in the Intel SGX Root CA or a configured test
root, TCB info and QE identity signatures, both CRLs, revoked signers) and each SNP
certificate against its issuer (an ARK pinned or a test root, an ASK or ASVK signed by its
product's ARK, a VCEK by its ASK). Validity is reported, never refused: an expired bundle
still serves, and appraisals say it is expired.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

from cryptography import x509

from trustee import _core
from trustee.collateral.bundle import DCAP_KINDS, Bundle, BundleError, Member, iso
from trustee.collateral.errors import CollateralError
from trustee.collateral.tdx import TdxCollateral, load_crl


def check_bundle(bundle: Bundle, test_roots: Sequence[bytes] = ()) -> list[str | None]:
    """One entry per member: None when its signatures hold, else why not (one line)."""
    extra = [hashlib.sha256(der).digest() for der in test_roots]
    out: list[str | None] = []
    for member in bundle.members:
        try:
            if member.kind in DCAP_KINDS:
                check_tdx(member, extra)
            else:
                check_snp(member, bundle, extra)
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


def check_tdx(member: Member, extra_roots: list[bytes]) -> None:
    tdx_collateral(member)  # its form, and the FMSPC and CA its key names
    try:
        _core.check_dcap_collateral(member.data, DCAP_KINDS[member.kind], extra_roots)
    except ValueError as exc:
        _fail(f"member {member.path}: {exc}")


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


# --------------------------------------------------------------------------- SNP


def check_snp(member: Member, bundle: Bundle, extra_roots: list[bytes]) -> None:
    where = f"member {member.path}"
    if member.kind == "snp-ark":
        try:
            _core.check_snp_certificate(member.data, None, extra_roots)
        except ValueError as exc:
            _fail(f"{where}: {exc}")
        return
    product = str(member.key.get("product", ""))
    issuer_kind = "snp-ask" if member.kind == "snp-vcek" else "snp-ark"
    role = issuer_kind[4:].upper()
    issuer = next((m for m in bundle.of_kind(issuer_kind) if m.key.get("product") == product), None)
    if issuer is None:
        _fail(f"{where}: the bundle holds no {role} for {product}")
    try:
        _core.check_snp_certificate(member.data, issuer.data)
    except ValueError as exc:
        _fail(f"{where}: not signed by the {product} {role} ({issuer.path}): {exc}")


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


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _one_line(text: str, path: str) -> str:
    return text if text.startswith(path) else f"{path}: {text}"


def _fail(message: str) -> NoReturn:
    raise BundleError(message)
