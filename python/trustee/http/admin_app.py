"""The Quart-Trio application behind the direct routes: the admin API, plugin writes, and every
method or path the direct routes leave alone (404, 405, HEAD, redirects of odd paths).

Built on the first request that needs it; no protocol logic lives here, the KBS core decides
and `kbs_reply` (shared with the direct routes) moves the bytes.
"""

from __future__ import annotations

import logging
from typing import Any

# Before Quart, which would otherwise load hypercorn's asyncio server for nothing.
from trustee.http import trio_only  # noqa: F401

# isort: split
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from trustee.http.direct_routes import kbs_reply, metrics_reply, readyz_reply
from trustee.kbs import Kbs, Reply

log = logging.getLogger("trustee.http")


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


def create_admin_app(kbs: Kbs, max_body: int, body_timeout: float) -> QuartTrio:
    app = QuartTrio("trustee")
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["BODY_TIMEOUT"] = body_timeout

    # GET is answered by the direct routes; these are here for HEAD, which Quart derives.
    @app.route("/healthz", methods=["GET"])
    async def healthz() -> Response:
        return Response(b"", status=200)

    @app.route("/readyz", methods=["GET"])
    async def readyz() -> Response:
        return _response(await readyz_reply(kbs))

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        return _response(metrics_reply(kbs))

    @app.route("/kbs/v0/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/kbs/v0/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    async def kbs_route(path: str) -> Response:
        async def read_body() -> bytes:
            data = await request.get_data(cache=False)
            assert isinstance(data, bytes)
            return data

        reply = await kbs_reply(
            kbs,
            request.scope,
            request.headers,
            read_body,
            request.cookies,
            # MultiDict.items() gives each name's first value, as the direct routes do.
            dict(request.args.items()) if request.scope.get("query_string") else {},
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
