"""Where collateral comes from, read from the attestation service's verifier configuration.

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

Reading checks every value and builds nothing: :mod:`trustee.collateral.build` makes the sources
from these settings, and they load their classes (and HTTP client) on their first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from trustee.collateral.spec import (
    INTEL_PCS_URL,
    KDS_URL,
    UPDATE_TYPES,
    kds_base_url,
    pcs_url_parts,
)
from trustee.config.errors import ConfigError
from trustee.config.reader import Table

DEFAULT_OFFLINE_STORE = "/opt/confidential-containers/attestation-service/kds-store"


@dataclass(frozen=True)
class TdxCollateralSettings:
    """A collateral directory, a bundle file, or a PCS/PCCS service at `location`."""

    kind: Literal["directory", "bundle", "pcs"]
    location: str
    update: str = "early"
    timeout: float = 30.0  # seconds per PCS/PCCS fetch


@dataclass(frozen=True)
class VekSourceSettings:
    """A VEK directory or an AMD KDS at `location`."""

    kind: Literal["directory", "kds"]
    location: str


@dataclass(frozen=True)
class SnpCollateralSettings:
    sources: tuple[VekSourceSettings, ...]  # tried in this order
    kds_timeout: float = 30.0
    kds_min_interval: float = 1.0


# Upstream's defaults when the configuration names no source.
INTEL_PCS = TdxCollateralSettings("pcs", INTEL_PCS_URL)
AMD_KDS = SnpCollateralSettings((VekSourceSettings("kds", KDS_URL),))


def tdx_collateral(t: Table) -> TdxCollateralSettings | None:
    """The TDX collateral `t` configures; None when it names none."""
    dcap = t.table("dcap_verifier")
    timeout = _positive(t, "collateral_timeout", 30.0)
    update = _text(t, "tcb_update_type")
    given_in = t  # the table whose tcb_update_type counts: [dcap_verifier]'s wins
    if dcap is not None:
        _flag(dcap, "use_secure_cert")
        if dcap.data.get("tcb_update_type") is not None:
            update, given_in = _text(dcap, "tcb_update_type"), dcap
    update = update or "early"
    if update not in UPDATE_TYPES:
        raise given_in.error("tcb_update_type", f"{update!r} is neither 'early' nor 'standard'")

    collateral = _text(t, "collateral")
    pccs_url = _text(t, "pccs_url")
    if collateral is not None and pccs_url is not None:
        raise t.error("collateral", "set either 'collateral' (a path) or 'pccs_url', not both")
    if collateral is not None:
        return local_tdx_collateral(collateral, update, t.key("collateral"))
    if pccs_url is not None:
        return _pcs(t, "pccs_url", pccs_url, timeout, update)
    if dcap is None:
        return None
    service = _text(dcap, "collateral_service") or INTEL_PCS_URL
    if service.startswith("file://"):
        path = unquote(urlsplit(service).path)
        return local_tdx_collateral(path, update, dcap.key("collateral_service"))
    return _pcs(dcap, "collateral_service", service, timeout, update)


def local_tdx_collateral(path: str, update: str, key: str) -> TdxCollateralSettings:
    """Collateral in a directory or a bundle file; `key` names where the path was given."""
    location = Path(path)
    if location.is_dir():
        return TdxCollateralSettings("directory", path, update)
    if location.is_file():
        return TdxCollateralSettings("bundle", path, update)
    raise ConfigError(key, f"{path!r} is neither a file nor a directory")


def snp_collateral(t: Table) -> SnpCollateralSettings | None:
    """Where `t` says SNP VEKs come from; None when it names nowhere."""
    timeout = _positive(t, "kds_timeout", 30.0)
    min_interval = _number(t, "kds_min_interval", 1.0)
    if not min_interval >= 0:
        raise t.error("kds_min_interval", f"expected zero or more seconds, got {min_interval!r}")
    sources: list[VekSourceSettings] = []
    vek_dir = _text(t, "vek_dir")
    if vek_dir is not None:
        sources.append(VekSourceSettings("directory", vek_dir))
    kds_url = _text(t, "kds_url")
    if kds_url is not None:
        sources.append(_kds(t, "kds_url", kds_url))
    snp = t.table("snp_verifier")
    if snp is not None and not snp.has("vcek_sources"):
        sources.append(AMD_KDS.sources[0])  # upstream's default list: [{type = "KDS"}]
    elif snp is not None:
        for entry in snp.tables("vcek_sources"):
            kind = entry.data.get("type")
            if kind == "OfflineStore":
                path = _text(entry, "path") or DEFAULT_OFFLINE_STORE
                sources.append(VekSourceSettings("directory", path))
            elif kind == "KDS":
                sources.append(_kds(entry, "base_url", _text(entry, "base_url") or KDS_URL))
            else:
                raise entry.error("type", f"{kind!r} is neither 'OfflineStore' nor 'KDS'")
    if not sources:
        return None
    return SnpCollateralSettings(tuple(sources), timeout, min_interval)


def _pcs(t: Table, name: str, url: str, timeout: float, update: str) -> TdxCollateralSettings:
    try:
        pcs_url_parts(url)
    except ValueError as exc:
        raise t.error(name, str(exc)) from None
    return TdxCollateralSettings("pcs", url, update, timeout)


def _kds(t: Table, name: str, url: str) -> VekSourceSettings:
    try:
        kds_base_url(url)
    except ValueError as exc:
        raise t.error(name, str(exc)) from None
    return VekSourceSettings("kds", url)


def _text(t: Table, name: str) -> str | None:
    value = t.data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise t.error(name, f"expected a non-empty string, got {value!r}")
    return value


def _flag(t: Table, name: str) -> None:
    value = t.data.get(name)
    if value is not None and not isinstance(value, bool):
        raise t.error(name, f"expected true or false, got {value!r}")


def _number(t: Table, name: str, default: float) -> float:
    value = t.data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise t.error(name, f"expected a number of seconds, got {value!r}")
    return float(value)


def _positive(t: Table, name: str, default: float) -> float:
    value = _number(t, name, default)
    if not value > 0:
        raise t.error(name, f"expected a positive number of seconds, got {value!r}")
    return value
