"""The routes answered straight from ASGI, in front of the Quart-Trio app: the guest's
(`POST /kbs/v0/auth`, `POST /kbs/v0/attest`, `GET /kbs/v0/resource/...`) and the probes'
(`GET /healthz`, `/readyz`, `/metrics`).

Every guest flow is three of these requests. Quart-Trio's request machinery (a nursery and two
tasks per request, the request context, URL map, Request and Response objects) cost more than
a third of the flow rate at 32 clients, measured, for routes that need none of it: the KBS core
takes plain values and returns a `Reply`. Everything else (the admin API, other methods, unknown
or odd paths such as `//`) goes to the Quart app, which is built on first use, so a sidecar
that only serves guests never loads the framework. A client sees from a direct route what Quart
answered for it: same status, body and headers, same 413 and 408 answers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from trustee.http.asgi import (
    REQUEST_ID_HEADER,
    App,
    BodyRefused,
    ClientGone,
    Receive,
    Scope,
    ScopeHeaders,
    Send,
    read_request_body,
    request_id_for,
    send_answer,
)
from trustee.kbs import JSON, Kbs, Reply, Request
from trustee.protocol.headers import HeaderLookup

__all__ = [
    "REQUEST_ID_HEADER",
    "App",
    "BodyRefused",
    "DirectRoutes",
    "Receive",
    "Scope",
    "ScopeHeaders",
    "Send",
    "is_direct_route",
    "kbs_reply",
    "metrics_reply",
    "parse_cookies",
    "parse_query",
    "readyz_reply",
    "request_id_for",
]

log = logging.getLogger("trustee.http")

_PREFIX = "/kbs/v0/"
_HTML = b"text/html; charset=utf-8"
_EMPTY_HTML = [(b"content-type", _HTML), (b"content-length", b"0")]


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def is_direct_route(method: str, path: str) -> bool:
    if "//" in path:
        return False  # Quart's URL map redirects these; leave that to it
    if method == "POST":
        return path == "/kbs/v0/auth" or path == "/kbs/v0/attest"
    if method == "GET":
        return path.startswith("/kbs/v0/resource/") or path in _PROBES
    return False


def parse_cookies(header: str) -> dict[str, str]:
    """`name=value; …` as Werkzeug reads it for what the KBS looks at: the first of a repeated
    name wins, and a double-quoted value loses its quotes and backslash escapes."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.partition("=")
        name = name.strip()
        if not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        cookies.setdefault(name, value)
    return cookies


def parse_query(raw: bytes) -> dict[str, str]:
    """The query string's parameters, the first of a repeated name winning."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        query.setdefault(key, value)
    return query


async def readyz_reply(kbs: Kbs) -> Reply:
    # Liveness stays /healthz; readiness also asks the session and KV stores.
    ok, why = await kbs.ready()
    if ok:
        return Reply(content_type="text/html; charset=utf-8")
    return Reply(
        status=503, body=json.dumps({"ready": False, "reason": why}).encode(), content_type=JSON
    )


def metrics_reply(kbs: Kbs) -> Reply:
    body, content_type = kbs.metrics.render()
    return Reply(body=body, content_type=content_type)


def _status_of(exc: BaseException) -> int:
    # A refused body (ours, or Werkzeug's HTTPException from Quart) carries its status.
    for attr in ("status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return 500


async def kbs_reply(
    kbs: Kbs,
    scope: Mapping[str, Any],
    headers: HeaderLookup,
    read_body: Callable[[], Awaitable[bytes]],
    cookies: Mapping[str, str],
    query: Mapping[str, str],
) -> Reply:
    """One `/kbs/v0/...` request through the KBS core, counted in the metrics; the reply
    carries the request id. Shared by the direct routes and the Quart app."""
    started = time.perf_counter()
    method: str = scope["method"]
    full_path: str = scope["path"]
    kbs.metrics.request_started(full_path)
    length = headers.get("Content-Length")
    status = 500
    reply: Reply | None = None
    try:
        request_id = request_id_for(headers.get(REQUEST_ID_HEADER))
        body = b""
        if method != "GET" or length is not None or headers.get("Transfer-Encoding") is not None:
            body = await read_body()
        # Admin ACLs match the URI as sent (not percent-decoded), query string included.
        uri = (scope.get("raw_path") or full_path.encode()).decode("latin-1")
        if qs := scope.get("query_string"):
            uri += "?" + qs.decode("latin-1")
        client = scope.get("client")
        reply = await kbs.handle(
            Request(
                method=method,
                path=full_path[len(_PREFIX) :],
                query=dict(query),
                body=body,
                headers=headers,
                cookies=cookies,
                uri=uri,
                peer=client[0] if client else None,
                request_id=request_id,
            )
        )
        status = reply.status
        reply.headers.append((REQUEST_ID_HEADER, request_id))
        return reply
    except BaseException as exc:
        status = _status_of(exc)
        raise
    finally:
        kbs.metrics.request_finished(
            full_path,
            method,
            status,
            time.perf_counter() - started,
            int(length) if length and length.isdigit() else (0 if length is None else None),
            len(reply.body) if reply is not None else 0,
        )


class DirectRoutes:
    """ASGI: the direct routes answered here, everything else passed to the app `fallback`
    gives (built once, on first use)."""

    def __init__(
        self,
        kbs: Kbs,
        fallback: Callable[[], Awaitable[App]],
        max_body: int,
        body_timeout: float,
    ) -> None:
        self.kbs = kbs
        self.fallback = fallback
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_direct_route(scope["method"], scope["path"]):
            await (await self.fallback())(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            if path == "/healthz":
                reply = Reply(content_type="text/html; charset=utf-8")
            elif path == "/readyz":
                reply = await readyz_reply(self.kbs)
            elif path == "/metrics":
                reply = metrics_reply(self.kbs)
            else:
                reply = await self._kbs(scope, receive)
        except ClientGone:
            return
        except BodyRefused as refused:
            headers = list(_EMPTY_HTML)
            if refused.status == 413:
                # The unread body is still on the wire: the next request on this keep-alive
                # connection would be parsed out of it.
                headers.append((b"connection", b"close"))
            await send_answer(send, refused.status, headers, b"")
            return
        except Exception:
            log.exception("internal error while serving %s %s", scope["method"], path)
            await send_answer(send, 500, _EMPTY_HTML, b"")
            return
        out = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in reply.headers]
        if reply.content_type is not None:
            out.append((b"content-type", reply.content_type.encode("latin-1")))
        out.append((b"content-length", str(len(reply.body)).encode("latin-1")))
        await send_answer(send, reply.status, out, reply.body)

    async def _kbs(self, scope: Scope, receive: Receive) -> Reply:
        headers = ScopeHeaders(scope["headers"])
        cookie = headers.get("Cookie")
        qs = scope.get("query_string")
        return await kbs_reply(
            self.kbs,
            scope,
            headers,
            lambda: read_request_body(
                receive, headers.get("Content-Length"), self.max_body, self.body_timeout
            ),
            parse_cookies(cookie) if cookie else {},
            parse_query(qs) if qs else {},
        )
