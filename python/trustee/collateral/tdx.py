"""TDX collateral in the dcap-qvl JSON form, and the protocol every TDX collateral source follows.

The form is the one the Rust verifier reads (``Collateral::from_json``): nine string members,

* ``tcb_info`` / ``qe_identity``: the exact signed JSON text of ``tcbInfo`` / ``enclaveIdentity``
  (the signature covers these bytes, so they are carried as text, never re-serialised from a
  parsed object unless the input was itself an object);
* ``tcb_info_signature`` / ``qe_identity_signature``: hex of the raw r‖s signature;
* ``*_issuer_chain``: PEM certificate chains;
* ``pck_crl`` / ``root_ca_crl``: hex of the DER CRLs.

``not_after`` is the earliest ``nextUpdate`` of the TCB info, the QE identity and both CRLs:
after it the verifier would report the collateral as expired, so caches must not serve it.

SGX quotes take the same form with the SGX documents (TCB info ``id`` "SGX", QE identity ``id``
"QE"); every source takes the TEE (``tdx`` or ``sgx``) beside the FMSPC and CA.
"""

from __future__ import annotations

import binascii
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustee.collateral.errors import CollateralError

COLLATERAL_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)

CA_KINDS = ("processor", "platform")
DCAP_TEES = ("tdx", "sgx")
# The TCB info `id` of each TEE's documents.
_TCB_INFO_ID = {"tdx": "TDX", "sgx": "SGX"}

# The PCK CRL issuer's common name tells which CA the CRL belongs to.
_CA_BY_CRL_ISSUER = {
    "Intel SGX PCK Processor CA": "processor",
    "Intel SGX PCK Platform CA": "platform",
}

_FMSPC = re.compile(r"^[0-9A-Fa-f]{12}$")


class TdxCollateralSource(Protocol):
    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        """Collateral for a `tee` (tdx or sgx) quote whose PCK certificate has this FMSPC and
        was issued by this CA."""
        ...


@dataclass(frozen=True)
class TdxCollateral:
    fields: Mapping[str, str]
    not_after: float
    fetched_at: float

    @classmethod
    def from_fields(
        cls, fields: Mapping[str, Any], *, fetched_at: float, origin: str
    ) -> TdxCollateral:
        """Validate a dcap-qvl form mapping (extra members dropped); compute ``not_after``."""
        clean: dict[str, str] = {}
        for key in COLLATERAL_KEYS:
            value = fields.get(key)
            if not isinstance(value, str) or not value:
                raise CollateralError(
                    f"{origin}: member {key!r} is missing or not a non-empty string"
                )
            clean[key] = value
        for key in ("tcb_info_signature", "qe_identity_signature", "pck_crl", "root_ca_crl"):
            _hex_bytes(clean[key], f"{origin}: member {key!r}")
        tcb_next = _next_update(clean["tcb_info"], f"{origin}: tcb_info")
        qe_next = _next_update(clean["qe_identity"], f"{origin}: qe_identity")
        pck_crl = load_crl(bytes.fromhex(clean["pck_crl"]), f"{origin}: pck_crl")
        root_crl = load_crl(bytes.fromhex(clean["root_ca_crl"]), f"{origin}: root_ca_crl")
        not_after = min(tcb_next, qe_next, _crl_next_update(pck_crl), _crl_next_update(root_crl))
        return cls(MappingProxyType(clean), not_after, fetched_at)

    def to_json_bytes(self) -> bytes:
        return json.dumps(
            {key: self.fields[key] for key in COLLATERAL_KEYS}, separators=(",", ":")
        ).encode()

    @property
    def fmspc(self) -> str:
        value = json.loads(self.fields["tcb_info"]).get("fmspc")
        return value.upper() if isinstance(value, str) else ""

    @property
    def ca(self) -> str | None:
        """``processor``/``platform`` from the PCK CRL issuer, None for an unknown issuer."""
        crl = load_crl(bytes.fromhex(self.fields["pck_crl"]), "pck_crl")
        return _CA_BY_CRL_ISSUER.get(_common_name(crl.issuer))

    @property
    def tcb_info_id(self) -> str:
        document = json.loads(self.fields["tcb_info"])
        value = document.get("id")
        if value is None and document.get("version") == 2:
            return "SGX"  # version 2 predates `id`; only SGX TCB info had it
        return value if isinstance(value, str) else ""

    def check_matches(self, fmspc: str, ca: str, origin: str, tee: str = "tdx") -> None:
        """Refuse collateral for another platform: the verifier's error would be vaguer."""
        held_id, wanted_id = self.tcb_info_id, _TCB_INFO_ID.get(tee, tee)
        if held_id != wanted_id:
            raise CollateralError(
                f"{origin}: holds a {held_id or '(no id)'} TCB info, but {tee} collateral "
                f"(TCB info id {wanted_id}) was requested"
            )
        if self.fmspc != fmspc.upper():
            raise CollateralError(
                f"{origin}: holds TCB info for FMSPC {self.fmspc or '(none)'}, "
                f"but FMSPC {fmspc.upper()} was requested"
            )
        held = self.ca
        if held is not None and held != ca:
            raise CollateralError(
                f"{origin}: holds the PCK CRL of the {held} CA, but the {ca} CA was requested"
            )


