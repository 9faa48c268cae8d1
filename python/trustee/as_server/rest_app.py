"""The standalone Attestation Service's ASGI application, served by `trustee.http.serve`.

Every route is answered straight from ASGI (as the KBS's guest routes are): the handlers in
`rest_handlers` take the body as bytes, so a web framework's request machinery would only
cost throughput. The lifespan runs the audit dispatcher and the native offload reader.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from trustee import offload
from trustee.as_server.rest_handlers import MAX_BODY, AsReply, RestAs, Route, too_large
from trustee.http import asgi
from trustee.http.app import AUDIT_FLUSH_SECONDS, counted, lifespan
from trustee.http.asgi import BodyRefused, Receive, Scope, ScopeHeaders, Send
from trustee.http.body_timeout import body_timeout

if TYPE_CHECKING:
    from trustee.as_server.cli import AsSettings

log = logging.getLogger("trustee.as")

_CLOSE = (b"connection", b"close")


class RestApp:
    def __init__(self, handlers: RestAs, offloader: offload.Offload | None = None) -> None:
        self.handlers = handlers
        self.offload = offload.DEFAULT if offloader is None else offloader
        self.body_timeout = body_timeout()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await counted(self.offload, self._http, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # a WebSocket: no route takes one
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = ScopeHeaders(scope["headers"])
        found = self.handlers.route(scope["method"], scope["path"])
        request_id = asgi.request_id_for(headers.get(asgi.REQUEST_ID_HEADER))
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        if isinstance(found, AsReply):
            reply = found
            if _has_body(headers):
                # The unread body is still on the wire: the next request on this keep-alive
                # connection would be parsed out of it.
                extra.append(_CLOSE)
        else:
            try:
                reply = await self._answer(found, scope, receive, headers, request_id)
            except asgi.ClientGone:
                return
            except BodyRefused as refused:
                declared = refused.declared if isinstance(refused, _TooLarge) else None
                reply = too_large(declared) if refused.status == 413 else AsReply(408)
                extra.append(_CLOSE)
        out = extra
        if reply.content_type is not None:
            out.append((b"content-type", reply.content_type.encode("latin-1")))
        out.append((b"content-length", str(len(reply.body)).encode("latin-1")))
        await asgi.send_answer(send, reply.status, out, reply.body)

    async def _answer(
        self, route: Route, scope: Scope, receive: Receive, headers: ScopeHeaders, request_id: str
    ) -> AsReply:
        body = b""
        if route.reads_json:
            declared = headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
                raise _TooLarge(int(declared))
            body = await asgi.read_request_body(receive, declared, MAX_BODY, self.body_timeout)
        try:
            return await self.handlers.call(route, body, headers.get("Content-Type"), request_id)
        except Exception:
            log.exception("internal error while serving %s %s", scope["method"], scope["path"])
            return AsReply(500, content_type=None)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        audit = self.handlers.audit

        async def start(nursery: trio.Nursery) -> None:
            await nursery.start(audit.run)
            await nursery.start(self.offload.run)

        async def stop() -> None:
            await audit.aclose(AUDIT_FLUSH_SECONDS)

        await lifespan(receive, send, start, stop)


class _TooLarge(BodyRefused):
    def __init__(self, declared: int) -> None:
        super().__init__(413)
        self.declared = declared


def _has_body(headers: ScopeHeaders) -> bool:
    length = headers.get("Content-Length")
    return (length is not None and length != "0") or "Transfer-Encoding" in headers


async def build_rest_app(settings: AsSettings) -> Any:
    """The app a worker serves, from the settings the command line made."""
    from trustee.as_assemble import assemble_as

    standalone = await assemble_as(settings.config, signer=settings.signer())
    return RestApp(RestAs(standalone))
