"""PCS- and KDS-shaped routes serving a simulated platform's collateral and endorsement keys,
for the collateral bundle tests (unit and e2e)."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from tests.unit.collateral_support import Reply
from trustee.simulate import SgxTestPki, SnpTestPki, TdxTestPki


def signed_json(member: str, body: str, signature: str) -> bytes:
    """Intel's response shape, with the signed text inserted verbatim."""
    return f'{{"{member}":{body},"signature":"{signature}"}}'.encode()


def pcs_routes(pki: TdxTestPki, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Intel PCS v4 for the simulated platform (its PCK CA is the platform CA), TDX and SGX;
    collateral issued at `now` (default: the present)."""
    collateral = pki.collateral(now)
    fmspc = pki.platform.fmspc.hex().upper()

    def tcb(path: str, query: dict[str, str]) -> Reply:
        if query.get("fmspc", "").upper() != fmspc:
            return 404, {}, b""
        body = signed_json("tcbInfo", collateral["tcb_info"], collateral["tcb_info_signature"])
        return 200, {"TCB-Info-Issuer-Chain": quote(collateral["tcb_info_issuer_chain"])}, body

    def qe(path: str, query: dict[str, str]) -> Reply:
        body = signed_json(
            "enclaveIdentity", collateral["qe_identity"], collateral["qe_identity_signature"]
        )
        chain = quote(collateral["qe_identity_issuer_chain"])
        return 200, {"SGX-Enclave-Identity-Issuer-Chain": chain}, body

    def pck_crl(path: str, query: dict[str, str]) -> Reply:
        if query.get("ca") != "platform":
            return 404, {}, b""
        chain = quote(collateral["pck_crl_issuer_chain"])
        return 200, {"SGX-PCK-CRL-Issuer-Chain": chain}, bytes.fromhex(collateral["pck_crl"])

    def root_crl(path: str, query: dict[str, str]) -> Reply:
        return 200, {}, collateral["root_ca_crl"].encode()

    routes = {
        "/tdx/certification/v4/tcb": tcb,
        "/tdx/certification/v4/qe/identity": qe,
        "/sgx/certification/v4/pckcrl": pck_crl,
        "/sgx/certification/v4/rootcacrl": root_crl,
    }
    # The same platform quoting for an SGX enclave: SGX's own TCB info and QE identity.
    sgx = SgxTestPki(pki).collateral(now)

    def sgx_tcb(path: str, query: dict[str, str]) -> Reply:
        if query.get("fmspc", "").upper() != fmspc:
            return 404, {}, b""
        body = signed_json("tcbInfo", sgx["tcb_info"], sgx["tcb_info_signature"])
        return 200, {"TCB-Info-Issuer-Chain": quote(sgx["tcb_info_issuer_chain"])}, body

    def sgx_qe(path: str, query: dict[str, str]) -> Reply:
        body = signed_json("enclaveIdentity", sgx["qe_identity"], sgx["qe_identity_signature"])
        chain = quote(sgx["qe_identity_issuer_chain"])
        return 200, {"SGX-Enclave-Identity-Issuer-Chain": chain}, body

    routes["/sgx/certification/v4/tcb"] = sgx_tcb
    routes["/sgx/certification/v4/qe/identity"] = sgx_qe
    return routes


def kds_routes(pki: SnpTestPki) -> dict[str, Any]:
    """AMD KDS for the simulated chip. The ASVK route serves the ASK (also signed by the ARK):
    the test PKI has no VLEK authority of its own."""
    product = pki.product.name
    hw_id = pki.chip_id.hex()

    def vcek(path: str, query: dict[str, str]) -> Reply:
        if path != f"/vcek/v1/{product}/{hw_id}" or query != kds_query(pki):
            return 404, {}, b"unknown chip or TCB"
        return 200, {}, pki.vcek_der

    def chain(path: str, query: dict[str, str]) -> Reply:
        return 200, {}, pki.ask_ark_pem.encode()

    return {
        f"/vcek/v1/{product}/cert_chain": chain,
        f"/vlek/v1/{product}/cert_chain": chain,
        f"/vcek/v1/{product}/": vcek,
    }


def kds_query(pki: SnpTestPki) -> dict[str, str]:
    fmc, bl, tee, snp, ucode = pki.tcb
    query = {"blSPL": f"{bl:02d}", "teeSPL": f"{tee:02d}", "snpSPL": f"{snp:02d}"}
    query["ucodeSPL"] = f"{ucode:02d}"
    if fmc is not None:
        query["fmcSPL"] = f"{fmc:02d}"
    return query


def snp_chip(pki: SnpTestPki) -> str:
    """The chip as `trustee collateral fetch --snp-chip` takes it."""
    fmc, bl, tee, snp, ucode = pki.tcb
    spls = [bl, tee, snp, ucode] + ([] if fmc is None else [fmc])
    return f"{pki.product.name}:{pki.chip_id.hex()}:{','.join(map(str, spls))}"
