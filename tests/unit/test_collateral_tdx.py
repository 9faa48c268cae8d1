"""TDX collateral sources against the dcap-qvl sample collateral, served by a loopback PCCS."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.shared import vector
from tests.unit.collateral_support import FakeClock, Reply, serve, slow
from trustee.collateral import (
    BundleFileSource,
    CachingSource,
    CollateralError,
    DirectorySource,
    PcsSource,
    TdxCollateral,
    tdx_source_from_settings,
)
from trustee.collateral.lazy import LazyTdxSource
from trustee.collateral.settings import tdx_collateral
from trustee.collateral.tdx import COLLATERAL_KEYS, raw_member
from trustee.config.errors import ConfigError
from trustee.config.reader import Table

SAMPLE = "dcap-qvl/sample/tdx_quote_collateral.json"
FMSPC = "B0C06F000000"
CA = "platform"

TCB_PATH = "/tdx/certification/v4/tcb"
QE_PATH = "/tdx/certification/v4/qe/identity"
PCK_CRL_PATH = "/sgx/certification/v4/pckcrl"
ROOT_CRL_PATH = "/sgx/certification/v4/rootcacrl"


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def sample() -> dict[str, str]:
    data: dict[str, str] = json.loads(vector(SAMPLE).read_text())
    return data


@pytest.fixture
def issued(sample: dict[str, str]) -> float:
    """One hour after the sample TCB info was issued: everything in it is valid then."""
    return _unix(json.loads(sample["tcb_info"])["issueDate"]) + 3600


def signed_json(member: str, body: str, signature: str) -> str:
    """Intel's response shape, with the signed text inserted verbatim."""
    return f'{{"{member}":{body},"signature":"{signature}"}}'


def pcs_routes(sample: dict[str, str], fail: list[bool] | None = None) -> dict[str, Any]:
    """The sample split into PCS v4 responses; ``fail[0]`` switches every route to HTTP 503."""

    def guard(reply: Reply) -> Reply:
        return (503, {}, b"maintenance") if fail and fail[0] else reply

    def tcb(path: str, query: dict[str, str]) -> Reply:
        if query.get("fmspc") != FMSPC:
            return 404, {}, b""
        body = signed_json("tcbInfo", sample["tcb_info"], sample["tcb_info_signature"])
        headers = {"TCB-Info-Issuer-Chain": quote(sample["tcb_info_issuer_chain"])}
        return guard((200, headers, body.encode()))

    def qe(path: str, query: dict[str, str]) -> Reply:
        body = signed_json(
            "enclaveIdentity", sample["qe_identity"], sample["qe_identity_signature"]
        )
        headers = {"SGX-Enclave-Identity-Issuer-Chain": quote(sample["qe_identity_issuer_chain"])}
        return guard((200, headers, body.encode()))

    def pck_crl(path: str, query: dict[str, str]) -> Reply:
        if query != {"ca": CA, "encoding": "der"}:
            return 400, {}, b"bad query"
        headers = {"SGX-PCK-CRL-Issuer-Chain": quote(sample["pck_crl_issuer_chain"])}
        return guard((200, headers, bytes.fromhex(sample["pck_crl"])))

    def root_crl(path: str, query: dict[str, str]) -> Reply:
        # PCCS answers the root CA CRL as hex text.
        return guard((200, {}, sample["root_ca_crl"].encode()))

    return {TCB_PATH: tcb, QE_PATH: qe, PCK_CRL_PATH: pck_crl, ROOT_CRL_PATH: root_crl}


# --------------------------------------------------------------------------- model


def test_collateral_round_trips_the_dcap_qvl_form(sample: dict[str, str]) -> None:
    collateral = TdxCollateral.from_fields(sample, fetched_at=1.0, origin="sample")
    assert json.loads(collateral.to_json_bytes()) == sample
    assert list(json.loads(collateral.to_json_bytes())) == list(COLLATERAL_KEYS)
    assert collateral.fmspc == FMSPC
    assert collateral.ca == CA
    # The earliest nextUpdate: the PCK CRL's, 15 minutes before the TCB info's.
    pck_crl = x509.load_der_x509_crl(bytes.fromhex(sample["pck_crl"]))
    assert pck_crl.next_update_utc is not None
    assert collateral.not_after == pck_crl.next_update_utc.timestamp()
    assert collateral.not_after < _unix(json.loads(sample["tcb_info"])["nextUpdate"])


