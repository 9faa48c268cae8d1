"""Simulated AMD SEV-SNP guest: attestation reports signed by a run-time test VCEK.

The chain mirrors AMD's: a self-signed RSA-4096 ARK, an ASK it signs, and a P-384 VCEK the ASK
signs, all with RSASSA-PSS/SHA-384 and the VCEK carrying AMD's TCB and hwID extensions.
A verifier trusts it only when the test ARK is configured explicitly.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustee.simulate import certs, der, store
from trustee.simulate.snp_layout import (
    GENOA,
    MILAN,
    SIGNATURE_COMPONENT_SIZE,
    SIGNATURE_R_OFFSET,
    SIGNATURE_S_OFFSET,
    SIGNED_SIZE,
    TURIN,
    report_from_json,
    report_to_json,
)

AMD_OID = "1.3.6.1.4.1.3704.1"

# Never resolvable (RFC 2606), so nothing fetches a real CRL for the test PKI.
KDS_TEST_URL = "https://kds.trustee-test.invalid/vcek/v1"


@dataclass(frozen=True)
class SnpProduct:
    name: str
    product_name: str  # the VCEK productName extension
    family: int
    model: int
    stepping: int
    default_tcb: tuple[int | None, int, int, int, int]  # fmc, bootloader, tee, snp, microcode


PRODUCTS = {
    MILAN: SnpProduct(MILAN, "Milan-B0", 0x19, 0x01, 0x01, (None, 3, 0, 8, 115)),
    GENOA: SnpProduct(GENOA, "Genoa", 0x19, 0x11, 0x01, (None, 10, 0, 23, 25)),
    TURIN: SnpProduct(TURIN, "Turin", 0x1A, 0x02, 0x01, (1, 1, 1, 3, 72)),
}


def tcb_json(values: tuple[int | None, int, int, int, int]) -> dict[str, Any]:
    fmc, bootloader, tee, snp, microcode = values
    return {"fmc": fmc, "bootloader": bootloader, "tee": tee, "snp": snp, "microcode": microcode}


def vcek_extensions(
    product: SnpProduct, tcb: tuple[int | None, int, int, int, int], hw_id: bytes
) -> list[tuple[x509.ExtensionType, bool]]:
    """AMD's VCEK extensions in AMD's order; hwID uses the raw 64-byte (KDS) encoding."""
    fmc, bootloader, tee, snp, microcode = tcb

    def ext(sub: str, value: bytes) -> tuple[x509.ExtensionType, bool]:
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{AMD_OID}.{sub}"), value), False

    out = [
        ext("1", der.integer(0)),
        ext("2", der.ia5_string(product.product_name)),
        ext("3.1", der.integer(bootloader)),
        ext("3.2", der.integer(tee)),
        ext("3.4", der.integer(0)),
        ext("3.5", der.integer(0)),
        ext("3.6", der.integer(0)),
        ext("3.7", der.integer(0)),
        ext("3.3", der.integer(snp)),
        ext("3.8", der.integer(microcode)),
    ]
    if product.name == TURIN:
        out.append(ext("3.9", der.integer(0 if fmc is None else fmc)))
    out.append(ext("4", hw_id))
    return out


class ReportFields(TypedDict, total=False):
    """The report fields a caller may choose; `SnpTestPki.report_json` holds the defaults."""

    host_data: bytes
    measurement: bytes
    policy: int
    vmpl: int
    version: int
    guest_svn: int
    family_id: bytes
    image_id: bytes


@dataclass
class SnpTestPki:
    """Keys and certificates of a simulated SNP platform; build with `generate()`."""

    product: SnpProduct
    tcb: tuple[int | None, int, int, int, int]
    chip_id: bytes
    report_id: bytes
    ark_key: rsa.RSAPrivateKey
    ark_cert: x509.Certificate
    ask_key: rsa.RSAPrivateKey
    ask_cert: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    vcek_cert: x509.Certificate

    @classmethod
    def generate(
        cls,
        product: str = GENOA,
        *,
        tcb: tuple[int | None, int, int, int, int] | None = None,
        now: datetime.datetime | None = None,
    ) -> SnpTestPki:
        """A fresh ARK/ASK/VCEK chain; `tcb` is (fmc, bootloader, tee, snp, microcode)."""
        if product not in PRODUCTS:
            raise ValueError(f"SNP product {product!r} is not one of {sorted(PRODUCTS)}")
        spec = PRODUCTS[product]
        tcb = tcb or spec.default_tcb
        _check_tcb(product, tcb)
        start = (certs.utc(now) if now else certs.now_utc()) - datetime.timedelta(days=1)
        # Turin masks all but the first 8 chip-id bytes.
        chip_id = secrets.token_bytes(8 if product == TURIN else 64).ljust(64, b"\0")
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        ark_cert, ask_cert = _issue_authorities(product, ark_key, ask_key, start)
        vcek_cert = certs.issue(
            certs.amd_name("SEV-VCEK"),
            vcek_key.public_key(),
            certs.Signer(ask_cert.subject, ask_key),
            (start, start + datetime.timedelta(days=7 * 365)),
            vcek_extensions(spec, tcb, chip_id),
            # Real VCEKs use serial 0, which `cryptography` warns about on every load; 1 keeps
            # the simulated chain quiet without changing anything a verifier checks.
            serial=1,
        )
        return cls(
            product=spec,
            tcb=tcb,
            chip_id=chip_id,
            report_id=secrets.token_bytes(32),
            ark_key=ark_key,
            ark_cert=ark_cert,
            ask_key=ask_key,
            ask_cert=ask_cert,
            vcek_key=vcek_key,
            vcek_cert=vcek_cert,
        )

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write keys (PKCS#8 PEM, mode 0600), certificates (PEM) and pki.json to `directory`."""
        document = store.header("snp") | {
            "product": self.product.name,
            "tcb": tcb_json(self.tcb),
            "chip_id": self.chip_id.hex(),
            "report_id": self.report_id.hex(),
        }
        files: list[tuple[str, store.PrivateKey, x509.Certificate | None]] = [
            ("ark", self.ark_key, self.ark_cert),
            ("ask", self.ask_key, self.ask_cert),
            ("vcek", self.vcek_key, self.vcek_cert),
        ]
        return store.save_pki(Path(directory), document, files)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SnpTestPki:
        """The PKI `save` wrote; raises `SimulationError` naming the first bad file."""
        base = Path(directory)
        doc = store.PkiDocument(base, "snp")
        product = doc.str_("product")
        if product not in PRODUCTS:
            raise doc.fail("product", f"is {product!r}, not one of {sorted(PRODUCTS)}")
        tcb = (
            doc.optional_int("tcb.fmc"),
            doc.int_("tcb.bootloader"),
            doc.int_("tcb.tee"),
            doc.int_("tcb.snp"),
            doc.int_("tcb.microcode"),
        )
        if product == TURIN and tcb[0] is None:
            raise doc.fail("tcb.fmc", "is null, but a Turin TCB needs an FMC SPL")
        if product != TURIN and tcb[0] is not None:
            raise doc.fail("tcb.fmc", f"is {tcb[0]}, but {product} TCBs have no FMC SPL")
        certs_ = {
            stem: store.read_certificate(base / f"{stem}.pem") for stem in ("ark", "ask", "vcek")
        }
        return cls(
            product=PRODUCTS[product],
            tcb=tcb,
            chip_id=doc.bytes_("chip_id", 64),
            report_id=doc.bytes_("report_id", 32),
            ark_key=store.read_rsa_key(base / "ark.key", certs_["ark"]),
            ark_cert=certs_["ark"],
            ask_key=store.read_rsa_key(base / "ask.key", certs_["ask"]),
            ask_cert=certs_["ask"],
            vcek_key=store.read_ec_key(base / "vcek.key", ec.SECP384R1, certs_["vcek"]),
            vcek_cert=certs_["vcek"],
        )

    @staticmethod
    def shared(product: str = GENOA) -> SnpTestPki:
        """One PKI per product and process (RSA-4096 generation takes a while)."""
        return _shared_snp_pki(product)

    # -- trust anchors -----------------------------------------------------------------------

    @property
    def ark_der(self) -> bytes:
        return certs.der(self.ark_cert)

    @property
    def ask_der(self) -> bytes:
        return certs.der(self.ask_cert)

    @property
    def vcek_der(self) -> bytes:
        return certs.der(self.vcek_cert)

    @property
    def ark_sha256(self) -> str:
        return hashlib.sha256(self.ark_der).hexdigest()

    @property
    def ask_sha256(self) -> str:
        return hashlib.sha256(self.ask_der).hexdigest()

    @property
    def ask_ark_pem(self) -> str:
        """ASK then ARK, the order of the vendor PEM bundles verifiers pin."""
        return certs.pem(self.ask_cert, self.ark_cert)

    def cert_chain(self, *, include_ca: bool = False) -> list[tuple[str, bytes]]:
        """GHCB certificate-table entries for the evidence: the VCEK, optionally ASK and ARK."""
        entries = [("VCEK", self.vcek_der)]
        if include_ca:
            entries += [("ASK", self.ask_der), ("ARK", self.ark_der)]
        return entries

    # -- reports -----------------------------------------------------------------------------

    def report_json(
        self,
        report_data: bytes,
        *,
        host_data: bytes = bytes(32),
        measurement: bytes = bytes(48),
        policy: int = 0x30000,
        vmpl: int = 0,
        version: int = 3,
        guest_svn: int = 0,
        family_id: bytes = bytes(16),
        image_id: bytes = bytes(16),
    ) -> dict[str, Any]:
        """The unsigned report as sev's serde object (signature all zero)."""
        if version not in (2, 3, 5):
            raise ValueError(f"report version must be 2, 3 or 5, got {version}")
        if not 0 <= vmpl <= 3:
            raise ValueError(f"vmpl must be 0..3, got {vmpl}")
        tcb = tcb_json(self.tcb)
        # SMT and ECC enabled; ALIAS_CHECK_COMPLETE exists from version 3 on.
        plat_info = 0x05 | (0x20 if version >= 3 else 0)
        version_triple = {"major": 1, "minor": 55, "build": 40}
        cpuid = version >= 3
        return {
            "version": version,
            "guest_svn": guest_svn,
            "policy": policy,
            "family_id": list(_sized("family_id", family_id, 16)),
            "image_id": list(_sized("image_id", image_id, 16)),
            "vmpl": vmpl,
            "sig_algo": 1,
            "current_tcb": tcb,
            "plat_info": plat_info,
            "key_info": 0,
            "report_data": list(_sized("report_data", report_data, 64)),
            "measurement": list(_sized("measurement", measurement, 48)),
            "host_data": list(_sized("host_data", host_data, 32)),
            "id_key_digest": [0] * 48,
            "author_key_digest": [0] * 48,
            "report_id": list(self.report_id),
            "report_id_ma": [0xFF] * 32,
            "reported_tcb": dict(tcb),
            "cpuid_fam_id": self.product.family if cpuid else None,
            "cpuid_mod_id": self.product.model if cpuid else None,
            "cpuid_step": self.product.stepping if cpuid else None,
            "chip_id": list(self.chip_id),
            "committed_tcb": dict(tcb),
            "current": version_triple,
            "committed": dict(version_triple),
            "launch_tcb": dict(tcb),
            "launch_mit_vector": 0 if version >= 5 else None,
            "current_mit_vector": 0 if version >= 5 else None,
            "signature": {"r": [0] * 72, "s": [0] * 72},
        }

    def report(self, report_data: bytes, **fields: Unpack[ReportFields]) -> bytes:
        """A signed 1184-byte report; shorter byte fields are zero-padded.

        `fields` and their defaults are `report_json`'s.
        """
        unsigned = report_from_json(self.report_json(report_data, **fields))
        r, s = certs.ecdsa_raw(self.vcek_key, unsigned[:SIGNED_SIZE], 48)
        out = bytearray(unsigned)
        size = SIGNATURE_COMPONENT_SIZE
        # The ABI stores r and s little-endian, zero-padded to 72 bytes.
        out[SIGNATURE_R_OFFSET : SIGNATURE_R_OFFSET + size] = r.to_bytes(size, "little")
        out[SIGNATURE_S_OFFSET : SIGNATURE_S_OFFSET + size] = s.to_bytes(size, "little")
        return bytes(out)


