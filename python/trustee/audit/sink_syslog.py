"""Audit sink speaking RFC 5424 syslog over UDP, TCP (RFC 6587 octet counting) or a unix socket."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from trustee.audit.event import AuditEvent
from trustee.audit.settings import (
    DEFAULT_TIMEOUT,
    FACILITIES,
    TRANSPORTS,
    SyslogSinkOptions,
    host_port,
    syslog_options,
)
from trustee.audit.sink import AuditSinkError
from trustee.config.reader import Table

SEVERITY_WARNING = 4
SEVERITY_INFO = 6
APP_NAME = "trustee-py"
# Private enterprise number 32473 is reserved for documentation (RFC 5612); no PEN is
# registered for this project, and SD-IDs without one must be IANA-registered names.
SD_ID = "audit@32473"
# Verbs that record a refusal or a failed check; operators alert on warning-level syslog.
WARNING_VERBS = frozenset({"failed", "denied", "rejected", "expired", "error", "revoked"})

_RFC3339_MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def severity_for(event_type: str) -> int:
    verb = event_type.rsplit(".", 1)[-1].lower()
    return SEVERITY_WARNING if verb in WARNING_VERBS else SEVERITY_INFO


def msgid_for(event_type: str) -> str:
    msgid = ".".join(event_type.split(".")[-2:])
    # RFC 5424 caps MSGID at 32 printable ASCII characters.
    return _header_field(msgid, 32)


def _header_field(value: str, limit: int) -> str:
    cleaned = _PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or "-"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_message(event: AuditEvent, facility: int, hostname: str, procid: str) -> bytes:
    """One RFC 5424 SYSLOG-MSG whose MSG is the canonical CloudEvent JSON."""
    pri = facility * 8 + severity_for(event.type)
    timestamp = event.time if _RFC3339_MICRO.fullmatch(event.time) else "-"
    params = [f'id="{_sd_escape(event.id)}"']
    if event.request_id is not None:
        params.append(f'requestid="{_sd_escape(event.request_id)}"')
    structured = f"[{SD_ID} {' '.join(params)}]"
    header = (
        f"<{pri}>1 {timestamp} {_header_field(hostname, 255)} {APP_NAME} "
        f"{_header_field(procid, 128)} {msgid_for(event.type)} {structured} "
    )
    try:
        body: bytes = event.canonical_cloudevent
    except Exception as exc:
        raise AuditSinkError(f"syslog: event {event.id} is not JSON-serialisable: {exc}") from exc
    # The BOM marks MSG as UTF-8, as RFC 5424 section 6.4 asks.
    return header.encode("utf-8") + b"\xef\xbb\xbf" + body


def octet_frame(message: bytes) -> bytes:
    return str(len(message)).encode("ascii") + b" " + message


class _Connection:
    """One open transport; `send` raises OSError or trio errors when the peer is gone."""

    def __init__(
        self, *, stream: trio.abc.Stream | None = None, sock: trio.socket.SocketType | None = None
    ) -> None:
        self.stream = stream
        self.sock = sock

    async def send(self, messages: Sequence[bytes]) -> None:
        if self.stream is not None:
            if self._peer_closed():
                raise trio.BrokenResourceError("the syslog server closed the connection")
            await self.stream.send_all(b"".join(octet_frame(m) for m in messages))
            return
        assert self.sock is not None
        for message in messages:
            await self.sock.send(message)

    def _peer_closed(self) -> bool:
        # Syslog receivers never write back, so a readable stream means EOF or an error.
        # Writing into such a socket would "succeed" and lose the batch silently.
        if not isinstance(self.stream, trio.SocketStream):
            return False
        try:
            readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
        if self.sock is not None:
            self.sock.close()


class SyslogSink:
    def __init__(
        self,
        address: str,
        *,
        transport: str = "udp",
        facility: str = "local0",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
        if facility not in FACILITIES:
            raise ValueError(f"facility {facility!r} is not one of {', '.join(FACILITIES)}")
        self.address = address
        self.transport = transport
        self.facility = FACILITIES[facility]
        self.timeout = timeout
        self.name = f"syslog:{transport}:{address}"
        try:
            self._hostport = None if transport == "unix" else host_port(address)
        except ValueError as exc:
            raise ValueError(f"address: {exc}") from None
        self._hostname = socket.gethostname()
        self._procid = str(os.getpid())
        self._conn: _Connection | None = None
        self._lock = trio.Lock()

    @classmethod
    def from_options(cls, options: SyslogSinkOptions) -> SyslogSink:
        return cls(
            options.address,
            transport=options.transport,
            facility=options.facility,
            timeout=options.timeout,
        )

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> SyslogSink:
        return cls.from_options(syslog_options(Table(dict(table), key)))

    async def _connect(self) -> _Connection:
        if self.transport == "tcp":
            assert self._hostport is not None
            return _Connection(stream=await trio.open_tcp_stream(*self._hostport))
        if self.transport == "udp":
            assert self._hostport is not None
            host, port = self._hostport
            infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            if not infos:
                raise OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
            family, kind, proto, _, sockaddr = infos[0]
            sock = trio.socket.socket(family, kind, proto)
            try:
                await sock.connect(sockaddr)
            except BaseException:
                sock.close()
                raise
            return _Connection(sock=sock)
        # Local syslog daemons listen on datagram sockets (/dev/log); fall back to a
        # stream socket, framed like TCP, when the path turns out to be one.
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            await sock.connect(self.address)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
            return _Connection(stream=await trio.open_unix_socket(self.address))
        return _Connection(sock=sock)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with (
                trio.CancelScope(shield=True),
                contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await conn.aclose()

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        messages = [format_message(e, self.facility, self._hostname, self._procid) for e in events]
        async with self._lock:
            # A connection reused from an earlier batch may have died silently (peer
            # restarted); one fresh connection is worth trying before giving the batch back.
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    with trio.fail_after(self.timeout):
                        if self._conn is None:
                            self._conn = await self._connect()
                        await self._conn.send(messages)
                    return
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    await self._drop()
                    if reused and attempt == 1:
                        continue
                    raise AuditSinkError(
                        f"{self.name}: delivering {len(messages)} message(s) failed: {exc!r}"
                    ) from exc
                except trio.TooSlowError as exc:
                    await self._drop()
                    raise AuditSinkError(
                        f"{self.name}: delivering {len(messages)} message(s) took longer "
                        f"than {self.timeout}s"
                    ) from exc

    async def aclose(self) -> None:
        await self._drop()
