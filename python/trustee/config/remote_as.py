"""`[attestation_service]` for an Attestation Service in another process.

`type = "coco_as_grpc"` takes upstream's keys, `as_addr` (default http://127.0.0.1:50004) and
`pool_size` (default 100); `type = "coco_as_restful"` (ours) takes `url` and, for an https URL,
`ca_cert`, a PEM file of the roots that vouch for the AS. Both take `timeout_ms`, ours: how long
one call to the AS may take, connecting included, before /attest fails. Upstream's `timeout` in
this table stays the RCAR session lifetime in minutes. The keys of the built-in AS (token
broker, verifiers, RVPS, storage) belong to the remote AS's own configuration and are ignored.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from trustee.config.model import RemoteAsConfig, RemoteAsType
from trustee.config.reader import Table

_TYPES: dict[str, RemoteAsType] = {
    "cocoasgrpc": "coco_as_grpc",
    "cocoasrestful": "coco_as_restful",
}
DEFAULT_AS_ADDR = "http://127.0.0.1:50004"
DEFAULT_POOL_SIZE = 100
DEFAULT_TIMEOUT_MS = 5000
TIMEOUT_MS_RANGE = (100, 600_000)
POOL_SIZE_RANGE = (1, 10_000)
# Keys this table may hold besides the remote ones: upstream's session lifetime and the type.
_COMMON = ("type", "timeout")
_KEYS: dict[RemoteAsType, tuple[str, ...]] = {
    "coco_as_grpc": ("as_addr", "pool_size", "timeout_ms", "ca_cert"),
    "coco_as_restful": ("url", "pool_size", "timeout_ms", "ca_cert"),
}


def remote_type(kind: str) -> RemoteAsType | None:
    """The remote AS a `type` value names (case and `_` ignored, as upstream's aliases), or
    None for any other value."""
    return _TYPES.get(kind.replace("_", "").lower())


def _address(t: Table, key: str, default: str | None) -> str:
    raw = t.get(key, str, default) if default is not None else t.req(key, str)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error(key, f"{raw!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise t.error(key, f"{raw!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise t.error(key, f"{raw!r} has a query or fragment; give the AS's base URL")
    return raw.rstrip("/")


def _bounded(t: Table, key: str, default: int, bounds: tuple[int, int]) -> int:
    value = t.get(key, int, default)
    low, high = bounds
    if not low <= value <= high:
        raise t.error(key, f"{value} is outside {low}..{high}")
    return value


def _ca_cert(t: Table, address: str, key: str) -> str | None:
    path = t.opt("ca_cert", str)
    if path is None:
        return None
    if not address.startswith("https://"):
        raise t.error("ca_cert", f"is for an https:// {key}; {address!r} is plain HTTP")
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise t.error("ca_cert", f"{path}: not a readable PEM certificate file: {exc}") from None
    return path


def remote_as(t: Table, kind: RemoteAsType) -> tuple[RemoteAsConfig, list[str]]:
    """The remote AS `t` describes, and the keys it holds that only a built-in AS reads."""
    key = "as_addr" if kind == "coco_as_grpc" else "url"
    address = _address(t, key, DEFAULT_AS_ADDR if kind == "coco_as_grpc" else None)
    config = RemoteAsConfig(
        type=kind,
        address=address,
        pool_size=_bounded(t, "pool_size", DEFAULT_POOL_SIZE, POOL_SIZE_RANGE),
        timeout_ms=_bounded(t, "timeout_ms", DEFAULT_TIMEOUT_MS, TIMEOUT_MS_RANGE),
        ca_cert=_ca_cert(t, address, key),
    )
    known = (*_COMMON, *_KEYS[kind])
    ignored = [
        f"{t.key(name)} (a {kind} table reads only {', '.join(known)})"
        for name in sorted(set(t.data) - set(known))
    ]
    return config, ignored
