"""A raw HTTP/1.1 connection for fuzzing: write any bytes, read answers, close or reset.

Nothing here validates what is sent; answers are parsed leniently enough to count them, and a
reader never buffers more than `MAX_ANSWER` bytes, so a misbehaving server cannot exhaust us.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass, field

import trio

MAX_HEAD = 256 * 1024
MAX_ANSWER = 16 * 1024 * 1024


class Closed(Exception):
    """The peer closed (or reset) before a whole answer arrived."""


class Garbled(Exception):
    """Bytes came back that are not an HTTP/1.x answer."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


class Conn:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.sent = 0

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, data: bytes) -> None:
        # Large writes go out in slices so a server that answers early and closes is noticed
        # before the whole body has been pushed.
        view = memoryview(data)
        for start in range(0, len(view), 64 * 1024):
            await self.stream.send_all(view[start : start + 64 * 1024])
            self.sent += min(64 * 1024, len(view) - start)

    async def send_slowly(self, data: bytes, pieces: int, pause: float) -> None:
        step = max(1, -(-len(data) // max(1, pieces)))
        for start in range(0, len(data), step):
            await self.send(data[start : start + step])
            await trio.sleep(pause)

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, OSError) as exc:
            raise Closed(f"receive failed: {exc!r}") from exc
        if not data:
            raise Closed("end of stream")
        self.buf += data
        if len(self.buf) > MAX_ANSWER:
            raise Garbled("answer larger than the reader's bound")

    async def wait_first_byte(self) -> None:
        while not self.buf:
            await self._fill()

    async def read_answer(self, bodiless: bool = False) -> Answer:
        """The next final answer; interim 1xx answers (100 Continue) are skipped."""
        for _ in range(8):
            answer = await self._read_one(bodiless)
            if answer.status >= 200 or answer.status == 101:
                return answer
        raise Garbled("too many interim answers")

    async def _read_one(self, bodiless: bool) -> Answer:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise Garbled("answer head larger than the reader's bound")
            await self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise Garbled(f"bad status line {status_line[:80]!r}")
        answer = Answer(int(parts[1]))
        for line in lines:
            name, _, value = line.partition(":")
            answer.headers.append((name.strip(), value.strip()))
        if bodiless or answer.status < 200 or answer.status in (204, 304):
            return answer
        if "chunked" in (answer.header("transfer-encoding") or "").lower():
            answer.body = await self._read_chunked()
        elif (length := answer.header("content-length")) is not None:
            if not length.isdigit() or int(length) > MAX_ANSWER:
                raise Garbled(f"bad Content-Length {length!r}")
            answer.body = await self._read_exactly(int(length))
        else:
            answer.body = await self._read_to_end()
        return answer

    async def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def _read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise Garbled("chunk size line too long")
            await self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = (await self._read_line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise Garbled(f"bad chunk size {size_text[:40]!r}") from exc
            if size == 0:
                while await self._read_line():  # trailers end with an empty line
                    pass
                return bytes(body)
            if len(body) + size > MAX_ANSWER:
                raise Garbled("chunked answer larger than the reader's bound")
            body += await self._read_exactly(size)
            await self._read_exactly(2)

    async def _read_to_end(self) -> bytes:
        while True:
            try:
                await self._fill()
            except Closed:
                out = bytes(self.buf)
                self.buf.clear()
                return out

    async def close(self) -> None:
        await self.stream.aclose()

    async def reset(self) -> None:
        """Close with a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
        with contextlib.suppress(OSError):
            self.stream.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        await self.stream.aclose()

    async def shutdown_write(self) -> None:
        """Half-close: the server sees the end of our bytes but can still answer."""
        with contextlib.suppress(OSError):
            self.stream.socket.shutdown(socket.SHUT_WR)
