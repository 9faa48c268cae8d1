"""Audit sink that appends CloudEvents to a Redis Stream (RESP2 from `trustee.redis`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.settings import (
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    DEFAULT_TIMEOUT,
    RedisStreamSinkOptions,
    redis_stream_options,
)
from trustee.audit.sink import AuditSinkError
from trustee.config.reader import Table
from trustee.redis.connect import (
    close_stream,
    open_stream,
    parse_redis_url,
    tls_context,
)
from trustee.redis.resp import RespError, RespProtocolError, RespReader, RespValue, encode_command

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
    def from_options(cls, options: RedisStreamSinkOptions) -> RedisStreamSink:
        return cls(
            options.url,
            stream=options.stream,
            maxlen=options.maxlen,
            timeout=options.timeout,
            ca_file=options.ca_file,
        )

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> RedisStreamSink:
        return cls.from_options(redis_stream_options(Table(dict(table), key)))

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
