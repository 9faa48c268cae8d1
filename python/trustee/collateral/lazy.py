"""Collateral sources built on their first request.

Every server with an attestation service has TDX and SNP sources (Intel PCS and AMD KDS by
default), yet most never see TDX or SNP evidence. The configuration is checked when the server
starts; the source classes, and the HTTP client they fetch with, load only when evidence first
needs them. Building involves no I/O, so doing it inside the first request costs that request
only the imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    # The protocols are named in quotes below: the base classes are evaluated at run time.
    from trustee.collateral.snp import VcekRequest, VekSource  # noqa: F401
    from trustee.collateral.tdx import TdxCollateral, TdxCollateralSource  # noqa: F401

S = TypeVar("S")


class _Lazy(Generic[S]):
    def __init__(self, build: Callable[[], S]) -> None:
        self._build: Callable[[], S] | None = build
        self._source: S | None = None

    @property
    def built(self) -> bool:
        return self._source is not None

    @property
    def source(self) -> S:
        # No await between the check and the assignment: concurrent first requests on the
        # event loop cannot build two sources (and two caches).
        if self._source is None:
            assert self._build is not None
            self._source, self._build = self._build(), None
        return self._source

    def __repr__(self) -> str:
        # What is (or will be) asked, as the built source names it; building has no I/O.
        return repr(self.source)


class LazyTdxSource(_Lazy["TdxCollateralSource"]):
    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        return await self.source.get(fmspc, ca, tee)


class LazyVekSource(_Lazy["VekSource"]):
    async def vcek(self, req: VcekRequest) -> bytes:
        return await self.source.vcek(req)

    async def cert_chain(self, product: str) -> list[bytes]:
        return await self.source.cert_chain(product)
