"""A small async Redis client for shared state across replicas: RESP2 over trio TCP streams.

Fails fast: every call is bounded by `timeout` (pool wait, connect, send and reply together),
so a dead or silent server turns into `RedisUnavailable` rather than a hung request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from trustee.redis.connect import (
    RedisTlsError,
    close_stream,
    open_stream,
    parse_redis_url,
    tls_context,
)
from trustee.redis.resp import RespError, RespProtocolError, RespReader, encode_command

Arg = bytes | str | int

# Resources, policies and reference values are read back whole; this bounds what one reply
# may buffer (Redis itself allows 512 MiB strings).
MAX_STORED_VALUE_BYTES = 64 << 20

# Failures that leave a connection in an unknown state: it is closed, never reused.
_CONNECTION_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    RespProtocolError,
)


class RedisUnavailable(Exception):
    """The server could not be reached or did not answer in time."""


class RedisError(Exception):
    """The server answered a command with an error reply."""

    def __init__(self, command: str, reply: str) -> None:
        super().__init__(f"{command} refused: {reply}")
        self.command = command
        self.reply = reply


def _command_name(args: Sequence[Arg]) -> str:
    if not args:
        return "<empty>"
    head = args[0]
    if isinstance(head, bytes):
        return head.decode("ascii", "replace").upper()
    return str(head).upper()


def _first_error(reply: Any) -> RespError | None:
    # EXEC and scripts can nest error replies inside an array.
    if isinstance(reply, RespError):
        return reply
    if isinstance(reply, list):
        for item in reply:
            found = _first_error(item)
            if found is not None:
                return found
    return None


class _Connection:
    def __init__(self, stream: trio.abc.Stream, max_reply_bytes: int) -> None:
        self.stream = stream
        self.reader = RespReader(stream, max_reply_bytes)

    async def exchange(self, payload: bytes, count: int) -> list[Any]:
        await self.stream.send_all(payload)
        return [await self.reader.read() for _ in range(count)]

    async def close(self) -> None:
        await close_stream(self.stream)


class RedisClient:
    """Connections are opened on demand and at most `pool_size` are in use at once."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        pool_size: int = 8,
        ca_file: str | None = None,
        max_reply_bytes: int = MAX_STORED_VALUE_BYTES,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"redis timeout: {timeout!r} is not a positive number of seconds")
        if pool_size < 1:
            raise ValueError(f"redis pool_size: {pool_size!r} is not a positive integer")
        self.target = parse_redis_url(url, "redis url")
        self.timeout = timeout
        self.name = f"{self.target.scheme}://{self.target.host}:{self.target.port}/{self.target.db}"
        self._tls = tls_context(ca_file) if self.target.tls else None
        # Stored resources come back as one reply each: the largest a value may be.
        self.max_reply_bytes = max_reply_bytes
        self._slots = trio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        self._closed = False

    async def execute(self, *args: Arg) -> Any:
        """One command's reply: bytes, int, None or a list of those."""
        if not args:
            raise ValueError("redis execute: no command given")
        replies = await self._run([tuple(args)])
        return replies[0]

    async def pipeline(self, commands: Iterable[Sequence[Arg]]) -> list[Any]:
        """Sends all commands in one write; replies come back in order.

        Not atomic (use MULTI/EXEC or a script for that). Every reply is read before an
        error reply is raised, so the connection stays usable.
        """
        batch = [tuple(command) for command in commands]
        if any(not command for command in batch):
            raise ValueError("redis pipeline: an empty command was given")
        if not batch:
            return []
        return await self._run(batch)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _run(self, batch: list[tuple[Arg, ...]]) -> list[Any]:
        if self._closed:
            raise RedisUnavailable(f"{self.name}: client is closed")
        what = _command_name(batch[0]) if len(batch) == 1 else f"pipeline of {len(batch)}"
        payload = b"".join(encode_command(*command) for command in batch)
        try:
            with trio.fail_after(self.timeout):
                async with self._slots:
                    replies = await self._exchange(payload, len(batch), what)
        except trio.TooSlowError:
            raise RedisUnavailable(
                f"{self.name}: {what} got no reply within {self.timeout}s"
            ) from None
        for command, reply in zip(batch, replies, strict=True):
            error = _first_error(reply)
            if error is not None:
                raise RedisError(_command_name(command), error.message)
        return replies

    async def _exchange(self, payload: bytes, count: int, what: str) -> list[Any]:
        # An idle connection may have died with a server restart since it was last used; one
        # fresh connection is worth a try before reporting the server as unavailable.
        for attempt in (1, 2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect(what)
            done = False
            try:
                replies = await conn.exchange(payload, count)
                done = True
            except _CONNECTION_ERRORS as exc:
                if reused and attempt == 1:
                    await self._drop_idle()
                    continue
                raise RedisUnavailable(f"{self.name}: {what} failed: {exc!r}") from exc
            finally:
                if not done:
                    await conn.close()
            if self._closed:
                await conn.close()
            else:
                self._idle.append(conn)
            return replies
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def _connect(self, what: str) -> _Connection:
        try:
            stream = await open_stream(self.target, self._tls)
        except RedisTlsError as exc:
            raise RedisUnavailable(f"{self.name}: connecting for {what} failed: {exc}") from exc
        except OSError as exc:
            raise RedisUnavailable(
                f"{self.name}: connecting for {what} failed: {exc.strerror or exc!r}"
            ) from exc
        conn = _Connection(stream, self.max_reply_bytes)
        setup: list[tuple[str, tuple[Arg, ...]]] = []
        if self.target.password is not None:
            user = (self.target.username,) if self.target.username else ()
            setup.append(("AUTH", ("AUTH", *user, self.target.password)))
        if self.target.db:
            setup.append((f"SELECT {self.target.db}", ("SELECT", self.target.db)))
        if not setup:
            return conn
        done = False
        try:
            payload = b"".join(encode_command(*command) for _, command in setup)
            replies = await conn.exchange(payload, len(setup))
            for (name, _), reply in zip(setup, replies, strict=True):
                if isinstance(reply, RespError):
                    raise RedisError(name, reply.message)
            done = True
        except _CONNECTION_ERRORS as exc:
            raise RedisUnavailable(f"{self.name}: connection setup failed: {exc!r}") from exc
        finally:
            if not done:
                await conn.close()
        return conn


class Script:
    """A Lua script run by digest, sent in full only when the server has not cached it yet."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha1 = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()

    async def run(self, client: RedisClient, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await client.execute("EVALSHA", self.sha1, len(keys), *keys, *args)
        except RedisError as exc:
            if not exc.reply.startswith("NOSCRIPT"):
                raise
        return await client.execute("EVAL", self.source, len(keys), *keys, *args)
