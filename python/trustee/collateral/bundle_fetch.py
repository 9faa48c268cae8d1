"""Fetch the members of a collateral bundle from Intel PCS (or a PCCS) and AMD KDS.

For each TDX FMSPC and PCK CA: exactly what :class:`~trustee.collateral.tdx_sources.PcsSource`
fetches for one appraisal. For each SNP chip: its VCEK, the product's ASK and ARK, and with
``asvk`` the product's ASVK (KDS ``/vlek/v1/<product>/cert_chain``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import Encoding

from trustee.collateral.bundle import Member
from trustee.collateral.bundle_check import certificate_window, tdx_window
from trustee.collateral.errors import CollateralError
from trustee.collateral.http import expect_ok, http_get
from trustee.collateral.snp import KdsSource, VcekRequest
from trustee.collateral.spec import INTEL_PCS_URL, KDS_URL, PRODUCTS
from trustee.collateral.tdx import CA_KINDS
from trustee.collateral.tdx_sources import PcsSource
from trustee.crypto.x509chain import ChainError, load_pem_certificates

if TYPE_CHECKING:
    import httpx

_FMSPC = re.compile(r"^[0-9A-Fa-f]{12}$")


@dataclass(frozen=True)
class FetchPlan:
    tdx: Sequence[tuple[str, str]] = ()  # (FMSPC, PCK CA)
    sgx: Sequence[tuple[str, str]] = ()  # (FMSPC, PCK CA)
    snp: Sequence[VcekRequest] = ()
    snp_asvk: bool = False
    pcs_url: str = INTEL_PCS_URL
    kds_url: str = KDS_URL
    update: str = "early"
    timeout: float = 30.0
    kds_min_interval: float = 1.0


def parse_tdx_fmspc(text: str) -> list[tuple[str, str]]:
    """``FMSPC`` (both PCK CAs) or ``FMSPC:platform`` / ``FMSPC:processor``."""
    fmspc, _, ca = text.partition(":")
    if not _FMSPC.match(fmspc):
        raise ValueError(f"FMSPC {fmspc!r} is not 12 hex digits")
    if ca and ca not in CA_KINDS:
        raise ValueError(f"PCK CA {ca!r} is neither 'platform' nor 'processor'")
    return [(fmspc.upper(), one) for one in ((ca,) if ca else ("platform", "processor"))]


def parse_snp_chip(text: str) -> VcekRequest:
    """``PRODUCT:HWID_HEX:BL,TEE,SNP,UCODE[,FMC]``."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not PRODUCT:HWID_HEX:BL,TEE,SNP,UCODE[,FMC]")
    product, hw_id, tcb = parts
    try:
        spls = [int(value) for value in tcb.split(",")]
    except ValueError:
        raise ValueError(f"TCB {tcb!r} is not comma-separated decimal SPLs") from None
    if len(spls) not in (4, 5):
        raise ValueError(f"TCB {tcb!r} needs BL,TEE,SNP,UCODE and, on Turin, FMC")
    fmc = spls[4] if len(spls) == 5 else None
    return VcekRequest(product, hw_id, spls[0], spls[1], spls[2], spls[3], fmc)


def requests_from_evidence(evidence: bytes, origin: str) -> list[VcekRequest]:
    """The VCEK requests SNP evidence calls for (one per product it may be, when the report
    does not say)."""
    from trustee import _core

    try:
        needs = _core.snp_needs(evidence)
    except _core.VerifierError as exc:
        raise ValueError(f"{origin}: not SNP evidence: {exc}") from None
    if needs.vcek is None:
        raise ValueError(f"{origin}: the evidence carries its VCEK already; use --snp-chip")
    key = needs.vcek
    out: list[VcekRequest] = []
    for product in (needs.product,) if needs.product else PRODUCTS:
        try:
            out.append(
                VcekRequest(product, key.hw_id, key.bl, key.tee, key.snp, key.microcode, key.fmc)
            )
        except ValueError:
            continue  # a 64-byte chip ID names no Turin chip
    if not out:
        raise ValueError(f"{origin}: its chip ID fits no SNP product")
    return out


