"""grpcio and trio, both ways, without blocking the event loop.

Server side: grpcio's synchronous server runs each call on a thread of its pool; `TrioPortal`
runs the call's coroutine on the process's trio loop and blocks only that pool thread.

Client side: `unary` starts a call with grpcio's future API and parks the trio task until the
call's completion callback (on a grpcio thread) wakes it, so no thread waits per call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import trio

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RequestCounter(Protocol):
    """Counts the calls in progress (the offload decides from it whether a hand-off pays)."""

    requests: int


class _NoCounter:
    requests = 0


class TrioPortal:
    """Runs coroutines on one trio loop from threads trio did not start."""

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        time_limit: float,
        counter: RequestCounter | None = None,
    ) -> None:
        self._token = token
        self.time_limit = time_limit
        self._counter: RequestCounter = counter or _NoCounter()

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await afn(*args)` on the loop, at most `time_limit` seconds (trio.TooSlowError);
        trio.RunFinishedError once the loop is gone."""
        return trio.from_thread.run(self._counted, afn, args, trio_token=self._token)

    async def _counted(self, afn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        self._counter.requests += 1
        try:
            with trio.fail_after(self.time_limit):
                return await afn(*args)
        finally:
            self._counter.requests -= 1


async def unary(
    method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout: float
) -> Resp:
    """One unary call from trio; grpc.RpcError as grpcio raises it (DEADLINE_EXCEEDED after
    `timeout` seconds). Cancelling the trio task cancels the call."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(_: object) -> None:
        # RunFinishedError: the loop ended first, and nobody waits any more.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    call = method.future(request, timeout=timeout)
    call.add_done_callback(wake)
    try:
        await done.wait()
    finally:
        if not call.done():
            call.cancel()
    return call.result()
