"""grpcio and trio, both ways, without blocking the event loop.

Server side: grpcio's synchronous server runs each call on a thread of its pool; `TrioPortal`
runs the call's coroutine on the process's trio loop and blocks only that pool thread.

Client side: `unary` starts a call with grpcio's future API and parks the trio task until the
call's completion callback (on a grpcio thread) wakes it, so no thread waits per call.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
import outcome
import trio

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RequestCounter(Protocol):
    """Counts the calls in progress (the offload decides from it whether a hand-off pays)."""

    requests: int


class _NoCounter:
    requests = 0


class _Job:
    """One call from a foreign thread: the thread blocks on `done` until the loop releases it."""

    __slots__ = ("afn", "args", "done", "outcome")

    def __init__(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        self.afn, self.args = afn, args
        self.done = threading.Lock()
        self.done.acquire()
        self.outcome: outcome.Outcome[Any] | None = None

    def finish(self, result: outcome.Outcome[Any]) -> None:
        self.outcome = result
        self.done.release()


class TrioPortal:
    """Runs coroutines on one trio loop from threads trio did not start, while `serve` runs.

    Leaner than trio.from_thread.run per call, which counts under load: calls queue in a deque,
    one loop callback (scheduled only when none is pending, so one wake-up serves every call
    that arrived meanwhile) starts them as tasks of the portal's nursery, and each thread waits
    on a plain lock.
    """

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        time_limit: float,
        counter: RequestCounter | None = None,
    ) -> None:
        self._token = token
        self.time_limit = time_limit
        self._counter: RequestCounter = counter or _NoCounter()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._mutex = threading.Lock()
        self._scheduled = False
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run calls until cancelled; calls after that raise trio.RunFinishedError."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._start_pending()  # refuses what is still queued

    def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await afn(*args)` on the loop, at most `time_limit` seconds (trio.TooSlowError);
        trio.RunFinishedError when the portal or the loop is gone."""
        job = _Job(afn, args)
        self._jobs.append(job)
        with self._mutex:
            wake, self._scheduled = not self._scheduled, True
        if wake:
            try:
                self._token.run_sync_soon(self._start_pending)
            except trio.RunFinishedError:
                self._refuse_all()
        job.done.acquire()
        assert job.outcome is not None
        result: T = job.outcome.unwrap()
        return result

    def _start_pending(self) -> None:
        with self._mutex:
            self._scheduled = False
        nursery = self._nursery
        if nursery is None:
            self._refuse_all()
            return
        while self._jobs:
            nursery.start_soon(self._counted, self._jobs.popleft())

    def _refuse_all(self) -> None:
        gone = outcome.Error(trio.RunFinishedError("the server is shutting down"))
        while self._jobs:
            self._jobs.popleft().finish(gone)

    async def _counted(self, job: _Job) -> None:
        self._counter.requests += 1
        try:
            with trio.fail_after(self.time_limit):
                value = await job.afn(*job.args)
            result: outcome.Outcome[Any] = outcome.Value(value)
        except trio.Cancelled:
            job.finish(outcome.Error(trio.RunFinishedError("the server is shutting down")))
            raise
        except BaseException as exc:  # the asking thread raises it
            result = outcome.Error(exc)
        finally:
            self._counter.requests -= 1
        job.finish(result)


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
