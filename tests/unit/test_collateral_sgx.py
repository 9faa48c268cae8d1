"""SGX collateral: every source fetches the SGX documents for an SGX quote (PCS/PCCS under
/sgx/…, PCS-tool bundles' sgx_tcbinfo/qeidentity, a directory's sgx/ folder), refuses the
other TEE's TCB info, caches SGX and TDX separately, and the attestation service fetches it for
sgx evidence."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.unit.collateral_support import Reply, serve
from tests.unit.test_collateral_tdx import signed_json
from trustee.attestation.hardware import HardwareVerifier
from trustee.collateral import BundleFileSource, CachingSource, CollateralError, PcsSource
from trustee.collateral.tdx import TdxCollateral
from trustee.collateral.tdx_sources import DirectorySource
from trustee.simulate.sgx import SgxTestPki, sgx_evidence

NOW = datetime.datetime.now(datetime.UTC)
CA = "platform"


@pytest.fixture(scope="module")
def pki() -> SgxTestPki:
    return SgxTestPki.generate()


@pytest.fixture(scope="module")
def sgx(pki: SgxTestPki) -> dict[str, str]:
    return pki.collateral(NOW)


@pytest.fixture(scope="module")
def fmspc(pki: SgxTestPki) -> str:
    return pki.platform_pki.platform.fmspc.hex().upper()


def pcs_routes(c: dict[str, str], prefix: str) -> dict[str, object]:
    def tcb(path: str, query: dict[str, str]) -> Reply:
        body = signed_json("tcbInfo", c["tcb_info"], c["tcb_info_signature"])
        return 200, {"TCB-Info-Issuer-Chain": quote(c["tcb_info_issuer_chain"])}, body.encode()

    def qe(path: str, query: dict[str, str]) -> Reply:
        body = signed_json("enclaveIdentity", c["qe_identity"], c["qe_identity_signature"])
        chain = quote(c["qe_identity_issuer_chain"])
        return 200, {"SGX-Enclave-Identity-Issuer-Chain": chain}, body.encode()

    def pck_crl(path: str, query: dict[str, str]) -> Reply:
        chain = quote(c["pck_crl_issuer_chain"])
        return 200, {"SGX-PCK-CRL-Issuer-Chain": chain}, bytes.fromhex(c["pck_crl"])

    def root_crl(path: str, query: dict[str, str]) -> Reply:
        return 200, {}, c["root_ca_crl"].encode()

    return {
        f"/{prefix}/certification/v4/tcb": tcb,
        f"/{prefix}/certification/v4/qe/identity": qe,
        "/sgx/certification/v4/pckcrl": pck_crl,
        "/sgx/certification/v4/rootcacrl": root_crl,
    }


async def test_pcs_fetches_the_sgx_documents(sgx: dict[str, str], fmspc: str) -> None:
    with serve(pcs_routes(sgx, "sgx")) as server:  # type: ignore[arg-type]
        source = PcsSource(server.url, timeout=5)
        collateral = await source.get(fmspc, CA, "sgx")
        assert dict(collateral.fields) == sgx
        assert server.counts["/sgx/certification/v4/tcb"] == 1
        assert server.counts["/sgx/certification/v4/qe/identity"] == 1
        # A TDX request asks the /tdx/ paths, which this service does not have.
        with pytest.raises(CollateralError, match="404"):
            await source.get(fmspc, CA, "tdx")


async def test_bundle_serves_its_own_tee_only(
    pki: SgxTestPki, sgx: dict[str, str], fmspc: str, tmp_path: Path
) -> None:
    path = tmp_path / "sgx-collateral.json"
    path.write_text(json.dumps(sgx))
    source = BundleFileSource(path)
    assert dict((await source.get(fmspc, CA, "sgx")).fields) == sgx
    with pytest.raises(CollateralError, match="holds a SGX TCB info, but tdx collateral"):
        await source.get(fmspc, CA, "tdx")
    tdx_path = tmp_path / "tdx-collateral.json"
    tdx_path.write_text(json.dumps(pki.platform_pki.collateral(NOW)))
    with pytest.raises(CollateralError, match="holds a TDX TCB info, but sgx collateral"):
        await BundleFileSource(tdx_path).get(fmspc, CA, "sgx")
    with pytest.raises(CollateralError, match="neither 'tdx' nor 'sgx'"):
        await source.get(fmspc, CA, "snp")


async def test_pcs_tool_bundle_takes_the_sgx_members(
    pki: SgxTestPki, sgx: dict[str, str], fmspc: str, tmp_path: Path
) -> None:
    tdx = pki.platform_pki.collateral(NOW)

    def signed(c: dict[str, str], member: str, key: str) -> dict[str, object]:
        return {member: json.loads(c[key]), "signature": c[f"{key}_signature"]}

    chain = quote(sgx["tcb_info_issuer_chain"])
    pck_chain = quote(sgx["pck_crl_issuer_chain"])
    document = {
        "collaterals": {
            "tcbinfos": [
                {
                    "fmspc": fmspc,
                    "tdx_tcbinfo": signed(tdx, "tcbInfo", "tcb_info"),
                    "sgx_tcbinfo": signed(sgx, "tcbInfo", "tcb_info"),
                }
            ],
            "pckcacrl": {"platformCrl": sgx["pck_crl"]},
            "tdqeidentity": signed(tdx, "enclaveIdentity", "qe_identity"),
            "qeidentity": signed(sgx, "enclaveIdentity", "qe_identity"),
            "certificates": {
                "TCB-Info-Issuer-Chain": chain,
                "SGX-Enclave-Identity-Issuer-Chain": chain,
                "SGX-PCK-Certificate-Issuer-Chain": {"PLATFORM": pck_chain},
            },
            "rootcacrl": sgx["root_ca_crl"],
        }
    }
    path = tmp_path / "pcs-tool.json"
    path.write_text(json.dumps(document))
    source = BundleFileSource(path)
    assert (await source.get(fmspc, CA, "sgx")).fields["tcb_info"] == sgx["tcb_info"]
    assert (await source.get(fmspc, CA, "tdx")).fields["tcb_info"] == tdx["tcb_info"]


async def test_directory_keeps_sgx_in_its_own_folder(
    sgx: dict[str, str], fmspc: str, tmp_path: Path
) -> None:
    (tmp_path / "sgx").mkdir()
    (tmp_path / "sgx" / f"{fmspc}.json").write_text(json.dumps(sgx))
    source = DirectorySource(tmp_path)
    assert dict((await source.get(fmspc, CA, "sgx")).fields) == sgx
    with pytest.raises(CollateralError, match=r"tcbInfo\.json"):
        await source.get(fmspc, CA, "tdx")


async def test_cache_keeps_tees_apart(pki: SgxTestPki, sgx: dict[str, str], fmspc: str) -> None:
    tdx = pki.platform_pki.collateral(NOW)
    asked: list[str] = []

    class Fake:
        async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
            asked.append(tee)
            fields = sgx if tee == "sgx" else tdx
            return TdxCollateral.from_fields(fields, fetched_at=0, origin="fake")

    cache = CachingSource(Fake())
    for _ in range(2):
        assert (await cache.get(fmspc, CA, "sgx")).tcb_info_id == "SGX"
        assert (await cache.get(fmspc, CA)).tcb_info_id == "TDX"
    assert asked == ["sgx", "tdx"]


async def test_service_fetches_sgx_collateral_and_verifies(
    pki: SgxTestPki, sgx: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "sgx-collateral.json"
    path.write_text(json.dumps(sgx))
    hardware = HardwareVerifier(tdx_source=BundleFileSource(path), test_anchors=[pki.root_der])
    report_data = hashlib.sha384(b"nonce").digest()
    evidence = json.dumps(sgx_evidence(pki.quote(report_data))).encode()
    (claims,) = await hardware.verify_offloaded("sgx", evidence, report_data, None)
    assert json.loads(claims.json)["tcb_status"] == "UpToDate"
    # A TDX quote presented as sgx is refused by name; no collateral is fetched for it.
    tdx_evidence = json.dumps(
        {"quote": sgx_evidence(pki.platform_pki.quote(report_data))["quote"]}
    ).encode()
    assert (await hardware.inputs("sgx", tdx_evidence)).tdx_collateral is None


def test_a_version_2_tcb_info_is_sgx() -> None:
    fields = {"tcb_info": '{"version":2,"fmspc":"00606A000000"}'}
    assert TdxCollateral(fields, 0, 0).tcb_info_id == "SGX"
    fields = {"tcb_info": '{"id":"TDX","version":3}'}
    assert TdxCollateral(fields, 0, 0).tcb_info_id == "TDX"
