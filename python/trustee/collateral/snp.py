"""SEV-SNP endorsement keys: VCEKs and the ASK/ARK chain, from AMD KDS or a local directory.

**AMD KDS** (:class:`KdsSource`): ``GET {base}/vcek/v1/{product}/{hw_id}`` with the reported TCB
as ``blSPL``, ``teeSPL``, ``snpSPL``, ``ucodeSPL`` (Turin: ``fmcSPL`` first and an 8-byte
hw_id), answering DER; ``GET {base}/vcek/v1/{product}/cert_chain`` answers ASK then ARK as PEM.
KDS rate-limits per client, so requests are spaced by ``min_interval`` and a 429 is retried
after its ``Retry-After`` — but only while the overall ``timeout`` allows: a KDS failure is an
error, never a hang.

**Directory** (:class:`DirectoryVekSource`), the layout of upstream's offline KDS store::

    <dir>/vcek/<hw_id>/bl<BB>_tee<TT>_snp<SS>_ucode<UU>[_fmc<FF>]_vcek.der
    <dir>/vcek/<hw_id>/vcek.der                  used when the TCB-specific file is absent
    <dir>/<Product>.pem                          ASK and ARK (e.g. Milan.pem), or upstream's
    <dir>/<product>_ask_ark_asvk.pem             vendor file; an ASVK in it is ignored

SPLs are decimal, zero-padded to two digits; ``hw_id`` is lower-case hex.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustee.collateral.errors import CollateralError
from trustee.collateral.http import expect_ok, http_get, retry_after_seconds
from trustee.collateral.spec import KDS_URL, PRODUCTS, kds_base_url

if TYPE_CHECKING:
    import httpx

_T = TypeVar("_T")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
# Without a Retry-After, wait this long before retrying a 429 (doubling each time).
_DEFAULT_BACKOFF = 1.0


@dataclass(frozen=True)
class VcekRequest:
    """Which VCEK to fetch: the chip and the TCB the report was signed under."""

    product: str
    hw_id: str
    bl: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            raise ValueError(f"SNP product {self.product!r} is not one of {', '.join(PRODUCTS)}")
        digits = 16 if self.product == "Turin" else 128
        if len(self.hw_id) != digits or not _HEX.match(self.hw_id):
            raise ValueError(
                f"hw_id for {self.product} must be {digits} hex digits, got {len(self.hw_id)} "
                f"characters: {self.hw_id[:32]!r}"
            )
        if set(self.hw_id) == {"0"}:
            raise ValueError("hw_id is all zero (the report's CHIP_ID is masked); no VCEK exists")
        spls = {"bl": self.bl, "tee": self.tee, "snp": self.snp, "microcode": self.microcode}
        if self.fmc is not None:
            spls["fmc"] = self.fmc
        for name, value in spls.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError(f"SPL {name}={value!r} is not an integer in 0..255")
        if self.product == "Turin" and self.fmc is None:
            raise ValueError("a Turin VCEK request needs the FMC SPL")
        object.__setattr__(self, "hw_id", self.hw_id.lower())

    def kds_path(self) -> str:
        return f"/vcek/v1/{self.product}/{self.hw_id}"

    def kds_params(self) -> dict[str, str]:
        params = {} if self.fmc is None else {"fmcSPL": f"{self.fmc:02d}"}
        params.update(
            blSPL=f"{self.bl:02d}",
            teeSPL=f"{self.tee:02d}",
            snpSPL=f"{self.snp:02d}",
            ucodeSPL=f"{self.microcode:02d}",
        )
        return params

    def file_name(self) -> str:
        name = f"bl{self.bl:02d}_tee{self.tee:02d}_snp{self.snp:02d}_ucode{self.microcode:02d}"
        if self.fmc is not None:
            name += f"_fmc{self.fmc:02d}"
        return name + "_vcek.der"


class VekSource(Protocol):
    async def vcek(self, req: VcekRequest) -> bytes:
        """The VCEK certificate (DER) for this chip and TCB."""
        ...

    async def cert_chain(self, product: str) -> list[bytes]:
        """ASK then ARK (DER) for this product."""
        ...


def certificate_not_after(der: bytes) -> float | None:
    """notAfter of a DER certificate as a unix time, None when it does not parse.

    VCEKs carry serial number 0, which ``cryptography`` accepts with a deprecation warning.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def ask_ark_from_pem(data: bytes, product: str, origin: str) -> list[bytes]:
    """[ASK, ARK] as DER from PEM holding them (any order), ignoring an ASVK."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CollateralError(f"{origin}: not a PEM certificate chain: {exc}") from exc
    ark = [c for c in certs if c.subject == c.issuer]
    ask = [c for c in certs if c.subject != c.issuer and not _common_name(c).startswith("SEV-VLEK")]
    if len(ark) != 1 or len(ask) != 1:
        names = ", ".join(_common_name(c) or "?" for c in certs) or "none"
        raise CollateralError(
            f"{origin}: expected one ASK and one self-signed ARK for {product}, found: {names}"
        )
    return [ask[0].public_bytes(Encoding.DER), ark[0].public_bytes(Encoding.DER)]


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = values[0].value if values else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _check_product(product: str, origin: str) -> None:
    if product not in PRODUCTS:
        raise CollateralError(f"{origin}: SNP product {product!r} is not one of {PRODUCTS}")


def _check_der_certificate(body: bytes, where: str) -> bytes:
    # A DER certificate is a SEQUENCE; anything else (an HTML error page) is a source failure.
    if len(body) < 64 or body[0] != 0x30:
        raise CollateralError(
            f"{where}: response is not a DER certificate ({len(body)} bytes, "
            f"starting {body[:8].hex() or 'empty'})"
        )
    return body


# --------------------------------------------------------------------------- AMD KDS


class KdsSource:
    def __init__(
        self,
        base_url: str = KDS_URL,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        min_interval: float = 1.0,
        *,
        max_attempts: int = 4,
    ) -> None:
        self.base_url = kds_base_url(base_url)
        if not timeout > 0:
            raise ValueError(f"KDS timeout {timeout!r} is not a positive number")
        if not min_interval >= 0:
            raise ValueError(f"KDS min_interval {min_interval!r} is negative")
        if max_attempts < 1:
            raise ValueError(f"KDS max_attempts {max_attempts!r} is below 1")
        self.client = client
        self.timeout = timeout
        self.min_interval = min_interval
        self.max_attempts = max_attempts
        self._pace_lock = trio.Lock()
        self._last_request: float | None = None

    def __repr__(self) -> str:
        return f"KdsSource({self.base_url!r})"

    async def vcek(self, req: VcekRequest) -> bytes:
        url = self.base_url + req.kds_path()
        body = await self._fetch(url, req.kds_params(), f"VCEK for {req.product} {req.hw_id[:16]}…")
        return _check_der_certificate(body, f"AMD KDS {url}")

    async def cert_chain(self, product: str) -> list[bytes]:
        _check_product(product, f"AMD KDS {self.base_url}")
        url = f"{self.base_url}/vcek/v1/{product}/cert_chain"
        body = await self._fetch(url, None, f"{product} certificate chain")
        return ask_ark_from_pem(body, product, f"AMD KDS {url}")

    async def _fetch(self, url: str, params: dict[str, str] | None, what: str) -> bytes:
        source = f"AMD KDS {self.base_url}"
        try:
            with trio.fail_after(self.timeout):
                return await self._fetch_with_retries(url, params, source)
        except trio.TooSlowError:
            raise CollateralError(
                f"{source}: {what} not received within the {self.timeout:g} s timeout ({url})"
            ) from None

    async def _fetch_with_retries(
        self, url: str, params: dict[str, str] | None, source: str
    ) -> bytes:
        backoff = _DEFAULT_BACKOFF
        for attempt in range(1, self.max_attempts + 1):
            await self._pace()
            remaining = trio.current_effective_deadline() - trio.current_time()
            response = await http_get(
                self.client, url, params=params, timeout=max(0.001, remaining), source=source
            )
            if response.status_code != 429:
                return expect_ok(response, source)
            header = response.headers.get("Retry-After")
            wait = retry_after_seconds(header, time.time())
            if wait is None:
                wait, backoff = backoff, backoff * 2
            remaining = trio.current_effective_deadline() - trio.current_time()
            if attempt == self.max_attempts:
                raise CollateralError(
                    f"{source}: GET {response.request.url} still rate-limited (HTTP 429) after "
                    f"{attempt} attempts"
                )
            if wait >= remaining:
                raise CollateralError(
                    f"{source}: GET {response.request.url} rate-limited (HTTP 429) and "
                    f"Retry-After {header!r} ({wait:g} s) exceeds the {max(0.0, remaining):.1f} s "
                    f"left of the {self.timeout:g} s timeout"
                )
            await trio.sleep(wait)
        raise CollateralError(f"{source}: GET {url}: no attempt made (max_attempts < 1)")

    async def _pace(self) -> None:
        # AMD throttles clients that hammer KDS; space every request by min_interval.
        async with self._pace_lock:
            if self._last_request is not None:
                wait = self._last_request + self.min_interval - time.monotonic()
                if wait > 0:
                    await trio.sleep(wait)
            self._last_request = time.monotonic()


# --------------------------------------------------------------------------- directory


class DirectoryVekSource:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectoryVekSource({str(self.path)!r})"

    async def vcek(self, req: VcekRequest) -> bytes:
        folder = self.path / "vcek" / req.hw_id
        for candidate in (folder / req.file_name(), folder / "vcek.der"):
            body = await _read_optional(candidate)
            if body is not None:
                return _check_der_certificate(body, f"VCEK file {candidate}")
        raise CollateralError(
            f"VEK directory {self.path}: neither vcek/{req.hw_id[:16]}…/{req.file_name()} "
            f"nor vcek/{req.hw_id[:16]}…/vcek.der exists"
        )

    async def cert_chain(self, product: str) -> list[bytes]:
        _check_product(product, f"VEK directory {self.path}")
        names = (f"{product}.pem", f"{product.lower()}_ask_ark_asvk.pem")
        for name in names:
            body = await _read_optional(self.path / name)
            if body is not None:
                return ask_ark_from_pem(body, product, f"VEK file {self.path / name}")
        raise CollateralError(f"VEK directory {self.path}: none of {', '.join(names)} exists")


async def _read_optional(path: Path) -> bytes | None:
    try:
        return await trio.Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CollateralError(f"VEK file {path}: cannot read: {exc}") from exc


# --------------------------------------------------------------------------- fallback


class FallbackVekSource:
    """Tries sources in order (upstream's ``vcek_sources`` list); the first answer wins."""

    def __init__(self, sources: Sequence[VekSource]) -> None:
        if not sources:
            raise ValueError("FallbackVekSource needs at least one source")
        self.sources = list(sources)

    def __repr__(self) -> str:
        return f"FallbackVekSource({self.sources!r})"

    async def _first(self, fetch: Callable[[VekSource], Awaitable[_T]], what: str) -> _T:
        """What the first source that has it returns; every source's refusal otherwise."""
        reasons: list[str] = []
        for source in self.sources:
            try:
                return await fetch(source)
            except CollateralError as exc:
                reasons.append(str(exc))
        raise CollateralError(f"no VEK source had {what}: " + "; ".join(reasons))

    async def vcek(self, req: VcekRequest) -> bytes:
        return await self._first(lambda source: source.vcek(req), "the VCEK")

    async def cert_chain(self, product: str) -> list[bytes]:
        return await self._first(lambda source: source.cert_chain(product), f"the {product} chain")


def chain_not_after(chain: Sequence[bytes]) -> float:
    """Earliest notAfter of a chain; 0 (never cached) when a certificate does not parse."""
    times = [certificate_not_after(der) for der in chain]
    return min((0.0 if t is None else t for t in times), default=0.0)
