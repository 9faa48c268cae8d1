"""Support for the collateral tests: a real loopback HTTP server."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, dict[str, str]], Reply]


@dataclass
class LoopbackServer:
    """Routes by path; every request is counted by path and logged with its query."""

    routes: dict[str, Handler]
    counts: Counter[str] = field(default_factory=Counter)
    queries: list[str] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, raw_path: str) -> Reply:
        parts = urlsplit(raw_path)
        with self.lock:
            self.counts[parts.path] += 1
            self.queries.append(raw_path)
        handler = self.routes.get(parts.path)
        if handler is None:
            prefix = next(
                (p for p in self.routes if p.endswith("/") and parts.path.startswith(p)), None
            )
            handler = self.routes.get(prefix) if prefix else None
        if handler is None:
            return 404, {}, b"no such route"
        return handler(parts.path, dict(parse_qsl(parts.query)))


@contextmanager
def serve(routes: dict[str, Handler]) -> Iterator[LoopbackServer]:
    state = LoopbackServer(routes)

    class Handle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = state.reply(self.path)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def slow(seconds: float, handler: Handler) -> Handler:
    def wrapped(path: str, query: dict[str, str]) -> Reply:
        time.sleep(seconds)
        return handler(path, query)

    return wrapped


class FakeClock:
    """A unix-time clock the tests move by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
