"""The server's ASGI application: the lifespan (background tasks), the count of requests in
progress, the direct routes, and the Quart-Trio app behind them, built on first use."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trustee import offload
from trustee.http.body_timeout import body_timeout
from trustee.http.direct_routes import App, DirectRoutes, Receive, Scope, Send
from trustee.kbs import Kbs

log = logging.getLogger("trustee.http")

SESSION_PURGE_INTERVAL = 60.0
AUDIT_FLUSH_SECONDS = 10.0


async def counted(
    counter: offload.Offload, app: App, scope: Scope, receive: Receive, send: Send
) -> None:
    """`app` on one HTTP request, counted in `counter.requests` while it is unanswered.

    `Offload.requests` (requests not yet answered) decides whether a hand-off to the native
    threads can pay: another request could use the loop meanwhile."""
    answered = False

    async def counted_send(message: Any) -> None:
        nonlocal answered
        # Counted until the last byte of the answer is handed over, not until the request's
        # task ends: a lone client's next request may already be in by then.
        if (
            not answered
            and message["type"] == "http.response.body"
            and not message.get("more_body", False)
        ):
            answered = True
            counter.requests -= 1
        await send(message)

    counter.requests += 1
    try:
        await app(scope, receive, counted_send)
    finally:
        if not answered:
            counter.requests -= 1


async def lifespan(
    receive: Receive,
    send: Send,
    start: Callable[[trio.Nursery], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
) -> None:
    """The ASGI lifespan: `start` the server's background tasks in a nursery, report start-up,
    and at shutdown `stop` (drain what must be drained) before the tasks are cancelled."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    async with trio.open_nursery() as nursery:
        try:
            await start(nursery)
        except Exception as exc:
            log.exception("start-up failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            nursery.cancel_scope.cancel()
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await stop()
        nursery.cancel_scope.cancel()
    await send({"type": "lifespan.shutdown.complete"})


class KbsApp:
    def __init__(self, kbs: Kbs, offloader: offload.Offload | None = None) -> None:
        self.kbs = kbs
        # Whose hand-offs this server's requests inform (see `_counted`), and whose reader
        # task runs for the server's lifetime.
        self.offload = offload.DEFAULT if offloader is None else offloader
        self.max_body = kbs.config.http_server.payload_request_size * 1024 * 1024
        self.body_timeout = body_timeout()
        self.routes = DirectRoutes(kbs, self.framework, self.max_body, self.body_timeout)
        self._framework: App | None = None
        self._building = trio.Lock()

    async def framework(self) -> App:
        """The Quart-Trio app, built (and Quart imported) the first time it is needed: on a
        thread, so that the quarter of a second of importing does not stop the event loop
        (guests keep being served meanwhile), and once, however many requests wait for it."""
        if self._framework is None:
            async with self._building:
                if self._framework is None:
                    self._framework = await trio.to_thread.run_sync(self._build)
        return self._framework

    def _build(self) -> App:
        from trustee.http.admin_app import create_admin_app

        return create_admin_app(self.kbs, self.max_body, self.body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._counted(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await (await self.framework())(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        await counted(self.offload, self.routes, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        kbs = self.kbs

        async def start(nursery: trio.Nursery) -> None:
            nursery.start_soon(self._purge_sessions)
            await nursery.start(kbs.audit.run)
            await nursery.start(self.offload.run)

        async def stop() -> None:
            # SIGINT/SIGTERM end up here: every sink gets a bounded time to drain its queue.
            await kbs.audit.aclose(AUDIT_FLUSH_SECONDS)

        await lifespan(receive, send, start, stop)

    async def _purge_sessions(self) -> None:
        backoff = 5.0
        while True:
            await trio.sleep(SESSION_PURGE_INTERVAL)
            try:
                await self.kbs.sessions.purge_expired()
                backoff = 5.0
            except Exception:  # a failing store must not kill the server
                log.exception("session purge failed; retrying in %.0f s", backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 300.0)


def create_app(kbs: Kbs) -> KbsApp:
    return KbsApp(kbs)