def test_collateral_with_a_missing_member_is_refused(sample: dict[str, str]) -> None:
    del sample["pck_crl"]
    with pytest.raises(CollateralError, match="'pck_crl' is missing"):
        TdxCollateral.from_fields(sample, fetched_at=1.0, origin="sample")


def test_raw_member_keeps_the_served_bytes() -> None:
    text = '{ "tcbInfo" : {"b":1,  "a":[2, 3]} , "signature":"ab"}'
    assert raw_member(text, "tcbInfo", "t") == '{"b":1,  "a":[2, 3]}'
    with pytest.raises(CollateralError, match="'other' is missing"):
        raw_member(text, "other", "t")
    with pytest.raises(CollateralError, match="bad JSON"):
        raw_member('{"tcbInfo": {', "tcbInfo", "t")


# --------------------------------------------------------------------------- PCS / PCCS


async def test_pcs_assembly_equals_the_bundle(sample: dict[str, str], issued: float) -> None:
    with serve(pcs_routes(sample)) as server:
        # A path on the configured URL is discarded, as upstream does.
        source = PcsSource(server.url + "/sgx/certification/v4/", timeout=5, clock=lambda: issued)
        collateral = await source.get(FMSPC.lower(), CA)
    assert dict(collateral.fields) == sample
    assert collateral.fetched_at == issued
    assert any("update=early" in q for q in server.queries if q.startswith(TCB_PATH))


async def test_pcs_reports_a_missing_header(sample: dict[str, str]) -> None:
    routes = pcs_routes(sample)
    inner = routes[TCB_PATH]
    routes[TCB_PATH] = lambda p, q: (200, {}, inner(p, q)[2])
    with serve(routes) as server, pytest.raises(CollateralError) as caught:
        await PcsSource(server.url, timeout=5).get(FMSPC, CA)
    assert "lacks the TCB-Info-Issuer-Chain header" in str(caught.value)
    assert server.url in str(caught.value)


async def test_pcs_reports_status_and_bad_json(sample: dict[str, str]) -> None:
    routes = pcs_routes(sample)
    with serve(routes) as server:
        with pytest.raises(CollateralError, match=r"HTTP 404 \(collateral not available\)"):
            await PcsSource(server.url, timeout=5).get("00A06D080000", CA)
        routes[QE_PATH] = lambda p, q: (200, {"SGX-Enclave-Identity-Issuer-Chain": "x"}, b"{no")
        with pytest.raises(CollateralError, match=r"not a PEM certificate chain|bad JSON"):
            await PcsSource(server.url, timeout=5).get(FMSPC, CA)


async def test_pcs_timeout_is_an_error_within_the_timeout(sample: dict[str, str]) -> None:
    routes = pcs_routes(sample)
    routes[QE_PATH] = slow(3.0, routes[QE_PATH])
    with serve(routes) as server:
        started = trio.current_time()
        with pytest.raises(CollateralError, match=r"timed out|within"):
            await PcsSource(server.url, timeout=0.5).get(FMSPC, CA)
        assert trio.current_time() - started < 2.0


# --------------------------------------------------------------------------- cache


async def test_cache_hits_until_not_after_then_refetches(
    sample: dict[str, str], issued: float
) -> None:
    clock = FakeClock(issued)
    with serve(pcs_routes(sample)) as server:
        cache = CachingSource(PcsSource(server.url, timeout=5), clock, max_age=float("inf"))
        first = await cache.get(FMSPC, CA)
        clock.now = first.not_after - 1
        assert await cache.get(FMSPC, CA) is first
        assert server.counts[TCB_PATH] == 1
        clock.now = first.not_after
        again = await cache.get(FMSPC, CA)
        assert server.counts[TCB_PATH] == 2
        assert dict(again.fields) == sample


async def test_fifty_concurrent_gets_make_one_upstream_fetch(
    sample: dict[str, str], issued: float
) -> None:
    routes = {path: slow(0.2, handler) for path, handler in pcs_routes(sample).items()}
    results: list[TdxCollateral] = []
    with serve(routes) as server:
        cache = CachingSource(PcsSource(server.url, timeout=10), lambda: issued)

        async def one() -> None:
            results.append(await cache.get(FMSPC, CA))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(one)
    assert len(results) == 50
    assert all(r is results[0] for r in results)
    assert server.counts == {TCB_PATH: 1, QE_PATH: 1, PCK_CRL_PATH: 1, ROOT_CRL_PATH: 1}


