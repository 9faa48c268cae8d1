"""RESP2, the Redis wire protocol: commands encoded, replies read from a stream with every
length and nesting depth bounded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

# The largest reply accepted by default; more means the peer is not the Redis server we think
# it is, and buffering it would only waste memory.
MAX_REPLY_BYTES = 1 << 20
MAX_REPLY_DEPTH = 8


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
