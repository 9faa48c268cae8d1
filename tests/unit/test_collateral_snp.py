"""SNP VEK sources against the Milan test VCEK and AMD chain, served by a loopback KDS."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.shared import vector
from tests.unit.collateral_support import Reply, serve, slow
from trustee.collateral import (
    CachingVekSource,
    CollateralError,
    DirectoryVekSource,
    FallbackVekSource,
    KdsSource,
    VcekRequest,
    vek_source_from_settings,
)
from trustee.collateral.lazy import LazyVekSource
from trustee.collateral.settings import snp_collateral
from trustee.config.errors import ConfigError
from trustee.config.reader import Table

VCEK = "trustee/deps/verifier/test_data/snp/test-vcek.der"
REPORT = "trustee/deps/verifier/test_data/snp/test-report.bin"
MILAN_PEM = "trustee/deps/verifier/src/snp/milan_ask_ark_asvk.pem"
CHAIN_PATH = "/vcek/v1/Milan/cert_chain"


@pytest.fixture
def request_for_report() -> VcekRequest:
    """The VCEK request for the Milan test report: its CHIP_ID and REPORTED_TCB."""
    report = vector(REPORT).read_bytes()
    tcb = report[0x180:0x188]
    return VcekRequest(
        product="Milan",
        hw_id=report[0x1A0:0x1E0].hex(),
        bl=tcb[0],
        tee=tcb[1],
        snp=tcb[6],
        microcode=tcb[7],
    )


@pytest.fixture
def ask_ark_pem() -> bytes:
    """What KDS serves as cert_chain: ASK then ARK (the vendor file adds an ASVK last)."""
    certs = x509.load_pem_x509_certificates(vector(MILAN_PEM).read_bytes())
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs[:2])


def kds_routes(ask_ark_pem: bytes, vcek_handler: Any = None) -> dict[str, Any]:
    vcek = vector(VCEK).read_bytes()

    def serve_vcek(path: str, query: dict[str, str]) -> Reply:
        return 200, {"Content-Type": "application/octet-stream"}, vcek

    return {
        CHAIN_PATH: lambda p, q: (200, {"Content-Type": "application/x-pem-file"}, ask_ark_pem),
        "/vcek/v1/Milan/": vcek_handler or serve_vcek,
    }


# --------------------------------------------------------------------------- request


def test_request_builds_kds_url_parts(request_for_report: VcekRequest) -> None:
    assert request_for_report.kds_path() == f"/vcek/v1/Milan/{request_for_report.hw_id}"
    assert request_for_report.kds_params() == {
        "blSPL": "03",
        "teeSPL": "00",
        "snpSPL": "08",
        "ucodeSPL": "115",
    }
    assert request_for_report.file_name() == "bl03_tee00_snp08_ucode115_vcek.der"
    turin = VcekRequest("Turin", "0011223344556677", 1, 2, 3, 4, fmc=5)
    assert list(turin.kds_params()) == ["fmcSPL", "blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
    assert turin.file_name() == "bl01_tee02_snp03_ucode04_fmc05_vcek.der"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("Rome", "ab" * 64, 1, 2, 3, 4), "product 'Rome'"),
        (("Milan", "ab" * 8, 1, 2, 3, 4), "128 hex digits"),
        (("Turin", "ab" * 64, 1, 2, 3, 4), "16 hex digits"),
        (("Milan", "00" * 64, 1, 2, 3, 4), "all zero"),
        (("Milan", "ab" * 64, 256, 2, 3, 4), "bl=256"),
        (("Turin", "ab" * 8, 1, 2, 3, 4), "needs the FMC SPL"),
    ],
)
def test_request_rejects_bad_input(args: tuple[Any, ...], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        VcekRequest(*args)


# --------------------------------------------------------------------------- KDS


async def test_kds_serves_vcek_and_chain(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    with serve(kds_routes(ask_ark_pem)) as server:
        kds = KdsSource(server.url, timeout=5, min_interval=0)
        assert await kds.vcek(request_for_report) == vector(VCEK).read_bytes()
        ask, ark = await kds.cert_chain("Milan")
    assert x509.load_der_x509_certificate(ask).subject.rfc4514_string().startswith("CN=SEV-Milan")
    assert x509.load_der_x509_certificate(ark).subject.rfc4514_string().startswith("CN=ARK-Milan")
    vcek_query = next(q for q in server.queries if "SPL" in q)
    assert vcek_query.endswith("?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115")


async def test_kds_429_with_retry_after_then_success(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    vcek = vector(VCEK).read_bytes()
    calls = [0]

    def limited(path: str, query: dict[str, str]) -> Reply:
        calls[0] += 1
        if calls[0] == 1:
            return 429, {"Retry-After": "1"}, b"slow down"
        return 200, {}, vcek

    with serve(kds_routes(ask_ark_pem, limited)) as server:
        started = trio.current_time()
        got = await KdsSource(server.url, timeout=10, min_interval=0).vcek(request_for_report)
        elapsed = trio.current_time() - started
    assert got == vcek
    assert calls[0] == 2
    assert 1.0 <= elapsed < 5.0


async def test_kds_retry_after_beyond_the_timeout_fails_at_once(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    routes = kds_routes(ask_ark_pem, lambda p, q: (429, {"Retry-After": "120"}, b""))
    with serve(routes) as server:
        started = trio.current_time()
        with pytest.raises(CollateralError) as caught:
            await KdsSource(server.url, timeout=3, min_interval=0).vcek(request_for_report)
        assert trio.current_time() - started < 2.0
    message = str(caught.value)
    assert "HTTP 429" in message and "Retry-After '120'" in message and "3 s timeout" in message


async def test_kds_timeout_is_an_error_within_the_timeout(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    routes = kds_routes(ask_ark_pem)
    routes["/vcek/v1/Milan/"] = slow(5.0, routes["/vcek/v1/Milan/"])
    with serve(routes) as server:
        started = trio.current_time()
        with pytest.raises(CollateralError, match=r"timed out after|within the 0\.5 s timeout"):
            await KdsSource(server.url, timeout=0.5, min_interval=0).vcek(request_for_report)
        assert trio.current_time() - started < 1.5


async def test_kds_reports_status_and_non_certificates(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    routes = kds_routes(ask_ark_pem, lambda p, q: (404, {}, b"unknown chip"))
    with serve(routes) as server:
        kds = KdsSource(server.url, timeout=5, min_interval=0)
        with pytest.raises(CollateralError, match=r"HTTP 404 .*unknown chip"):
            await kds.vcek(request_for_report)
        routes["/vcek/v1/Milan/"] = lambda p, q: (200, {}, b"<html>oops</html>")
        with pytest.raises(CollateralError, match="not a DER certificate"):
            await kds.vcek(request_for_report)


async def test_kds_spaces_requests_by_min_interval(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    with serve(kds_routes(ask_ark_pem)) as server:
        kds = KdsSource(server.url, timeout=5, min_interval=0.3)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(kds.vcek, request_for_report)
        assert trio.current_time() - started >= 0.6
        assert server.counts[f"/vcek/v1/Milan/{request_for_report.hw_id}"] == 3


async def test_concurrent_identical_vcek_requests_make_one_fetch(
    request_for_report: VcekRequest, ask_ark_pem: bytes
) -> None:
    routes = kds_routes(ask_ark_pem)
    routes["/vcek/v1/Milan/"] = slow(0.2, routes["/vcek/v1/Milan/"])
    results: list[bytes] = []
    with serve(routes) as server:
        cache = CachingVekSource(KdsSource(server.url, timeout=5, min_interval=0))

        async def one() -> None:
            results.append(await cache.vcek(request_for_report))

        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(one)
            for _ in range(5):
                nursery.start_soon(cache.cert_chain, "Milan")
        assert await cache.vcek(request_for_report) == results[0]
    assert len(results) == 40 and len(set(results)) == 1
    assert server.counts[f"/vcek/v1/Milan/{request_for_report.hw_id}"] == 1
    assert server.counts[CHAIN_PATH] == 1


# --------------------------------------------------------------------------- directory


async def test_directory_vek_source(request_for_report: VcekRequest, tmp_path: Path) -> None:
    folder = tmp_path / "vcek" / request_for_report.hw_id
    folder.mkdir(parents=True)
    shutil.copyfile(vector(VCEK), folder / request_for_report.file_name())
    shutil.copyfile(vector(MILAN_PEM), tmp_path / "milan_ask_ark_asvk.pem")
    source = DirectoryVekSource(tmp_path)
    assert await source.vcek(request_for_report) == vector(VCEK).read_bytes()
    ask, ark = await source.cert_chain("Milan")
    assert "SEV-Milan" in x509.load_der_x509_certificate(ask).subject.rfc4514_string()
    assert "ARK-Milan" in x509.load_der_x509_certificate(ark).subject.rfc4514_string()

    other_tcb = VcekRequest("Milan", request_for_report.hw_id, 4, 0, 8, 115)
    with pytest.raises(CollateralError, match=r"bl04_tee00_snp08_ucode115_vcek\.der nor"):
        await source.vcek(other_tcb)
    (folder / "vcek.der").write_bytes(vector(VCEK).read_bytes())
    assert await source.vcek(other_tcb) == vector(VCEK).read_bytes()
    with pytest.raises(CollateralError, match=r"none of Genoa\.pem, genoa_ask_ark_asvk\.pem"):
        await source.cert_chain("Genoa")


async def test_fallback_tries_sources_in_order(
    request_for_report: VcekRequest, ask_ark_pem: bytes, tmp_path: Path
) -> None:
    with serve(kds_routes(ask_ark_pem)) as server:
        source = FallbackVekSource(
            [DirectoryVekSource(tmp_path), KdsSource(server.url, timeout=5, min_interval=0)]
        )
        assert await source.vcek(request_for_report) == vector(VCEK).read_bytes()
    with pytest.raises(CollateralError, match="no VEK source had the VCEK: VEK directory"):
        await FallbackVekSource([DirectoryVekSource(tmp_path)]).vcek(request_for_report)


# --------------------------------------------------------------------------- config


def _vek_source(table: dict[str, Any]) -> LazyVekSource | None:
    settings = snp_collateral(Table(table, ""))
    return None if settings is None else vek_source_from_settings(settings)


def test_vek_config_picks_sources() -> None:
    assert snp_collateral(Table({}, "")) is None
    assert "KdsSource('https://kdsintf.amd.com')" in repr(_vek_source({"snp_verifier": {}}))
    both = repr(_vek_source({"vek_dir": "/srv/vek", "kds_url": "https://kds.example/"}))
    assert "Fallback" in both and both.index("/srv/vek") < both.index("kds.example")
    upstream = _vek_source(
        {"snp_verifier": {"vcek_sources": [{"type": "OfflineStore"}, {"type": "KDS"}]}}
    )
    assert "kds-store" in repr(upstream) and "kdsintf.amd.com" in repr(upstream)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"kds_url": "kds.example"}, "kds_url"),
        ({"kds_url": 5}, "kds_url"),
        ({"kds_timeout": -1, "kds_url": "https://x"}, "kds_timeout"),
        ({"kds_min_interval": -1}, "kds_min_interval"),
        ({"snp_verifier": {"vcek_sources": {}}}, "snp_verifier.vcek_sources"),
        (
            {"snp_verifier": {"vcek_sources": [{"type": "Web"}]}},
            "snp_verifier.vcek_sources[0].type",
        ),
    ],
)
def test_vek_config_errors_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        snp_collateral(Table(table, ""))
    assert str(caught.value).startswith(key)