async def test_concurrent_gets_share_one_failure(sample: dict[str, str]) -> None:
    routes = {path: slow(0.2, handler) for path, handler in pcs_routes(sample, [True]).items()}
    errors: list[str] = []
    with serve(routes) as server:
        cache = CachingSource(PcsSource(server.url, timeout=10))

        async def one() -> None:
            try:
                await cache.get(FMSPC, CA)
            except CollateralError as exc:
                errors.append(str(exc))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
    assert len(errors) == 20
    assert all("HTTP 503" in e for e in errors)
    assert server.counts[TCB_PATH] == 1


async def test_expired_collateral_with_failing_refresh_is_a_clear_error(
    sample: dict[str, str], issued: float
) -> None:
    clock = FakeClock(issued)
    fail = [False]
    with serve(pcs_routes(sample, fail)) as server:
        cache = CachingSource(PcsSource(server.url, timeout=5), clock)
        first = await cache.get(FMSPC, CA)
        fail[0] = True
        clock.now = first.not_after + 10
        with pytest.raises(CollateralError) as caught:
            await cache.get(FMSPC, CA)
    message = str(caught.value)
    assert "expired at 2025-07-19T10:00:35Z" in message
    assert "refresh failed" in message and "HTTP 503" in message


async def test_due_but_valid_collateral_survives_a_failed_refresh(
    sample: dict[str, str], issued: float
) -> None:
    clock = FakeClock(issued)
    fail = [False]
    with serve(pcs_routes(sample, fail)) as server:
        cache = CachingSource(PcsSource(server.url, timeout=5), clock, max_age=3600)
        first = await cache.get(FMSPC, CA)
        fail[0] = True
        clock.now = issued + 7200
        assert await cache.get(FMSPC, CA) is first
        assert await cache.get(FMSPC, CA) is first
        assert server.counts[TCB_PATH] == 2


# --------------------------------------------------------------------------- files


def _write_pcs_tool_json(sample: dict[str, str], path: Path) -> None:
    quoted = {k: quote(sample[k]) for k in ("tcb_info_issuer_chain", "qe_identity_issuer_chain")}
    document = {
        "collaterals": {
            "tcbinfos": [
                {
                    "fmspc": FMSPC.lower(),
                    "tdx_tcbinfo": {
                        "tcbInfo": json.loads(sample["tcb_info"]),
                        "signature": sample["tcb_info_signature"],
                    },
                }
            ],
            "pckcacrl": {"platformCrl": sample["pck_crl"], "processorCrl": sample["pck_crl"]},
            "tdqeidentity": {
                "enclaveIdentity": json.loads(sample["qe_identity"]),
                "signature": sample["qe_identity_signature"],
            },
            "certificates": {
                "TCB-Info-Issuer-Chain": quoted["tcb_info_issuer_chain"],
                "SGX-Enclave-Identity-Issuer-Chain": quoted["qe_identity_issuer_chain"],
                "SGX-PCK-Certificate-Issuer-Chain": {
                    "PLATFORM": quote(sample["pck_crl_issuer_chain"])
                },
            },
            "rootcacrl": sample["root_ca_crl"],
        }
    }
    path.write_text(json.dumps(document, indent=2))


async def test_bundle_file_in_both_forms(sample: dict[str, str], tmp_path: Path) -> None:
    source = BundleFileSource(vector(SAMPLE))
    assert dict((await source.get(FMSPC, CA)).fields) == sample
    with pytest.raises(CollateralError, match="FMSPC B0C06F000000, but FMSPC 00A06D080000"):
        await source.get("00A06D080000", CA)
    with pytest.raises(CollateralError, match="PCK CRL of the platform CA, but the processor"):
        await source.get(FMSPC, "processor")

    tool = tmp_path / "pcs-tool.json"
    _write_pcs_tool_json(sample, tool)
    assert dict((await BundleFileSource(tool).get(FMSPC, CA)).fields) == sample


def _write_pieces(sample: dict[str, str], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "tcbInfo.json").write_text(
        signed_json("tcbInfo", sample["tcb_info"], sample["tcb_info_signature"])
    )
    (folder / "enclaveIdentity.json").write_text(
        signed_json("enclaveIdentity", sample["qe_identity"], sample["qe_identity_signature"])
    )
    (folder / "tcb_info_issuer_chain.pem").write_text(sample["tcb_info_issuer_chain"])
    (folder / "pck_crl_issuer_chain_platform.pem").write_text(sample["pck_crl_issuer_chain"])
    (folder / "pck_crl_platform.der").write_bytes(bytes.fromhex(sample["pck_crl"]))
    root_pem = x509.load_der_x509_crl(bytes.fromhex(sample["root_ca_crl"])).public_bytes(
        Encoding.PEM
    )
    (folder / "root_ca_crl.pem").write_bytes(root_pem)


