"""Collateral for hardware-evidence verification: TDX (PCS/PCCS, bundle, directory) and SNP
endorsement keys (AMD KDS, directory), each behind a Protocol with caching wrappers."""

from trustee.collateral.cache import CachingSource, CachingVekSource
from trustee.collateral.config import tdx_source_from_config, vek_source_from_config
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
    "tdx_source_from_config",
    "vek_source_from_config",
]
