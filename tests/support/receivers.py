"""Real network receivers for the audit sink tests: an HTTP CloudEvents endpoint, RFC 5424
syslog listeners (UDP, TCP with octet counting, unix datagram) and a throwaway redis-server."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.pki import make_cert, pem_cert, pem_key

# --------------------------------------------------------------------------- HTTP receiver


@dataclass
class HttpRequestRecord:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    status: int


class HttpReceiver:
    """Records CloudEvents POSTed to it; can fail requests on demand and be stopped and
    restarted on the same port, which is what a receiver outage looks like to the sink."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[HttpRequestRecord] = []
        self.events: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._run)

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    await trio.serve_listeners(self._serve, listeners, handler_nursery=nursery)
            finally:
                for listener in listeners:
                    await listener.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                status = self.fail_next.pop(0) if self.fail_next else 200
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                self.requests.append(
                    HttpRequestRecord(
                        request.method.decode(), request.target.decode(), headers, body, status
                    )
                )
                if status == 200:
                    self._record(headers.get("content-type", ""), body)
                reply = b'{"ok":true}' if status == 200 else b"try later"
                await stream.send_all(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[("content-length", str(len(reply)))],
                        )
                    )
                    or b""
                )
                await stream.send_all(conn.send(h11.Data(data=reply)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _record(self, content_type: str, body: bytes) -> None:
        parsed = json.loads(body)
        if content_type.startswith("application/cloudevents-batch+json"):
            self.events.extend(parsed)
        else:
            self.events.append(parsed)


# --------------------------------------------------------------------------- syslog listeners

_HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>\S+) "
    rb"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
)
_SD_ELEMENT = re.compile(rb'\[(?P<id>[^ \]="]+)(?P<params>(?: [^ \]="]+="(?:[^"\\\]]|\\.)*")*)\]')
_SD_PARAM = re.compile(rb' (?P<name>[^ \]="]+)="(?P<value>(?:[^"\\\]]|\\.)*)"')
BOM = b"\xef\xbb\xbf"


@dataclass
class SyslogMessage:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: dict[str, dict[str, str]]
    msg: bytes
    raw: bytes = field(repr=False)

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8

    def cloudevent(self) -> dict[str, Any]:
        assert self.msg.startswith(BOM), "MSG is not marked UTF-8 with a BOM"
        parsed: dict[str, Any] = json.loads(self.msg[len(BOM) :])
        return parsed


def parse_rfc5424(raw: bytes) -> SyslogMessage:
    """Strict enough to catch a malformed header, structured data or MSG separator."""
    head = _HEADER.match(raw)
    if head is None:
        raise ValueError(f"not an RFC 5424 header: {raw[:80]!r}")
    rest = raw[head.end() :]
    elements: dict[str, dict[str, str]] = {}
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while (element := _SD_ELEMENT.match(rest)) is not None:
            params = {
                p["name"].decode(): re.sub(rb"\\(.)", rb"\1", p["value"]).decode()
                for p in _SD_PARAM.finditer(element["params"])
            }
            elements[element["id"].decode()] = params
            rest = rest[element.end() :]
        if not elements:
            raise ValueError(f"no STRUCTURED-DATA in {raw[:120]!r}")
    if rest and not rest.startswith(b" "):
        raise ValueError(f"STRUCTURED-DATA not followed by SP: {rest[:40]!r}")
    return SyslogMessage(
        pri=int(head["pri"]),
        version=int(head["version"]),
        timestamp=head["timestamp"].decode(),
        hostname=head["hostname"].decode(),
        app_name=head["app"].decode(),
        procid=head["procid"].decode(),
        msgid=head["msgid"].decode(),
        structured_data=elements,
        msg=rest[1:],
        raw=raw,
    )