async def fetch_members(plan: FetchPlan, client: httpx.AsyncClient | None = None) -> list[Member]:
    """Every member the plan asks for; CollateralError names what could not be fetched."""
    members: list[Member] = []
    pcs = PcsSource(plan.pcs_url, client, plan.timeout, update=plan.update)
    for tee, platforms in (("tdx", plan.tdx), ("sgx", plan.sgx)):
        for fmspc, ca in dict.fromkeys(platforms):
            collateral = await pcs.get(fmspc, ca, tee)
            member = Member(
                f"{tee}/{fmspc}-{ca}.json", f"{tee}-collateral", {"fmspc": fmspc, "ca": ca},
                collateral.to_json_bytes(),
            )  # fmt: skip
            members.append(_windowed(member, tdx_window(member)))
    kds = KdsSource(plan.kds_url, client, plan.timeout, plan.kds_min_interval)
    products: list[str] = []
    for req, data in await _vceks(kds, plan.snp):
        key: dict[str, Any] = {"product": req.product, "hw_id": req.hw_id, "bl": req.bl}
        key.update(tee=req.tee, snp=req.snp, microcode=req.microcode)
        if req.fmc is not None:
            key["fmc"] = req.fmc
        path = f"snp/{req.product}/vcek/{req.hw_id}/{req.file_name()}"
        members.append(_certificate(Member(path, "snp-vcek", key, data)))
        if req.product not in products:
            products.append(req.product)
    for product in products:
        ask, ark = await kds.cert_chain(product)
        found = {"ask": ask, "ark": ark}
        if plan.snp_asvk:
            found["asvk"] = await _asvk(kds, product, client, plan.timeout)
        for role, der in found.items():
            member = Member(f"snp/{product}/{role}.der", f"snp-{role}", {"product": product}, der)
            members.append(_certificate(member))
    return members


async def _vceks(
    kds: KdsSource, requests: Sequence[VcekRequest]
) -> list[tuple[VcekRequest, bytes]]:
    """Requests for one chip and TCB under several products (evidence from a report that
    does not name its product) are alternatives: the first KDS answers ends the search."""
    chips: dict[tuple[str, int, int, int, int, int | None], list[VcekRequest]] = {}
    for req in dict.fromkeys(requests):
        chip = (req.hw_id, req.bl, req.tee, req.snp, req.microcode, req.fmc)
        chips.setdefault(chip, []).append(req)
    out: list[tuple[VcekRequest, bytes]] = []
    for alternatives in chips.values():
        reasons: list[str] = []
        for req in alternatives:
            try:
                out.append((req, await kds.vcek(req)))
                break
            except CollateralError as exc:
                reasons.append(str(exc))
        else:
            raise CollateralError("; ".join(reasons))
    return out


async def _asvk(
    kds: KdsSource, product: str, client: httpx.AsyncClient | None, timeout: float
) -> bytes:
    url = f"{kds.base_url}/vlek/v1/{product}/cert_chain"
    source = f"AMD KDS {kds.base_url}"
    body = expect_ok(
        await http_get(client, url, params=None, timeout=timeout, source=source), source
    )
    try:
        certs = load_pem_certificates(body)
    except ChainError as exc:
        raise CollateralError(f"{source}: {url}: {exc}") from None
    issued = [c for c in certs if c.subject != c.issuer]
    if len(issued) != 1:
        raise CollateralError(f"{source}: {url}: expected the ASVK and the ARK")
    return issued[0].public_bytes(Encoding.DER)


def _certificate(member: Member) -> Member:
    return _windowed(member, certificate_window(member))


def _windowed(member: Member, window: tuple[str, str]) -> Member:
    return Member(member.path, member.kind, member.key, member.data, *window)
