"""Collateral sources from the attestation service's verifier configuration.

TDX (first match wins):

* ``collateral = "<path>"``: a bundle file (dcap-qvl form or Intel PCS client tool JSON) or a
  directory (layout in :mod:`trustee.collateral.tdx_sources`);
* ``pccs_url = "<url>"``: an Intel PCS or PCCS service;
* upstream's ``[dcap_verifier]`` table: ``collateral_service`` (an http(s) URL, or
  ``file:///path.json``; default Intel PCS), ``tcb_update_type`` (``early`` | ``standard``,
  default ``early``); ``use_secure_cert`` is accepted and unused, as upstream.

``collateral_timeout`` (seconds, default 30) bounds one PCS/PCCS fetch; ``tcb_update_type`` may
also be given at the top level.

SNP: ``vek_dir`` (a local VEK directory, tried first) and ``kds_url`` (AMD KDS), plus upstream's
``[snp_verifier] vcek_sources = [{type = "OfflineStore", path = …}, {type = "KDS", base_url = …}]``
(default ``[{type = "KDS"}]`` when the table is present), tried in that order;
``kds_timeout`` (default 30) and ``kds_min_interval`` (default 1) shape KDS requests.

Each function returns None when the table configures no source for its TEE. A bad value is a
ValueError now; the source itself (wrapped in a cache) is built on its first request, so that
checking a configuration loads neither the sources nor their HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from trustee.collateral.lazy import LazyTdxSource, LazyVekSource
from trustee.collateral.spec import (
    INTEL_PCS_URL,
    KDS_URL,
    UPDATE_TYPES,
    kds_base_url,
    pcs_url_parts,
)

if TYPE_CHECKING:
    from trustee.collateral.snp import VekSource
    from trustee.collateral.tdx import TdxCollateralSource

DEFAULT_OFFLINE_STORE = "/opt/confidential-containers/attestation-service/kds-store"


def tdx_source_from_config(table: Mapping[str, Any]) -> LazyTdxSource | None:
    dcap = _table(table, "dcap_verifier")
    timeout = _positive(table, "collateral_timeout", 30.0)
    update = _string(table, "tcb_update_type", None)
    update_key = "tcb_update_type"
    if dcap is not None:
        _boolean(dcap, "use_secure_cert", "dcap_verifier.")
        if dcap.get("tcb_update_type") is not None:
            update = _string(dcap, "tcb_update_type", None, "dcap_verifier.")
            update_key = "dcap_verifier.tcb_update_type"
    update = update or "early"
    if update not in UPDATE_TYPES:
        raise ValueError(f"{update_key}: {update!r} is neither 'early' nor 'standard'")

    collateral = _string(table, "collateral", None)
    pccs_url = _string(table, "pccs_url", None)
    if collateral is not None and pccs_url is not None:
        raise ValueError("collateral: set either 'collateral' (a path) or 'pccs_url', not both")
    if collateral is not None:
        return _cached_tdx(_local_tdx_source(collateral, update, "collateral"))
    if pccs_url is not None:
        return _cached_tdx(_pcs(pccs_url, timeout, update, "pccs_url"))
    if dcap is None:
        return None
    service = _string(dcap, "collateral_service", None, "dcap_verifier.") or INTEL_PCS_URL
    if service.startswith("file://"):
        path = unquote(urlsplit(service).path)
        return _cached_tdx(_local_tdx_source(path, update, "dcap_verifier.collateral_service"))
    return _cached_tdx(_pcs(service, timeout, update, "dcap_verifier.collateral_service"))


def vek_source_from_config(table: Mapping[str, Any]) -> LazyVekSource | None:
    timeout = _positive(table, "kds_timeout", 30.0)
    min_interval = _non_negative(table, "kds_min_interval", 1.0)
    sources: list[Callable[[], VekSource]] = []
    vek_dir = _string(table, "vek_dir", None)
    if vek_dir is not None:
        sources.append(_vek_dir(vek_dir))
    kds_url = _string(table, "kds_url", None)
    if kds_url is not None:
        sources.append(_kds(kds_url, timeout, min_interval, "kds_url"))
    snp = _table(table, "snp_verifier")
    if snp is not None:
        entries = snp.get("vcek_sources", [{"type": "KDS"}])
        if not isinstance(entries, list):
            raise ValueError("snp_verifier.vcek_sources: expected a list of tables")
        for index, entry in enumerate(entries):
            key = f"snp_verifier.vcek_sources[{index}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{key}: expected a table with 'type'")
            kind = entry.get("type")
            if kind == "OfflineStore":
                path = _string(entry, "path", None, key + ".") or DEFAULT_OFFLINE_STORE
                sources.append(_vek_dir(path))
            elif kind == "KDS":
                url = _string(entry, "base_url", None, key + ".") or KDS_URL
                sources.append(_kds(url, timeout, min_interval, key + ".base_url"))
            else:
                raise ValueError(f"{key}.type: {kind!r} is neither 'OfflineStore' nor 'KDS'")
    if not sources:
        return None
    return LazyVekSource(lambda: _cached_vek(sources))


# Each helper checks its values now and returns what builds the source later; the imports sit
# in the builders so that only evidence that needs a source loads it.


def _cached_tdx(build: Callable[[], TdxCollateralSource]) -> LazyTdxSource:
    def cached() -> TdxCollateralSource:
        from trustee.collateral.cache import CachingSource

        return CachingSource(build())

    return LazyTdxSource(cached)


def _cached_vek(sources: list[Callable[[], VekSource]]) -> VekSource:
    from trustee.collateral.cache import CachingVekSource
    from trustee.collateral.snp import FallbackVekSource

    built = [build() for build in sources]
    return CachingVekSource(built[0] if len(built) == 1 else FallbackVekSource(built))


def _local_tdx_source(path: str, update: str, key: str) -> Callable[[], TdxCollateralSource]:
    location = Path(path)
    if location.is_dir():

        def directory() -> TdxCollateralSource:
            from trustee.collateral.tdx_sources import DirectorySource

            return DirectorySource(location)

        return directory
    if location.is_file():

        def bundle() -> TdxCollateralSource:
            from trustee.collateral.tdx_sources import BundleFileSource

            return BundleFileSource(location, update=update)

        return bundle
    raise ValueError(f"{key}: {path!r} is neither a file nor a directory")


def _pcs(url: str, timeout: float, update: str, key: str) -> Callable[[], TdxCollateralSource]:
    try:
        pcs_url_parts(url)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None

    def pcs() -> TdxCollateralSource:
        from trustee.collateral.tdx_sources import PcsSource

        return PcsSource(url, None, timeout, update=update)

    return pcs


def _vek_dir(path: str) -> Callable[[], VekSource]:
    def directory() -> VekSource:
        from trustee.collateral.snp import DirectoryVekSource

        return DirectoryVekSource(path)

    return directory


def _kds(url: str, timeout: float, min_interval: float, key: str) -> Callable[[], VekSource]:
    try:
        kds_base_url(url)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None

    def kds() -> VekSource:
        from trustee.collateral.snp import KdsSource

        return KdsSource(url, None, timeout, min_interval)

    return kds


def _table(table: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a table, got {type(value).__name__}")
    return value


def _string(
    table: Mapping[str, Any], key: str, default: str | None, prefix: str = ""
) -> str | None:
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise ValueError(f"{prefix}{key}: expected a non-empty string, got {value!r}")
    return value


def _boolean(table: Mapping[str, Any], key: str, prefix: str = "") -> None:
    value = table.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{prefix}{key}: expected true or false, got {value!r}")


def _number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: expected a number of seconds, got {value!r}")
    return float(value)


def _positive(table: Mapping[str, Any], key: str, default: float) -> float:
    value = _number(table, key, default)
    if not value > 0:
        raise ValueError(f"{key}: expected a positive number of seconds, got {value!r}")
    return value


def _non_negative(table: Mapping[str, Any], key: str, default: float) -> float:
    value = _number(table, key, default)
    if not value >= 0:
        raise ValueError(f"{key}: expected zero or more seconds, got {value!r}")
    return value
