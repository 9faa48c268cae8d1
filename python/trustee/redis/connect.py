"""Where a Redis server is (redis:// and rediss:// URLs) and the stream to it, TLS included."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import trio

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool = False

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls else "redis"


class RedisTlsError(OSError):
    """The TLS handshake with a rediss:// server failed (certificate, protocol, …)."""


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Server certificates are checked against `ca_file` (PEM) when given, else the system
    trust store; the host name in the URL must match the certificate."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {ca_file}: {exc}") from exc


def redacted(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


async def open_stream(target: RedisTarget, context: ssl.SSLContext | None) -> trio.abc.Stream:
    """TCP to the server; for rediss:// TLS over it, with the handshake done here so that a
    certificate problem is reported when connecting, naming the server."""
    tcp = await trio.open_tcp_stream(target.host, target.port)
    if not target.tls:
        return tcp
    stream = trio.SSLStream(tcp, context or tls_context(), server_hostname=target.host)
    try:
        await stream.do_handshake()
    except BaseException as exc:
        # Also on cancellation (a timeout around the connect): the socket must not leak.
        await trio.aclose_forcefully(tcp)
        if not isinstance(exc, trio.BrokenResourceError | OSError):
            raise
        reason = exc.__cause__ if exc.__cause__ is not None else exc
        raise RedisTlsError(
            f"TLS handshake with {target.host}:{target.port} failed: {reason}"
        ) from exc
    return stream


def parse_redis_url(url: str, where: str) -> RedisTarget:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{where}: {redacted(url)!r} does not parse: {exc}") from exc
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(
            f"{where}: {redacted(url)!r} is not a redis:// or rediss://host:port/db URL"
        )
    if port == 0:
        raise ValueError(f"{where}: port 0 in {redacted(url)!r} is not a port to connect to")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"{where}: database {db_text!r} is not a non-negative integer")
    if parts.query or parts.fragment:
        raise ValueError(f"{where}: query and fragment are not supported in {redacted(url)!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return RedisTarget(
        parts.hostname,
        port or DEFAULT_PORT,
        int(db_text),
        username,
        password,
        tls=parts.scheme == "rediss",
    )


async def close_stream(stream: trio.abc.Stream) -> None:
    """Closes without waiting on the peer: a TLS close-notify to a stalled server could block
    for good, and nothing is left to say on a connection being dropped."""
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        await trio.aclose_forcefully(stream)
