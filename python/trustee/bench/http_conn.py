"""A minimal HTTP/1.1 keep-alive client over one trio stream (plain or TLS).

Hand-written requests and a hand-parsed response head keep the load generator's CPU per
request small, so the generator does not become what is measured. It speaks only what a KBS
answers: Content-Length bodies, no chunked transfer encoding.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import trio

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024


class TransportError(Exception):
    """The exchange failed below HTTP; `kind` is the results' error class for it."""

    kind = "connect"


class ConnectError(TransportError):
    kind = "connect"


class TlsError(TransportError):
    kind = "tls"


class ProtocolError(TransportError):
    """The server answered something that is not the HTTP this client expects."""

    kind = "protocol"


@dataclass
class Answer:
    status: int
    body: bytes
    set_cookie: bytes | None


class Connection:
    """One keep-alive connection; reconnects after `Connection: close` or a failure."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.host_header = f"Host: {host}:{port}\r\n".encode()
        if token is not None:
            self.host_header += f"Authorization: Bearer {token}\r\n".encode()
        self._stream: trio.abc.Stream | None = None
        self._buf = bytearray()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        self._buf.clear()
        if stream is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await trio.aclose_forcefully(stream)

    def build(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        content_type: str | None = None,
        cookie: str | None = None,
        authorization: str | None = None,
    ) -> bytes:
        head = [f"{method} {target} HTTP/1.1\r\n".encode(), self.host_header]
        if content_type is not None:
            head.append(f"Content-Type: {content_type}\r\n".encode())
        if cookie is not None:
            head.append(f"Cookie: {cookie}\r\n".encode())
        if authorization is not None:
            head.append(f"Authorization: {authorization}\r\n".encode())
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        return b"".join(head) + body

    async def _open(self) -> trio.abc.Stream:
        try:
            tcp = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if self.ssl_context is None:
            return tcp
        stream = trio.SSLStream(tcp, self.ssl_context, server_hostname=self.host)
        try:
            await stream.do_handshake()
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            await trio.aclose_forcefully(tcp)
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise TlsError(f"TLS handshake with {self.host}:{self.port} failed: {cause}") from exc
        return stream

    async def _fill(self, stream: trio.abc.Stream) -> None:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectError("the server closed the connection mid-response")
        self._buf += chunk

    async def request(self, raw: bytes) -> Answer:
        """Send `raw`, read one answer. Any failure closes the connection before raising."""
        try:
            return await self._exchange(raw)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self.aclose()
            raise ConnectError(f"connection to {self.host}:{self.port} failed: {exc}") from exc
        except BaseException:
            await self.aclose()
            raise

    async def _exchange(self, raw: bytes) -> Answer:
        if self._stream is None:
            self._stream = await self._open()
        stream = self._stream
        await stream.send_all(raw)
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise ProtocolError("response head larger than 64 KiB")
            await self._fill(stream)
        lines = bytes(self._buf[:end]).split(b"\r\n")
        del self._buf[: end + 4]
        status, length, set_cookie, close = _parse_head(lines)
        while len(self._buf) < length:
            await self._fill(stream)
        body = bytes(self._buf[:length])
        del self._buf[:length]
        if close:
            await self.aclose()
        return Answer(status, body, set_cookie)


def _parse_head(lines: list[bytes]) -> tuple[int, int, bytes | None, bool]:
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"bad status line {lines[0][:100]!r}") from None
    length: int | None = None
    set_cookie: bytes | None = None
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise ProtocolError(f"bad Content-Length {value[:40]!r}") from None
        elif name == b"set-cookie" and set_cookie is None:
            set_cookie = value.strip()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked responses are not supported by the bench client")
    if length is None or not 0 <= length <= MAX_BODY_BYTES:
        raise ProtocolError(f"response without a usable Content-Length (status {status})")
    return status, length, set_cookie, close


def tls_context(cert_file: str | None) -> ssl.SSLContext:
    """System trust plus the KBS root in `cert_file` (as kbs-client adds it)."""
    context = ssl.create_default_context()
    if cert_file is not None:
        context.load_verify_locations(cafile=cert_file)
    return context
