"""Audit sink that appends CloudEvents to a Redis Stream (RESP2 from `trustee.redis`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSinkError
from trustee.redis.connect import (
    close_stream,
    open_stream,
    parse_redis_url,
    tls_context,
)
from trustee.redis.resp import RespError, RespProtocolError, RespReader, RespValue, encode_command

DEFAULT_STREAM = "trustee:audit"
DEFAULT_MAXLEN = 100_000
DEFAULT_TIMEOUT = 5.0
# Bounds how much one pipelined write holds in memory for a large backlog.
PIPELINE_CHUNK = 500


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
