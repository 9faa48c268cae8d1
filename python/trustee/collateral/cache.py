"""Caches in front of collateral sources: keyed, validity-bounded and single-flight.

One slot per key holds the last value and a lock. Callers for a key queue on the lock, so
concurrent requests cause one upstream fetch; callers that queued behind a failed fetch get
that failure rather than retrying it one after another (a dead PCS must not be hit 50 times).

Expired values are never returned silently: past its validity a value is refetched, and when
that fails the error says when the value expired and why the refresh failed. A value that is
due for refresh (``max_age``) but still valid is served if the refresh fails, with a warning,
so a short PCS outage does not stop attestation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from trustee.collateral.errors import CollateralError
from trustee.collateral.http import utc_text
from trustee.collateral.snp import (
    VcekRequest,
    VekSource,
    certificate_not_after,
    chain_not_after,
)
from trustee.collateral.tdx import TdxCollateral, TdxCollateralSource

log = logging.getLogger(__name__)

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Upstream caps cached collateral at one week whatever its nextUpdate; Intel may publish a TCB
# recovery before nextUpdate.
DEFAULT_MAX_AGE = 168 * 3600.0
DEFAULT_MAX_ENTRIES = 4096
# After a failed refresh of a still-valid value, serve it this long before trying again.
RETRY_INTERVAL = 60.0


@dataclass
class _Slot(Generic[V]):
    lock: trio.Lock = field(default_factory=trio.Lock)
    value: V | None = None
    not_after: float = 0.0
    refresh_at: float = 0.0
    attempts: int = 0
    error: str | None = None


class SingleFlightCache(Generic[K, V]):
    def __init__(
        self,
        clock: Clock = time.time,
        max_age: float = DEFAULT_MAX_AGE,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if not max_age > 0:
            raise ValueError(f"cache max_age {max_age!r} is not a positive number")
        self._clock = clock
        self._max_age = max_age
        self._max_entries = max_entries
        self._slots: dict[K, _Slot[V]] = {}

    async def get(
        self,
        key: K,
        fetch: Callable[[], Awaitable[V]],
        expiry: Callable[[V], float],
        describe: str,
    ) -> V:
        slot = self._slot(key)
        seen = slot.attempts
        async with slot.lock:
            now = self._clock()
            if slot.value is not None and now < slot.refresh_at:
                return slot.value
            if slot.attempts != seen and slot.error is not None:
                raise CollateralError(slot.error)
            slot.attempts += 1
            try:
                value = await fetch()
            except CollateralError as exc:
                return self._refresh_failed(slot, now, exc, describe)
            slot.error = None
            not_after = expiry(value)
            if not_after > now:
                slot.value = value
                slot.not_after = not_after
                slot.refresh_at = min(not_after, now + self._max_age)
            else:
                # Already expired when fetched: hand it over (the verifier reports expiry) but
                # keep nothing, so the next request tries again.
                log.warning("%s: fetched value expired at %s", describe, utc_text(not_after))
                slot.value = None
            return value

    def _refresh_failed(self, slot: _Slot[V], now: float, exc: CollateralError, describe: str) -> V:
        if slot.value is not None and now < slot.not_after:
            log.warning(
                "%s: refresh failed, serving the cached value valid until %s: %s",
                describe,
                utc_text(slot.not_after),
                exc,
            )
            slot.refresh_at = min(slot.not_after, now + RETRY_INTERVAL)
            return slot.value
        if slot.value is not None:
            message = (
                f"{describe}: cached value expired at {utc_text(slot.not_after)} and the refresh "
                f"failed: {exc}"
            )
        else:
            message = str(exc)
        slot.error = message
        raise CollateralError(message) from exc

    def _slot(self, key: K) -> _Slot[V]:
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= self._max_entries:
                self._evict_idle()
            slot = self._slots[key] = _Slot()
        return slot

    def _evict_idle(self) -> None:
        # Oldest first (dict order); a slot someone holds or waits on stays.
        for key in list(self._slots):
            if len(self._slots) < self._max_entries:
                return
            slot = self._slots[key]
            if not slot.lock.locked() and slot.lock.statistics().tasks_waiting == 0:
                del self._slots[key]


class CachingSource:
    """Caches DCAP collateral by (TEE, FMSPC, CA) until its ``not_after`` (at most ``max_age``)."""

    def __init__(
        self,
        inner: TdxCollateralSource,
        clock: Clock = time.time,
        *,
        max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self.inner = inner
        self._cache: SingleFlightCache[tuple[str, str, str], TdxCollateral] = SingleFlightCache(
            clock, max_age
        )

    def __repr__(self) -> str:
        return f"CachingSource({self.inner!r})"

    async def get(self, fmspc: str, ca: str, tee: str = "tdx") -> TdxCollateral:
        # SGX and TDX platforms can share an FMSPC; their documents differ.
        key = (tee, fmspc.upper(), ca)
        return await self._cache.get(
            key,
            lambda: self.inner.get(fmspc, ca, tee),
            lambda collateral: collateral.not_after,
            f"{tee.upper()} collateral for FMSPC {key[1]} ({ca} CA) from {self.inner!r}",
        )


class CachingVekSource:
    """Caches VCEKs by request and ASK/ARK chains by product until their notAfter."""

    def __init__(self, inner: VekSource, clock: Clock = time.time) -> None:
        self.inner = inner
        # VCEKs are immutable for a chip and TCB: only their notAfter bounds the cache.
        self._vceks: SingleFlightCache[VcekRequest, bytes] = SingleFlightCache(clock, float("inf"))
        self._chains: SingleFlightCache[str, list[bytes]] = SingleFlightCache(clock, float("inf"))

    def __repr__(self) -> str:
        return f"CachingVekSource({self.inner!r})"

    async def vcek(self, req: VcekRequest) -> bytes:
        return await self._vceks.get(
            req,
            lambda: self.inner.vcek(req),
            lambda der: certificate_not_after(der) or 0.0,
            f"VCEK for {req.product} {req.hw_id[:16]}… from {self.inner!r}",
        )

    async def cert_chain(self, product: str) -> list[bytes]:
        chain = await self._chains.get(
            product,
            lambda: self.inner.cert_chain(product),
            chain_not_after,
            f"{product} ASK/ARK chain from {self.inner!r}",
        )
        return list(chain)
