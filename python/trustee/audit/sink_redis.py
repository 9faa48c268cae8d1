"""Audit sink that appends CloudEvents to a Redis Stream through a minimal RESP2 client."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSinkError

DEFAULT_STREAM = "trustee:audit"
DEFAULT_MAXLEN = 100_000
DEFAULT_TIMEOUT = 5.0
DEFAULT_PORT = 6379
# Replies to XADD, AUTH and SELECT are short; anything far larger means the peer is not
# the Redis server we think it is, and buffering it would only waste memory.
MAX_REPLY_BYTES = 1 << 20
MAX_REPLY_DEPTH = 8
# Bounds how much one pipelined write holds in memory for a large backlog.
PIPELINE_CHUNK = 500


class RespProtocolError(Exception):
    """The peer sent bytes that are not a well-formed RESP2 reply."""


@dataclass(frozen=True)
class RespError:
    """An error reply (`-ERR ...`), kept as a value so one bad command does not desync the pipe."""

    message: str


RespValue = bytes | int | None | RespError | list[Any]


def encode_command(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            data = str(arg).encode("ascii")
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespReader:
    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int = MAX_REPLY_BYTES) -> None:
        self._stream = stream
        self._buf = bytearray()
        # The largest reply (bulk string or line) accepted; more means the peer misbehaves.
        self._max = max_bytes

    async def _fill(self) -> None:
        chunk = await self._stream.receive_some(65536)
        if not chunk:
            raise RespProtocolError("connection closed by the server mid-reply")
        self._buf += chunk
        if len(self._buf) > self._max + 64:
            raise RespProtocolError(f"reply exceeds {self._max} bytes")

    async def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            if len(self._buf) > self._max:
                raise RespProtocolError(f"reply line exceeds {self._max} bytes")
            await self._fill()

    def _length(self, line: bytes) -> int:
        try:
            value = int(line[1:])
        except ValueError:
            raise RespProtocolError(f"length {line[1:40]!r} is not an integer") from None
        if value < -1 or value > self._max:
            raise RespProtocolError(f"length {value} is outside -1..{self._max}")
        return value

    async def read(self, depth: int = 0) -> RespValue:
        if depth > MAX_REPLY_DEPTH:
            raise RespProtocolError(f"reply nests deeper than {MAX_REPLY_DEPTH} arrays")
        line = await self._line()
        kind = line[:1]
        if kind == b"+":
            return line[1:]
        if kind == b"-":
            return RespError(line[1:].decode("utf-8", "replace"))
        if kind == b":":
            try:
                return int(line[1:])
            except ValueError:
                raise RespProtocolError(f"integer reply {line[1:40]!r} is malformed") from None
        if kind == b"$":
            size = self._length(line)
            if size == -1:
                return None
            while len(self._buf) < size + 2:
                await self._fill()
            if self._buf[size : size + 2] != b"\r\n":
                raise RespProtocolError("bulk string is not terminated by CRLF")
            data = bytes(self._buf[:size])
            del self._buf[: size + 2]
            return data
        if kind == b"*":
            count = self._length(line)
            if count == -1:
                return None
            return [await self.read(depth + 1) for _ in range(count)]
        raise RespProtocolError(f"reply starts with unknown type byte {kind!r}")


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


class _RedisConnection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = RespReader(stream)

    async def pipeline(self, commands: Sequence[bytes]) -> list[RespValue]:
        await self.stream.send_all(b"".join(commands))
        return [await self.reader.read() for _ in commands]


class RedisStreamSink:
    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        self.target = parse_redis_url(url, "url")
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = timeout
        where = f"{self.target.host}:{self.target.port}/{self.target.db}/{stream}"
        self.name = f"redis-stream:{where}" if not self.target.tls else f"rediss-stream:{where}"
        self._tls = tls_context(ca_file) if self.target.tls else None
        self._conn: _RedisConnection | None = None
        self._lock = trio.Lock()

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> RedisStreamSink:
        url = table.get("url")
        if not isinstance(url, str):
            raise ValueError(f"{key}.url: {url!r} is not a string")
        parse_redis_url(url, f"{key}.url")
        stream = table.get("stream", DEFAULT_STREAM)
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"{key}.stream: {stream!r} is not a non-empty string")
        maxlen = table.get("maxlen", DEFAULT_MAXLEN)
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"{key}.maxlen: {maxlen!r} is not a positive integer")
        timeout = table.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"{key}.timeout: {timeout!r} is not a positive number of seconds")
        ca_file = table.get("ca_file")
        if ca_file is not None and not isinstance(ca_file, str):
            raise ValueError(f"{key}.ca_file: {ca_file!r} is not a path")
        try:
            return cls(url, stream=stream, maxlen=maxlen, timeout=float(timeout), ca_file=ca_file)
        except ValueError as exc:
            raise ValueError(f"{key}.{exc}") from None

    async def _connect(self) -> _RedisConnection:
        conn = _RedisConnection(await open_stream(self.target, self._tls))
        ready = False
        try:
            await self._setup(conn)
            ready = True
        finally:
            if not ready:  # refused, failed or cancelled: the socket must not leak
                await close_stream(conn.stream)
        return conn

    async def _setup(self, conn: _RedisConnection) -> None:
        setup: list[tuple[str, bytes]] = []
        if self.target.password is not None:
            auth = ["AUTH", self.target.password]
            if self.target.username:
                auth.insert(1, self.target.username)
            setup.append(("AUTH", encode_command(*auth)))
        if self.target.db:
            setup.append((f"SELECT {self.target.db}", encode_command("SELECT", self.target.db)))
        if setup:
            replies = await conn.pipeline([command for _, command in setup])
            for (what, _), reply in zip(setup, replies, strict=True):
                if isinstance(reply, RespError):
                    raise AuditSinkError(f"{self.name}: {what} refused: {reply.message}")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_stream(conn.stream)

    def _xadd(self, event: AuditEvent) -> bytes:
        try:
            body: bytes = event.canonical_cloudevent
        except Exception as exc:
            raise AuditSinkError(
                f"{self.name}: event {event.id} is not JSON-serialisable: {exc}"
            ) from exc
        return encode_command(
            "XADD", self.stream, "MAXLEN", "~", self.maxlen, "*",
            "id", event.id, "type", event.type, "event", body,
        )  # fmt: skip

    async def _deliver(self, commands: Sequence[bytes], events: Sequence[AuditEvent]) -> None:
        for start in range(0, len(commands), PIPELINE_CHUNK):
            if self._conn is None:
                self._conn = await self._connect()
            chunk = commands[start : start + PIPELINE_CHUNK]
            replies = await self._conn.pipeline(chunk)
            for offset, reply in enumerate(replies):
                if isinstance(reply, RespError):
                    if reply.message.startswith("ERR Protocol error"):
                        # The server hangs up after a protocol error; start afresh next time.
                        await self._drop()
                    raise AuditSinkError(
                        f"{self.name}: XADD of event {events[start + offset].id} "
                        f"refused: {reply.message}"
                    )
                if not isinstance(reply, bytes):
                    await self._drop()
                    raise AuditSinkError(
                        f"{self.name}: XADD of event {events[start + offset].id} answered "
                        f"{reply!r}, not an entry id"
                    )

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        commands = [self._xadd(e) for e in events]
        async with self._lock:
            # A connection reused from an earlier batch may have died with a server restart;
            # one fresh connection is worth trying before handing the batch back for retry.
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    with trio.fail_after(self.timeout):
                        await self._deliver(commands, events)
                    return
                except (
                    OSError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                    RespProtocolError,
                ) as exc:
                    await self._drop()
                    if reused and attempt == 1:
                        continue
                    raise AuditSinkError(
                        f"{self.name}: delivering {len(events)} event(s) failed: {exc!r}"
                    ) from exc
                except trio.TooSlowError as exc:
                    await self._drop()
                    raise AuditSinkError(
                        f"{self.name}: delivering {len(events)} event(s) took longer "
                        f"than {self.timeout}s"
                    ) from exc

    async def aclose(self) -> None:
        await self._drop()
