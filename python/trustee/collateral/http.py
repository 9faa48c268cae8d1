"""HTTP plumbing shared by the PCS/PCCS and KDS sources.

Every request is bounded by an explicit timeout, and every failure becomes a
:class:`CollateralError` naming the source, the URL and the reason, so that an operator can tell
an unreachable service from a missing header or a rate limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from trustee.collateral.errors import CollateralError

if TYPE_CHECKING:
    import httpx


async def http_get(
    client: httpx.AsyncClient | None,
    url: str,
    *,
    params: Mapping[str, str] | None,
    timeout: float,
    source: str,
) -> httpx.Response:
    """GET ``url``; any transport failure or timeout becomes a :class:`CollateralError`.

    The status code is left to the caller, which knows which codes mean "retry" or "absent".
    Without an injected client a short-lived one is used: collateral is cached, so connection
    reuse matters less than not leaking a client nobody closes.
    """
    # A server that never fetches (local collateral only) never loads the HTTP client.
    import httpx

    try:
        if client is None:
            async with httpx.AsyncClient(timeout=timeout) as own:
                response = await own.get(url, params=params)
        else:
            response = await client.get(url, params=params, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise CollateralError(
            f"{source}: GET {_show(url, params)} timed out after {timeout:g} s "
            f"({type(exc).__name__})"
        ) from exc
    except httpx.HTTPError as exc:
        raise CollateralError(
            f"{source}: GET {_show(url, params)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return response


def expect_ok(response: httpx.Response, source: str) -> bytes:
    """The body of a 200 response, or an error naming the status."""
    if response.status_code == 200:
        return response.content
    if response.status_code in (404, 410):
        reason = "collateral not available"
    else:
        reason = "unexpected status"
    detail = response.text[:200].strip() if response.content else ""
    suffix = f": {detail}" if detail else ""
    raise CollateralError(
        f"{source}: GET {response.request.url} returned HTTP {response.status_code} "
        f"({reason}){suffix}"
    )


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _show(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    import httpx

    return str(httpx.URL(url, params=dict(params)))


def utc_text(timestamp: float) -> str:
    """A unix time as ISO 8601 UTC, for error messages."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