@functools.cache
def _shared_snp_pki(product: str) -> SnpTestPki:
    return SnpTestPki.generate(product)


def _check_tcb(product: str, tcb: tuple[int | None, int, int, int, int]) -> None:
    if len(tcb) != 5 or any(v is not None and not 0 <= v <= 255 for v in tcb):
        raise ValueError(f"tcb must be (fmc, bootloader, tee, snp, microcode) bytes, got {tcb}")
    if product == TURIN and tcb[0] is None:
        raise ValueError("a Turin TCB needs an FMC SPL, got fmc=None")
    if product != TURIN and tcb[0] is not None:
        raise ValueError(f"{product} TCBs have no FMC SPL, got fmc={tcb[0]}")


def _issue_authorities(
    product: str, ark_key: rsa.RSAPrivateKey, ask_key: rsa.RSAPrivateKey, start: datetime.datetime
) -> tuple[x509.Certificate, x509.Certificate]:
    """The self-signed ARK and the ASK it signs, with AMD's extensions in AMD's order."""
    crl = certs.crl_distribution_point(f"{KDS_TEST_URL}/{product}/crl")
    ark = certs.Signer(certs.amd_name(f"ARK-{product}"), ark_key)
    validity = (start, start + datetime.timedelta(days=25 * 365))
    ark_cert = certs.issue(
        ark.name,
        ark_key.public_key(),
        ark,
        validity,
        [
            (certs.key_usage(cert_sign=True, crl_sign=True), True),
            (x509.SubjectKeyIdentifier.from_public_key(ark_key.public_key()), False),
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (crl, False),
        ],
    )
    ask_cert = certs.issue(
        certs.amd_name(f"SEV-{product}"),
        ask_key.public_key(),
        ark,
        validity,
        [
            (x509.SubjectKeyIdentifier.from_public_key(ask_key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ark_key.public_key()), False),
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (certs.key_usage(cert_sign=True), True),
            (crl, False),
        ],
    )
    return ark_cert, ask_cert