class SyslogListener:
    """Receives syslog over one transport and keeps the parsed messages in arrival order."""

    def __init__(self, transport: str, unix_path: Path | None = None) -> None:
        self.transport = transport
        self.unix_path = unix_path
        self.messages: list[SyslogMessage] = []
        self.address = ""
        self.port = 0
        self._arrived = trio.Event()
        self._scope: trio.CancelScope | None = None

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[SyslogMessage]:
        with trio.fail_after(timeout):
            while len(self.messages) < count:
                self._arrived = trio.Event()
                await self._arrived.wait()
        return self.messages

    def _add(self, raw: bytes) -> None:
        self.messages.append(parse_rfc5424(raw))
        self._arrived.set()

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serves until stopped; running it again reuses the same address."""
        with trio.CancelScope() as scope:
            self._scope = scope
            if self.transport == "tcp":
                listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                self.port = listeners[0].socket.getsockname()[1]
                self.address = f"127.0.0.1:{self.port}"
                try:
                    async with trio.open_nursery() as nursery:
                        task_status.started()
                        await trio.serve_listeners(
                            self._serve_tcp, listeners, handler_nursery=nursery
                        )
                finally:
                    for listener in listeners:
                        await listener.aclose()
                return
            if self.transport == "udp":
                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                await sock.bind(("127.0.0.1", self.port))
                self.port = sock.getsockname()[1]
                self.address = f"127.0.0.1:{self.port}"
            else:
                assert self.unix_path is not None
                self.unix_path.unlink(missing_ok=True)
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                await sock.bind(str(self.unix_path))
                self.address = str(self.unix_path)
            with sock:
                task_status.started()
                while True:
                    self._add(await sock.recv(1 << 17))

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        # RFC 6587 octet counting: "<length> SP <message>" back to back.
        buf = bytearray()
        async with stream:
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buf += chunk
                while (space := buf.find(b" ")) > 0:
                    length = int(buf[:space])
                    if len(buf) < space + 1 + length:
                        break
                    self._add(bytes(buf[space + 1 : space + 1 + length]))
                    del buf[: space + 1 + length]


# --------------------------------------------------------------------------- redis-server


REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


@dataclass(frozen=True)
class RedisTls:
    """A test CA and a server certificate for 127.0.0.1 issued by it (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_redis_tls(directory: Path, ca_name: str = "trustee-test-redis-ca") -> RedisTls:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert("127.0.0.1", key, (ca, ca_key), san_ip="127.0.0.1")
    tls = RedisTls(directory / "ca.pem", directory / "redis.crt", directory / "redis.key")
    tls.ca.write_bytes(pem_cert(ca))
    tls.cert.write_bytes(pem_cert(cert))
    tls.key.write_bytes(pem_key(key))
    return tls


class RedisServer:
    """A redis-server process on a fixed ephemeral port, restartable to simulate an outage."""

    def __init__(
        self, tmp_path: Path, password: str | None = None, tls: RedisTls | None = None
    ) -> None:
        assert REDIS_SERVER is not None
        self.port = _free_port()
        self.password = password
        self.tls = tls
        self.command = [
            REDIS_SERVER, "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--databases", "4",
        ]  # fmt: skip
        if tls is None:
            self.command += ["--port", str(self.port)]
        else:
            # TLS only: the plain port is off, clients need no certificate of their own.
            self.command += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key),
                "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no",
            ]  # fmt: skip
        if password:
            self.command += ["--requirepass", password]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"

    def cli(self, *args: str, db: int = 0) -> list[str]:
        """Runs redis-cli, an independent client, and returns its raw output lines."""
        assert REDIS_CLI is not None
        command = [REDIS_CLI, "-p", str(self.port), "-n", str(db), "--raw"]
        if self.tls:
            command += ["--tls", "--cacert", str(self.tls.ca)]
        if self.password:
            command += ["--no-auth-warning", "-a", self.password]
        out = subprocess.run([*command, *args], check=True, capture_output=True, timeout=10)
        return out.stdout.decode().splitlines()

    def xrange(self, stream: str, db: int = 0) -> list[tuple[str, dict[str, str]]]:
        # With --raw, XRANGE prints each entry as its id followed by field/value lines; the
        # canonical event JSON never contains a newline, so the lines split cleanly.
        lines = self.cli("XRANGE", stream, "-", "+", db=db)
        if lines == [""]:  # how redis-cli --raw prints an empty array
            return []
        entries = []
        per_entry = 7  # id, then id/type/event field-value pairs
        for start in range(0, len(lines), per_entry):
            entry_id, *kv = lines[start : start + per_entry]
            entries.append((entry_id, dict(zip(kv[::2], kv[1::2], strict=True))))
        return entries


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def redis_server(
    tmp_path: Path, password: str | None = None, tls: RedisTls | None = None
) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, password, tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