def check_request(fmspc: str, ca: str, origin: str, tee: str = "tdx") -> None:
    if tee not in DCAP_TEES:
        raise CollateralError(f"{origin}: TEE {tee!r} is neither 'tdx' nor 'sgx'")
    if not _FMSPC.match(fmspc):
        raise CollateralError(f"{origin}: FMSPC {fmspc!r} is not 12 hex digits")
    if ca not in CA_KINDS:
        raise CollateralError(f"{origin}: PCK CA {ca!r} is neither 'processor' nor 'platform'")


def raw_member(text: str, name: str, origin: str) -> str:
    """The exact source text of member ``name`` of the top-level JSON object in ``text``.

    Intel signs the bytes of ``tcbInfo``/``enclaveIdentity`` as served; slicing them out keeps
    the signature valid whatever JSON library touched the document.
    """
    decoder = json.JSONDecoder()
    spaces = " \t\r\n"
    pos = len(text) - len(text.lstrip(spaces))
    if not text.startswith("{", pos):
        raise CollateralError(f"{origin}: not a JSON object")
    pos += 1
    try:
        while True:
            while pos < len(text) and text[pos] in spaces:
                pos += 1
            if text.startswith("}", pos):
                break
            key, pos = decoder.raw_decode(text, pos)
            while pos < len(text) and text[pos] in spaces:
                pos += 1
            if not text.startswith(":", pos):
                raise ValueError(f"expected ':' at offset {pos}")
            pos += 1
            while pos < len(text) and text[pos] in spaces:
                pos += 1
            start = pos
            _, pos = decoder.raw_decode(text, pos)
            if key == name:
                return text[start:pos]
            while pos < len(text) and text[pos] in spaces:
                pos += 1
            if text.startswith(",", pos):
                pos += 1
            elif not text.startswith("}", pos):
                raise ValueError(f"expected ',' or '}}' at offset {pos}")
    except ValueError as exc:
        raise CollateralError(f"{origin}: bad JSON: {exc}") from exc
    raise CollateralError(f"{origin}: member {name!r} is missing")


def signed_document(text: str, member: str, origin: str) -> tuple[str, str]:
    """(signed JSON text of ``member``, hex signature) from Intel's ``{member: …, signature}``."""
    body = raw_member(text, member, origin)
    if not body.startswith("{"):
        raise CollateralError(f"{origin}: member {member!r} is not a JSON object")
    signature = json.loads(raw_member(text, "signature", origin))
    if not isinstance(signature, str):
        raise CollateralError(f"{origin}: member 'signature' is not a string")
    _hex_bytes(signature, f"{origin}: signature")
    return body, signature.lower()


def crl_der(data: bytes, origin: str) -> bytes:
    """A CRL as DER from DER, PEM or hex text (PCCS serves the root CA CRL as hex)."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(stripped).public_bytes(Encoding.DER)
        except ValueError as exc:
            raise CollateralError(f"{origin}: bad PEM CRL: {exc}") from exc
    if stripped and all(c in b"0123456789abcdefABCDEF" for c in stripped):
        try:
            data = binascii.unhexlify(stripped)
        except binascii.Error as exc:
            raise CollateralError(f"{origin}: bad hex CRL: {exc}") from exc
    load_crl(data, origin)
    return data


def load_crl(der: bytes, origin: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CollateralError(f"{origin}: not a DER CRL ({len(der)} bytes): {exc}") from exc


def pem_chain(data: bytes, origin: str) -> str:
    """Validated PEM certificate chain text."""
    try:
        text = data.decode("ascii")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CollateralError(f"{origin}: not a PEM certificate chain: {exc}") from exc
    if not certs:
        raise CollateralError(f"{origin}: PEM certificate chain is empty")
    return text


def _hex_bytes(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise CollateralError(f"{what} is not hex: {exc}") from exc


def _next_update(text: str, what: str) -> float:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CollateralError(f"{what} is not JSON: {exc}") from exc
    value = document.get("nextUpdate") if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise CollateralError(f"{what} has no string 'nextUpdate'")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise CollateralError(f"{what}: nextUpdate {value!r} is not a date: {exc}") from exc


def _crl_next_update(crl: x509.CertificateRevocationList) -> float:
    when = crl.next_update_utc
    # A CRL without nextUpdate never forces a refresh on its own.
    return when.timestamp() if when is not None else float("inf")


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = values[0].value if values else ""
    return value if isinstance(value, str) else value.decode(errors="replace")
