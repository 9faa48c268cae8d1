"""The Quart-Trio application: converts HTTP requests to `kbs.Request` and replies back.

No protocol logic lives here; the KBS core decides, this layer only moves bytes.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import trio

# Before Quart, which would otherwise load hypercorn's asyncio server for nothing.
from trustee.http import trio_only  # noqa: F401

# isort: split
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from trustee import offload
from trustee.http.body_timeout import body_timeout
from trustee.http.guest_routes import REQUEST_ID_HEADER, GuestRoutes, request_id_for
from trustee.kbs import Kbs, Reply, Request

log = logging.getLogger("trustee.http")

SESSION_PURGE_INTERVAL = 60.0
AUDIT_FLUSH_SECONDS = 10.0


def _response(reply: Reply) -> Response:
    # Headers keeps repeated names (several Set-Cookie); a dict would fold them.
    headers = Headers(reply.headers)
    if reply.content_type is not None:
        return Response(
            reply.body, status=reply.status, headers=headers, content_type=reply.content_type
        )
    response = Response(reply.body, status=reply.status, headers=headers)
    del response.headers["Content-Type"]
    return response


class _CountRequests:
    """ASGI middleware: keeps `offload.DEFAULT.requests` (requests not yet answered), which
    decides whether a hand-off to the native threads can pay (another request could use the
    loop meanwhile)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        answered = False

        async def counted_send(message: Any) -> None:
            nonlocal answered
            # Counted until the last byte of the answer is handed over, not until Quart's
            # teardown ends: a lone client's next request may already be in by then.
            if (
                not answered
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                answered = True
                offload.DEFAULT.requests -= 1
            await send(message)

        offload.DEFAULT.requests += 1
        try:
            await self.inner(scope, receive, counted_send)
        finally:
            if not answered:
                offload.DEFAULT.requests -= 1


def create_app(kbs: Kbs) -> QuartTrio:
    app = QuartTrio("trustee")
    max_body = kbs.config.http_server.payload_request_size * 1024 * 1024
    timeout = body_timeout()
    app.asgi_app = _CountRequests(  # type: ignore[method-assign]
        GuestRoutes(kbs, app.asgi_app, max_body, timeout)
    )
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["BODY_TIMEOUT"] = timeout

    async def purge_sessions() -> None:
        backoff = 5.0
        while True:
            await trio.sleep(SESSION_PURGE_INTERVAL)
            try:
                await kbs.sessions.purge_expired()
                backoff = 5.0
            except Exception:  # a failing store must not kill the server
                log.exception("session purge failed; retrying in %.0f s", backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 300.0)

    @app.before_serving
    async def start_background() -> None:
        app.nursery.start_soon(purge_sessions)
        await app.nursery.start(kbs.audit.run)
        await app.nursery.start(offload.DEFAULT.run)

    @app.after_serving
    async def flush_audit() -> None:
        # SIGINT/SIGTERM end up here: every sink gets a bounded time to drain its queue.
        await kbs.audit.aclose(AUDIT_FLUSH_SECONDS)

    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return Response(b"", status=200)

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        # Liveness stays /healthz; readiness also asks the session and KV stores.
        ok, why = await kbs.ready()
        if ok:
            return Response(b"", status=200)
        body = json.dumps({"ready": False, "reason": why}).encode()
        return Response(body, status=503, content_type="application/json")

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        body, content_type = kbs.metrics.render()
        return Response(body, status=200, content_type=content_type)

    @app.route("/kbs/v0/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/kbs/v0/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    async def kbs_route(path: str) -> Response:
        started = time.perf_counter()
        scope = request.scope
        headers = request.headers
        full_path = "/kbs/v0/" + path
        kbs.metrics.request_started(full_path)
        request_id = request_id_for(headers.get(REQUEST_ID_HEADER))
        body: bytes = b""
        # Bodiless GETs (every resource fetch) skip Quart's body wait and its cancel scope.
        if request.method != "GET" or "Content-Length" in headers or "Transfer-Encoding" in headers:
            data = await request.get_data(cache=False)
            assert isinstance(data, bytes)
            body = data
        # Admin ACLs match the URI as sent (not percent-decoded), query string included.
        uri = (scope.get("raw_path") or request.path.encode()).decode("latin-1")
        query: dict[str, str] = {}
        if qs := scope.get("query_string"):
            uri += "?" + qs.decode("latin-1")
            query = dict(request.args.items())
        client = scope.get("client")
        reply = await kbs.handle(
            Request(
                method=request.method,
                path=path,
                query=query,
                body=body,
                headers=headers,
                cookies=request.cookies,
                uri=uri,
                peer=client[0] if client else None,
                request_id=request_id,
            )
        )
        reply.headers.append((REQUEST_ID_HEADER, request_id))
        length = headers.get("Content-Length")
        kbs.metrics.request_finished(
            full_path,
            request.method,
            reply.status,
            time.perf_counter() - started,
            int(length) if length and length.isdigit() else (0 if length is None else None),
            len(reply.body),
        )
        return _response(reply)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Any:
        # Framework-level answers (404 outside /kbs/v0, 405, 413) carry empty bodies upstream.
        response = Response(b"", status=exc.code or 500)
        if exc.code == 413:
            # The unread body is still on the wire: end the connection so the next request on
            # a keep-alive connection is not parsed out of it (or left waiting behind it).
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Any:
        log.exception("internal error while serving %s %s", request.method, request.path)
        return Response(b"", status=500)

    return app