def _sized(label: str, value: bytes, size: int) -> bytes:
    if len(value) > size:
        raise ValueError(f"{label} is {len(value)} bytes, at most {size} fit in the report")
    return value.ljust(size, b"\0")


def snp_evidence(
    report: bytes, cert_chain: Sequence[tuple[str, bytes]] | None = None
) -> dict[str, Any]:
    """The SNP attester's evidence object: the report as sev's serde object, plus cert table."""
    chain = None
    if cert_chain is not None:
        chain = [{"cert_type": cert_type, "data": list(data)} for cert_type, data in cert_chain]
    return {"attestation_report": report_to_json(report), "cert_chain": chain}


def snp_evidence_json(
    report: bytes, cert_chain: Sequence[tuple[str, bytes]] | None = None
) -> bytes:
    """`snp_evidence` serialised compactly, as the attester sends it."""
    return json.dumps(snp_evidence(report, cert_chain), separators=(",", ":")).encode()


class SimulatedSnpAttester:
    """A client attester producing simulated SNP evidence (init data bound to HOST_DATA)."""

    tee: str = "snp"

    def __init__(
        self,
        pki: SnpTestPki | None = None,
        *,
        include_ca: bool = False,
        measurement: bytes | None = None,
    ) -> None:
        self.pki = pki or SnpTestPki.shared()
        self.include_ca = include_ca
        self.measurement = measurement or bytes(48)

    def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
        # The guest pads or truncates both values to the field size, as the real attester does.
        report = self.pki.report(
            report_data[:64],
            host_data=(init_data_digest or b"")[:32],
            measurement=self.measurement,
        )
        return snp_evidence(report, self.pki.cert_chain(include_ca=self.include_ca))
