"""Collateral for hardware-evidence verification: TDX (PCS/PCCS, bundle, directory) and SNP
endorsement keys (AMD KDS, directory), each behind a Protocol with caching wrappers.

Names load their module on first use: a server that never sees TDX or SNP evidence imports
only the configuration reader, not the sources or the HTTP client they fetch with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustee.lazy_names import lazy_names

if TYPE_CHECKING:
    from trustee.collateral.build import tdx_source_from_settings, vek_source_from_settings
    from trustee.collateral.cache import CachingSource, CachingVekSource
    from trustee.collateral.errors import CollateralError
    from trustee.collateral.snp import (
        DirectoryVekSource,
        FallbackVekSource,
        KdsSource,
        VcekRequest,
        VekSource,
    )
    from trustee.collateral.tdx import TdxCollateral, TdxCollateralSource
    from trustee.collateral.tdx_sources import BundleFileSource, DirectorySource, PcsSource

_MODULES = {
    "BundleFileSource": "tdx_sources",
    "CachingSource": "cache",
    "CachingVekSource": "cache",
    "CollateralError": "errors",
    "DirectorySource": "tdx_sources",
    "DirectoryVekSource": "snp",
    "FallbackVekSource": "snp",
    "KdsSource": "snp",
    "PcsSource": "tdx_sources",
    "TdxCollateral": "tdx",
    "TdxCollateralSource": "tdx",
    "VcekRequest": "snp",
    "VekSource": "snp",
    "tdx_source_from_settings": "build",
    "vek_source_from_settings": "build",
}

__all__ = [
    "BundleFileSource",
    "CachingSource",
    "CachingVekSource",
    "CollateralError",
    "DirectorySource",
    "DirectoryVekSource",
    "FallbackVekSource",
    "KdsSource",
    "PcsSource",
    "TdxCollateral",
    "TdxCollateralSource",
    "VcekRequest",
    "VekSource",
    "tdx_source_from_settings",
    "vek_source_from_settings",
]


__getattr__ = lazy_names(__name__, _MODULES)
