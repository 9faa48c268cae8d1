"""`[[audit.sinks]]` → typed settings, one per sink: the keys every sink takes and the sink
type's own.

Reading checks every key and builds no sink, so loading a configuration needs neither trio nor
the sink modules; trustee.audit.build makes the sinks and the dispatcher from these settings.
A third-party sink type (the `trustee.audit_sinks` entry points) is looked up when read; its
own keys are its `from_config`'s to check, when the sink is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from trustee.config.reader import Table

MAX_QUEUE_SIZE = 10_000_000
MAX_BATCH_SIZE = 100_000
COMMON_KEYS = frozenset({"type", "required", "queue_size", "block_timeout", "batch_size"})
DEFAULT_TIMEOUT = 5.0
DEFAULT_KEEP = 5
FACILITIES: Mapping[str, int] = {"auth": 4, **{f"local{n}": 16 + n for n in range(8)}}
TRANSPORTS = ("udp", "tcp", "unix")
DEFAULT_STREAM = "trustee:audit"
DEFAULT_MAXLEN = 100_000
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The webhook sink owns the framing of the body; letting configuration override these would
# produce requests a CloudEvents receiver cannot parse.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "host"})


@dataclass(frozen=True)
class FileSinkOptions:
    path: str
    fsync: bool = False
    max_bytes: int | None = None  # rotate before the file would pass this size
    keep: int = DEFAULT_KEEP


@dataclass(frozen=True)
class StdoutSinkOptions:
    pass


@dataclass(frozen=True)
class SyslogSinkOptions:
    address: str = "/dev/log"
    transport: str = "unix"
    facility: str = "local0"
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class WebhookSinkOptions:
    url: str
    batch: bool = True
    timeout: float = DEFAULT_TIMEOUT
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RedisStreamSinkOptions:
    url: str
    stream: str = DEFAULT_STREAM
    maxlen: int = DEFAULT_MAXLEN
    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None


@dataclass(frozen=True)
class PluginSinkOptions:
    """A third-party sink's table as written, common keys included, for its `from_config`."""

    table: dict[str, Any]


BuiltinSinkOptions = (
    FileSinkOptions
    | StdoutSinkOptions
    | SyslogSinkOptions
    | WebhookSinkOptions
    | RedisStreamSinkOptions
)


@dataclass(frozen=True)
class AuditSinkSettings:
    type: str
    options: BuiltinSinkOptions | PluginSinkOptions
    key: str  # where the sink is configured: audit.sinks[<index>]
    required: bool = False
    queue_size: int = 10000
    batch_size: int = 100
    block_timeout: float = 1.0


def audit_sinks(audit: Table) -> tuple[AuditSinkSettings, ...]:
    """The sinks of the `[audit]` table, in order."""
    return tuple(sink_settings(t) for t in audit.tables("sinks"))


def sink_settings(t: Table) -> AuditSinkSettings:
    kind = t.data.get("type")
    if not isinstance(kind, str) or not kind:
        raise t.error("type", f"{kind!r} is not a sink type name")
    required = _flag(t, "required", False)
    queue_size = _int_upto(t, "queue_size", 10000, MAX_QUEUE_SIZE)
    batch_size = _int_upto(t, "batch_size", 100, MAX_BATCH_SIZE)
    block_timeout = t.data.get("block_timeout", 1.0)
    if (
        isinstance(block_timeout, bool)
        or not isinstance(block_timeout, int | float)
        or not math.isfinite(block_timeout)
        or block_timeout < 0
    ):
        raise t.error("block_timeout", f"{block_timeout!r} is not a finite number of seconds >= 0")
    read = BUILTIN_READERS.get(kind)
    options = read(t) if read is not None else _plugin_options(t, kind)
    return AuditSinkSettings(
        kind, options, t.path, required, queue_size, batch_size, float(block_timeout)
    )


def file_options(t: Table) -> FileSinkOptions:
    _own_keys(t, {"path", "fsync", "max_bytes", "keep"})
    path = t.data.get("path")
    if not isinstance(path, str) or not path or "\x00" in path:
        raise t.error("path", f"{path!r} is not a non-empty file path")
    fsync = _flag(t, "fsync", False)
    max_bytes = _count(t, "max_bytes")
    keep = _count(t, "keep")
    if keep is not None and max_bytes is None:
        raise t.error("keep", "only meaningful with max_bytes (rotation is off)")
    return FileSinkOptions(path, fsync, max_bytes, DEFAULT_KEEP if keep is None else keep)


def stdout_options(t: Table) -> StdoutSinkOptions:
    _own_keys(t, set())
    return StdoutSinkOptions()


