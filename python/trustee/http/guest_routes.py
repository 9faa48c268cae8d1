"""The guest's hot routes (`POST /kbs/v0/auth`, `POST /kbs/v0/attest`, `GET
/kbs/v0/resource/...`, `GET /healthz`) answered straight from ASGI, in front of the Quart app.

Every guest flow is three of these requests. Quart's request machinery (request context,
URL map, Request and Response objects, teardown) cost about an eighth of a worker's time per
request, measured, for routes that need none of it: the KBS core takes plain values and
returns a `Reply`. Everything else (admin API, metrics, readiness, unknown paths, methods
and odd paths such as `//`) still goes to Quart, and what a client sees from a hot route is
what Quart answered for it: same status, body and headers, same 413 and 408 answers.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import trio
from werkzeug.http import parse_cookie

from trustee.kbs import Kbs, Reply, Request

log = logging.getLogger("trustee.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Quart's own ASGI callable, typed with hypercorn's scope and event unions.
App = Callable[..., Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is kept when it is short and harmless in logs; otherwise we make one.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_PREFIX = "/kbs/v0/"
_HTML = b"text/html; charset=utf-8"
_EMPTY_HTML = [(b"content-type", _HTML), (b"content-length", b"0")]


def request_id_for(offered: str | None) -> str:
    """The caller's `X-Request-Id` when it is safe to log, else a fresh one."""
    if offered is None or not REQUEST_ID_RE.match(offered):
        return os.urandom(16).hex()
    return offered


class ScopeHeaders:
    """An ASGI scope's request headers, looked up case-insensitively; the first of a repeated
    name wins, as with Werkzeug's `Headers.get`."""

    __slots__ = ("_values",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        for raw_name, raw_value in raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "cookie" and name in values:
                # Several Cookie headers read as one, as Werkzeug's `Request.cookies` does.
                values[name] += ";" + value
            else:
                values.setdefault(name, value)
        self._values = values

    def get(self, key: str, /) -> str | None:
        return self._values.get(key.lower())

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._values


def is_guest_route(method: str, path: str) -> bool:
    if "//" in path:
        return False  # Quart's URL map redirects these; leave that to it
    if method == "POST":
        return path == "/kbs/v0/auth" or path == "/kbs/v0/attest"
    if method == "GET":
        return path.startswith("/kbs/v0/resource/") or path == "/healthz"
    return False


class _ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class _BodyRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _read_body(receive: Receive, declared: str | None, limit: int, timeout: float) -> bytes:
    """The whole request body, at most `limit` bytes, within `timeout` seconds: 413 and 408
    otherwise, as Quart answers them."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyRefused(413)
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _BodyRefused(413)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raise _BodyRefused(408)


class GuestRoutes:
    """ASGI middleware: the hot routes answered here, everything else passed to `inner`."""

    def __init__(self, kbs: Kbs, inner: App, max_body: int, body_timeout: float) -> None:
        self.kbs = kbs
        self.inner = inner
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_guest_route(scope["method"], scope["path"]):
            await self.inner(scope, receive, send)
            return
        if scope["path"] == "/healthz":
            await _send(send, 200, _EMPTY_HTML, b"")
            return
        try:
            await self._kbs_request(scope, receive, send)
        except _ClientGone:
            return
        except _BodyRefused as refused:
            headers = list(_EMPTY_HTML)
            if refused.status == 413:
                # The unread body is still on the wire: the next request on this keep-alive
                # connection would be parsed out of it.
                headers.append((b"connection", b"close"))
            await _send(send, refused.status, headers, b"")
        except Exception:
            log.exception("internal error while serving %s %s", scope["method"], scope["path"])
            await _send(send, 500, _EMPTY_HTML, b"")

    async def _kbs_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        kbs = self.kbs
        method: str = scope["method"]
        full_path: str = scope["path"]
        headers = ScopeHeaders(scope["headers"])
        kbs.metrics.request_started(full_path)
        status = 500
        length = headers.get("Content-Length")
        reply: Reply | None = None
        try:
            request_id = request_id_for(headers.get(REQUEST_ID_HEADER))
            body = b""
            if method != "GET" or length is not None or "Transfer-Encoding" in headers:
                try:
                    body = await _read_body(receive, length, self.max_body, self.body_timeout)
                except _BodyRefused as refused:
                    status = refused.status
                    raise
            # Admin ACLs match the URI as sent (not percent-decoded), query string included.
            uri = (scope.get("raw_path") or full_path.encode()).decode("latin-1")
            query: dict[str, str] = {}
            if qs := scope.get("query_string"):
                uri += "?" + qs.decode("latin-1")
                text = qs.decode("utf-8", "replace")
                for key, value in parse_qsl(text, keep_blank_values=True):
                    query.setdefault(key, value)
            cookie = headers.get("Cookie")
            client = scope.get("client")
            reply = await kbs.handle(
                Request(
                    method=method,
                    path=full_path[len(_PREFIX) :],
                    query=query,
                    body=body,
                    headers=headers,
                    cookies=parse_cookie(cookie) if cookie else {},
                    uri=uri,
                    peer=client[0] if client else None,
                    request_id=request_id,
                )
            )
            status = reply.status
        finally:
            kbs.metrics.request_finished(
                full_path,
                method,
                status,
                time.perf_counter() - started,
                int(length) if length and length.isdigit() else (0 if length is None else None),
                len(reply.body) if reply is not None else 0,
            )
        out = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in reply.headers
        ]
        out.append((b"x-request-id", request_id.encode("latin-1")))
        if reply.content_type is not None:
            out.append((b"content-type", reply.content_type.encode("latin-1")))
        out.append((b"content-length", str(len(reply.body)).encode("latin-1")))
        await _send(send, reply.status, out, reply.body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
