"""Collateral sources from their settings (trustee.collateral.settings).

Each source, wrapped in a cache, is built on its first request: building here imports neither
the source classes nor the HTTP client they fetch with, so a server that never sees TDX or SNP
evidence never loads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trustee.collateral.lazy import LazyTdxSource, LazyVekSource
from trustee.collateral.settings import SnpCollateralSettings, TdxCollateralSettings

if TYPE_CHECKING:
    from trustee.collateral.snp import VekSource
    from trustee.collateral.tdx import TdxCollateralSource


def tdx_source_from_settings(
    settings: TdxCollateralSettings, clock: Callable[[], float] = time.time
) -> LazyTdxSource:
    """`clock` judges what the cache holds; `trustee verify --at` moves it."""

    def build() -> TdxCollateralSource:
        from trustee.collateral.cache import CachingSource
        from trustee.collateral.tdx_sources import BundleFileSource, DirectorySource, PcsSource

        source: TdxCollateralSource
        if settings.kind == "directory":
            source = DirectorySource(settings.location)
        elif settings.kind == "bundle":
            source = BundleFileSource(settings.location, update=settings.update)
        else:
            source = PcsSource(settings.location, None, settings.timeout, update=settings.update)
        return CachingSource(source, clock)

    return LazyTdxSource(build)


def vek_source_from_settings(
    settings: SnpCollateralSettings, clock: Callable[[], float] = time.time
) -> LazyVekSource:
    def build() -> VekSource:
        from trustee.collateral.cache import CachingVekSource
        from trustee.collateral.snp import DirectoryVekSource, FallbackVekSource, KdsSource

        built: list[VekSource] = [
            DirectoryVekSource(one.location)
            if one.kind == "directory"
            else KdsSource(one.location, None, settings.kds_timeout, settings.kds_min_interval)
            for one in settings.sources
        ]
        return CachingVekSource(built[0] if len(built) == 1 else FallbackVekSource(built), clock)

    return LazyVekSource(build)