def syslog_options(t: Table) -> SyslogSinkOptions:
    address = t.data.get("address")
    transport = t.data.get("transport")
    if transport is None:
        # Without an address the local daemon is meant; a path can only be a unix socket.
        local = address is None or (isinstance(address, str) and address.startswith("/"))
        transport = "unix" if local else "udp"
    if not isinstance(transport, str) or transport not in TRANSPORTS:
        raise t.error("transport", f"{transport!r} is not one of {', '.join(TRANSPORTS)}")
    if address is None and transport == "unix":
        address = "/dev/log"
    if not isinstance(address, str) or not address:
        raise t.error("address", f"{address!r} is not a non-empty string")
    if transport == "unix" and "\x00" in address:
        raise t.error("address", f"unix socket path {address!r} contains a NUL byte")
    if transport != "unix":
        try:
            host_port(address)
        except ValueError as exc:
            raise t.error("address", str(exc)) from None
    facility = t.data.get("facility", "local0")
    if not isinstance(facility, str) or facility not in FACILITIES:
        raise t.error("facility", f"{facility!r} is not one of {', '.join(FACILITIES)}")
    return SyslogSinkOptions(address, transport, facility, _seconds(t, "timeout"))


def host_port(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port`; ValueError says what is wrong with it."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not an integer in 1..65535")
    return host, int(port_text)


def webhook_options(t: Table) -> WebhookSinkOptions:
    url = t.data.get("url")
    if not isinstance(url, str):
        raise t.error("url", f"{url!r} is not a string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise t.error("url", f"{url!r} does not parse: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise t.error("url", f"{url!r} is not an http(s) URL with a host")
    if port == 0:
        raise t.error("url", f"port 0 in {url!r} is not a port to send to")
    batch = _flag(t, "batch", True)
    timeout = _seconds(t, "timeout")
    headers = t.data.get("headers", {})
    if not isinstance(headers, Mapping):
        raise t.error("headers", f"expected a table of strings, got {type(headers)}")
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise t.error("headers", f"{name!r} is not an HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise t.error(f"headers.{name}", "set by the sink, not configurable")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise t.error(f"headers.{name}", "value must be a string without CR, LF or NUL")
    return WebhookSinkOptions(url, batch, timeout, tuple(headers.items()))


def redis_stream_options(t: Table) -> RedisStreamSinkOptions:
    url = t.data.get("url")
    if not isinstance(url, str):
        raise t.error("url", f"{url!r} is not a string")
    # Only a Redis sink needs the URL parser (and the trio it comes with).
    from trustee.redis.connect import parse_redis_url, tls_context

    try:
        target = parse_redis_url(url, "url")
    except ValueError as exc:
        raise t.error("url", str(exc).removeprefix("url: ")) from None
    stream = t.data.get("stream", DEFAULT_STREAM)
    if not isinstance(stream, str) or not stream:
        raise t.error("stream", f"{stream!r} is not a non-empty string")
    maxlen = _count(t, "maxlen")
    timeout = _seconds(t, "timeout")
    ca_file = t.data.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise t.error("ca_file", f"{ca_file!r} is not a path")
    if target.tls and ca_file is not None:
        try:
            tls_context(ca_file)
        except ValueError as exc:
            raise t.error("ca_file", f"cannot use {exc}") from None
    return RedisStreamSinkOptions(
        url, stream, DEFAULT_MAXLEN if maxlen is None else maxlen, timeout, ca_file
    )


BUILTIN_READERS: dict[str, Callable[[Table], BuiltinSinkOptions]] = {
    "file": file_options,
    "stdout": stdout_options,
    "syslog": syslog_options,
    "webhook": webhook_options,
    "redis-stream": redis_stream_options,
}


def _plugin_options(t: Table, kind: str) -> PluginSinkOptions:
    # An unknown type, or a plugin that does not load, stops the start here.
    from trustee.audit.registry import sink_factory

    sink_factory(kind, t.key("type"))
    return PluginSinkOptions(dict(t.data))


def _own_keys(t: Table, own: set[str]) -> None:
    for name in t.data:
        if name not in COMMON_KEYS and name not in own:
            allowed = ", ".join(sorted(own | COMMON_KEYS))
            raise t.error(name, f"unknown key for this sink (allowed: {allowed})")


def _flag(t: Table, name: str, default: bool) -> bool:
    value = t.data.get(name, default)
    if not isinstance(value, bool):
        raise t.error(name, f"{value!r} is not a boolean")
    return value


def _int_upto(t: Table, name: str, default: int, most: int) -> int:
    value = t.data.get(name, default)
    # bool is an int subclass; `queue_size = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise t.error(name, f"{value!r} is not an integer from 1 to {most}")
    return value


def _count(t: Table, name: str) -> int | None:
    value = t.data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise t.error(name, f"{value!r} is not a positive integer")
    return value


def _seconds(t: Table, name: str) -> float:
    value = t.data.get(name, DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise t.error(name, f"{value!r} is not a positive number of seconds")
    return float(value)