async def test_directory_of_pieces_equals_the_bundle(
    sample: dict[str, str], tmp_path: Path
) -> None:
    _write_pieces(sample, tmp_path)
    source = DirectorySource(tmp_path)
    assert dict((await source.get(FMSPC, CA)).fields) == sample
    with pytest.raises(CollateralError, match=r"pck_crl_issuer_chain_processor\.pem exists"):
        await source.get(FMSPC, "processor")


async def test_directory_prefers_a_per_fmspc_bundle(sample: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / f"{FMSPC}.json").write_text(json.dumps(sample))
    assert dict((await DirectorySource(tmp_path).get(FMSPC.lower(), CA)).fields) == sample


async def test_directory_with_upstream_tcb_info_keeps_signed_bytes(
    sample: dict[str, str], tmp_path: Path
) -> None:
    _write_pieces(sample, tmp_path)
    tcb_file = vector("trustee/deps/verifier/test_data/tcbInfo.json")
    qe_file = vector("trustee/deps/verifier/test_data/enclaveIdentity.json")
    (tmp_path / "tcbInfo.json").unlink()
    (tmp_path / "tcbInfo-00A06D080000.json").write_bytes(tcb_file.read_bytes())
    (tmp_path / "enclaveIdentity.json").write_bytes(qe_file.read_bytes())
    collateral = await DirectorySource(tmp_path).get("00a06d080000", CA)
    assert collateral.fields["tcb_info"] == raw_member(tcb_file.read_text(), "tcbInfo", "t")
    assert collateral.fields["qe_identity"] == raw_member(
        qe_file.read_text(), "enclaveIdentity", "t"
    )
    assert collateral.fmspc == "00A06D080000"


async def test_directory_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CollateralError, match=r"none of tcbInfo-B0C06F000000\.json, tcbInfo\.json"):
        await DirectorySource(tmp_path).get(FMSPC, CA)


async def test_directory_missing_a_file_names_every_file_it_must_hold(tmp_path: Path) -> None:
    with pytest.raises(CollateralError) as raised:
        await DirectorySource(tmp_path).get(FMSPC, "processor")
    assert str(raised.value).endswith(
        "; it must hold B0C06F000000.json, or tcbInfo.json (or tcbInfo-B0C06F000000.json), "
        "enclaveIdentity.json, tcb_info_issuer_chain.pem, pck_crl_processor.der (or .pem), "
        "pck_crl_issuer_chain_processor.pem and root_ca_crl.der (or .pem)"
    )


# --------------------------------------------------------------------------- config


def _tdx_source(table: dict[str, Any]) -> LazyTdxSource | None:
    settings = tdx_collateral(Table(table, ""))
    return None if settings is None else tdx_source_from_settings(settings)


def test_config_picks_the_source(tmp_path: Path) -> None:
    assert tdx_collateral(Table({}, "")) is None
    (tmp_path / "bundle.json").write_text("{}")
    assert "BundleFileSource" in repr(_tdx_source({"collateral": str(tmp_path / "bundle.json")}))
    assert "DirectorySource" in repr(_tdx_source({"collateral": str(tmp_path)}))
    assert "PcsSource('https://pccs.example:8081')" in repr(
        _tdx_source({"pccs_url": "https://pccs.example:8081/sgx/certification/v4/"})
    )
    upstream = _tdx_source({"dcap_verifier": {"tcb_update_type": "standard"}})
    assert "api.trustedservices.intel.com" in repr(upstream)
    file_url = {"dcap_verifier": {"collateral_service": f"file://{tmp_path / 'bundle.json'}"}}
    assert "BundleFileSource" in repr(_tdx_source(file_url))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"collateral": "/nonexistent/collateral"}, "collateral"),
        ({"pccs_url": "ftp://x"}, "pccs_url"),
        ({"collateral": "/", "pccs_url": "https://x"}, "collateral"),
        ({"collateral_timeout": 0}, "collateral_timeout"),
        ({"dcap_verifier": {"tcb_update_type": "late"}}, "dcap_verifier.tcb_update_type"),
        ({"tcb_update_type": "late"}, "tcb_update_type"),
        ({"dcap_verifier": "x"}, "dcap_verifier"),
        ({"dcap_verifier": {"use_secure_cert": "yes"}}, "dcap_verifier.use_secure_cert"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tdx_collateral(Table(table, ""))
    assert str(caught.value).startswith(key)
    assert "\n" not in str(caught.value)
