"""Serve the app with hypercorn on trio, on sockets from `trustee.http.listen`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.events import Closed, RawData, Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, repr_socket_addr, wrap_app

from trustee.config.model import HttpServerConfig
from trustee.http.connections import STATS, Admission, Slot, default_max_connections
from trustee.http.listen import hypercorn_config

log = logging.getLogger("trustee.http")

# How long one write to a client may take before the connection is given up: a client that
# stops reading must not hold a worker's connection slot (and its answer buffer) forever.
SEND_TIMEOUT = 30.0
# How often idle and stalled connections are looked for.
SWEEP_INTERVAL = 1.0
# Bounds the shielded bookkeeping around a close, so no shielded wait can hang.
CLOSE_TIMEOUT = 5.0
_SHED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\n"
    b"connection: close\r\n\r\n"
)


def _is_final_head(data: bytes) -> bool:
    """A response head with a final (not 1xx) status: `HTTP/1.1 200 …\r\n\r\n`. A 100
    Continue is never held back: the client waits for it before sending the body."""
    return data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1" and data.endswith(b"\r\n\r\n")


_STREAM_GONE = (
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.BusyResourceError,
    OSError,
)


class _Connection(TCPServer):
    """One client connection, served by hypercorn's HTTP/1.1 machinery, with its failures kept
    to itself.

    hypercorn (0.18) closes a connection from whichever task notices the end first, unshielded
    and without the send lock: a close racing an answer's write raised BusyResourceError out of
    the connection and ended the whole server, and a close cancelled midway (Quart-Trio cancels
    its request task as soon as the answer is out) left `Connection: close` and idle keep-alive
    connections open for good. Here closing is idempotent and shielded with a deadline, any
    exception a connection raises is logged and counted, never propagated, and the keep-alive
    and write timeouts are kept by `Admission.sweep` instead of a timer task per request.
    """

    def __init__(
        self, *args: Any, admission: Admission, slot: Slot, peer: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._admission = admission
        self._slot = slot
        self._peer = peer
        self._closed = False
        self._held = b""

    async def run(self) -> None:
        try:
            with trio.CancelScope() as scope:
                self._slot.close = scope.cancel
                self._slot.abort = self._abort
                await super().run()
        except Exception as exc:
            self._failed(exc)
        except BaseExceptionGroup as group:
            failures, rest = group.split(Exception)
            if failures is not None:
                self._failed(failures)
            if rest is not None:
                raise rest from None
        finally:
            self._slot.close = self._slot.abort = None
            with trio.CancelScope(shield=True):
                await self._close()

    def _failed(self, exc: BaseException) -> None:
        STATS.failed += 1
        log.warning(
            "connection from %s ended by %s: %s",
            self._peer,
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    def _abort(self) -> None:
        # The client stopped reading: closing the socket ends the write blocked on it.
        log.info("connection from %s: client stopped reading an answer; closing", self._peer)
        transport = getattr(self.stream, "transport_stream", self.stream)
        with contextlib.suppress(OSError):
            transport.socket.close()

    async def protocol_send(self, event: Any) -> None:
        if isinstance(event, RawData):
            data = event.data
            if self._held:
                data, self._held = self._held + data, b""
            elif _is_final_head(data):
                # hypercorn writes a response's head, body and end as separate events, and
                # an end always follows the head: one send for the lot saves a system call
                # (and a loopback round of TCP work) per answer.
                self._held = data
                return
            async with self.send_lock:
                self._slot.sending_since = trio.current_time()
                try:
                    # Shielded so a cancelled request never leaves half an answer on the wire.
                    with trio.CancelScope(shield=True):
                        await self.stream.send_all(data)
                    return
                except _STREAM_GONE:
                    pass
                finally:
                    self._slot.sending_since = None
            await self._shielded(self._end)
        elif isinstance(event, Closed):
            await self._shielded(self._end)
        elif isinstance(event, Updated):
            if event.idle:
                self._admission.idle(self._slot, trio.current_time())
            else:
                self._admission.busy(self._slot)

    async def _idle_timeout(self) -> None:
        # hypercorn's per-connection timer; `Admission.sweep` keeps the keep-alive timeout.
        return

    async def _end(self) -> None:
        await self._close()
        await self.protocol.handle(Closed())

    @staticmethod
    async def _shielded(action: Callable[[], Awaitable[None]]) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_TIMEOUT):
            await action()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            # A write in progress owns the send side; closing the socket ends that write.
            if not self.send_lock.locked():
                with contextlib.suppress(*_STREAM_GONE, AttributeError):
                    # TLS streams have no half-close (AttributeError); aclose sends close_notify.
                    await self.stream.send_eof()
            with trio.move_on_after(CLOSE_TIMEOUT) as scope, contextlib.suppress(*_STREAM_GONE):
                await self.stream.aclose()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self.stream)


async def _shed(stream: Any) -> None:
    """Every slot is busy: a plain-HTTP client gets a 503 it can retry; a TLS client is
    closed before the handshake (nothing can be said to it without one)."""
    with trio.move_on_after(1), contextlib.suppress(*_STREAM_GONE):
        if isinstance(stream, trio.SocketStream):
            await stream.send_all(_SHED_RESPONSE)
    await trio.aclose_forcefully(stream)


def _peer_of(stream: Any) -> str:
    sock = getattr(stream, "socket", None) or getattr(
        getattr(stream, "transport_stream", None), "socket", None
    )
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("?", 0)
    except OSError:
        return "?"
    return f"{host}:{port}"


def _listeners(hc: HypercornConfig, sockets: Sockets) -> list[Any]:
    """trio listeners on the already listening `sockets`, TLS on the secure ones."""
    listeners: list[Any] = []
    ssl_context = hc.create_ssl_context()
    for sock in sockets.secure_sockets:
        assert ssl_context is not None
        listeners.append(
            trio.SSLListener(
                trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                ssl_context,
                https_compatible=True,
            )
        )
    for sock in sockets.insecure_sockets:
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        scheme = "https" if sock in sockets.secure_sockets else "http"
        log.info("Running on %s://%s", scheme, repr_socket_addr(sock.family, sock.getsockname()))
    return listeners


def _connection_handler(
    app: Any,
    hc: HypercornConfig,
    context: WorkerContext,
    state: dict[str, Any],
    admission: Admission,
) -> Callable[[Any], Awaitable[None]]:
    """What serves one accepted stream: a slot from `admission` or a 503, then a
    `_Connection` whose failures stay its own."""

    async def handle(stream: Any) -> None:
        slot = admission.admit(trio.current_time())
        if slot is None:
            log.warning("all %d connection slots busy; answering 503", admission.max_connections)
            await _shed(stream)
            return
        try:
            connection = _Connection(
                app,
                hc,
                context,
                ConnectionState(state.copy()),
                stream,
                admission=admission,
                slot=slot,
                peer=_peer_of(stream),
            )
            await connection.run()
        finally:
            admission.release(slot)

    return handle


async def _sweep(admission: Admission) -> None:
    while True:
        await trio.sleep(SWEEP_INTERVAL)
        admission.sweep(trio.current_time())


async def _stop_when(trigger: Callable[..., Awaitable[None]]) -> None:
    # ShutdownError ends the serving nursery, taking its siblings with it; it is not a failure.
    await trigger()
    raise ShutdownError()


async def _serve_sockets(
    app: Any,
    hc: HypercornConfig,
    sockets: Sockets,
    shutdown_trigger: Callable[..., Awaitable[None]] | None,
    max_connections: int,
) -> None:
    """Serve `app` on already listening `sockets` until `shutdown_trigger` returns.

    hypercorn's own loop lets an exception from any connection end the server; this one gives
    each connection a slot (see `trustee.http.connections`) and contains its failures.
    """
    hc.set_statsd_logger_class(StatsdLogger)
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, hc, state)
    context = WorkerContext(None)
    admission = Admission(
        max_connections, keep_alive=hc.keep_alive_timeout, send_timeout=SEND_TIMEOUT
    )

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners = _listeners(hc, sockets)
            handle = _connection_handler(app, hc, context, state, admission)
            try:
                async with trio.open_nursery() as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(_stop_when, shutdown_trigger)
                    nursery.start_soon(_stop_when, context.terminate.wait)
                    nursery.start_soon(_sweep, admission)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners, handle, listeners, handler_nursery=connections
                        )
                    )
            except BaseExceptionGroup as group:
                _, other = group.split((ShutdownError, KeyboardInterrupt))
                if other is not None:
                    raise other from None
            finally:
                await context.terminated.set()
                admission.close_idle()
                # Requests in flight get the graceful timeout, then are cancelled.
                connections.cancel_scope.deadline = trio.current_time() + hc.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


async def serve(
    app: Any,
    cfg: HttpServerConfig,
    sockets: Sockets,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    max_connections: int | None = None,
) -> None:
    """Serve on `sockets` from `trustee.http.listen.worker_sockets`: bound and listening
    before this process built its app."""
    hc = hypercorn_config(cfg)
    cap = max_connections if max_connections is not None else default_max_connections()
    await _serve_sockets(
        wrap_app(app, hc.wsgi_max_body_size, None), hc, sockets, shutdown_trigger, cap
    )
