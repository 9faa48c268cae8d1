"""Coarse native calls of the request path, run on native threads off the event loop.

Hardware evidence verification, policy evaluation, token signing and resource sealing are
pure Rust work. On a worker's single Python thread they would take turns with HTTP parsing and
routing; here they run on native threads (`trustee._core.offload_start`) that never take the
GIL. A finished job writes its id to a pipe; one reader task per event loop wakes the request
task waiting for it, which converts the outcome back on the loop's thread.

Until the reader runs (command-line tools, in-process tests) or with zero threads, every call
runs inline, with the same result. So does a call made while its request is the only one in
progress (and has been for 50 ms): with nothing else to use the loop, a hand-off only adds
its latency.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import outcome
import trio

from trustee import _core
from trustee.offload_threads import default_threads

T = TypeVar("T")

log = logging.getLogger("trustee.offload")

_READ_CHUNK = 8 * 4096
# After the server last had concurrent requests (or jobs in flight), calls keep being
# offloaded for this long: under load there are instants with a single request in progress.
BUSY_WINDOW_S = 0.05

# Ids are unique per process: the pipe is, and a job finishing after its reader stopped
# must not wake a later reader's task.
_job_ids = itertools.count(1)
# The pipe is per process, so is the table of waiting tasks and the one reader allowed at a
# time (a second one would take ids whose tasks it does not know).
_waiting: dict[int, trio.lowlevel.Task] = {}
_reader_running = False


class Offload:
    def __init__(self, threads: int | None = None, *, adaptive: bool = True) -> None:
        # None: `default_threads()` when the reader starts (the environment is read then).
        self.threads = threads
        self.active = False
        self._busy_until = 0.0
        # False: offload every call while the reader runs, busy or not.
        self.adaptive = adaptive
        # HTTP requests the server is handling now (kept by the app's middleware).
        self.requests = 0
        # Calls by where they ran, and the threads started (read by /metrics at scrape time).
        self.offloaded = 0
        self.inlined = 0
        self.started_threads = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reader: hand finished jobs to their tasks until cancelled."""
        global _reader_running
        threads = default_threads() if self.threads is None else self.threads
        if threads <= 0 or _reader_running:
            task_status.started()
            return
        fd, started = _core.offload_start(threads)
        os.set_blocking(fd, False)
        log.info("verification, policy, signing and sealing run on %d native thread(s)", started)
        _reader_running = self.active = True
        self.started_threads = started
        task_status.started()
        partial = b""
        try:
            while True:
                if _waiting:
                    # Under load a job has usually finished by the time the other ready tasks
                    # have had their turn: look before paying for an epoll registration.
                    await trio.lowlevel.checkpoint()
                    try:
                        data = partial + os.read(fd, _READ_CHUNK)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(fd)
                        continue
                else:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = partial + os.read(fd, _READ_CHUNK)
                    except BlockingIOError:
                        continue
                whole = len(data) - len(data) % 8
                partial = data[whole:]
                for (job_id,) in struct.iter_unpack("<Q", data[:whole]):
                    task = _waiting.pop(job_id, None)
                    if task is not None:
                        trio.lowlevel.reschedule(task)
        finally:
            _reader_running = self.active = False
            stopped = outcome.Error(RuntimeError("the offload reader stopped while a job ran"))
            for task in _waiting.values():
                trio.lowlevel.reschedule(task, stopped)
            _waiting.clear()

    def _runs_inline(self) -> bool:
        if not self.active:
            return True
        now = time.monotonic()
        if _waiting or self.requests > 1:
            self._busy_until = now + BUSY_WINDOW_S
            return False
        # Nothing else has wanted the loop lately (one guest at a time): a hand-off would
        # only add its latency.
        return self.adaptive and now >= self._busy_until

    async def call(self, submit: Callable[[int], _core.Job[T]], inline: Callable[[], T]) -> T:
        """`submit(job_id)` starts the job on a thread; `inline()` is the same call here."""
        if self._runs_inline():
            self.inlined += 1
            return inline()
        return await self._offloaded(submit)

    async def call_sliced(
        self,
        submit: Callable[[int], _core.Job[T]],
        inline: Callable[[], T | None],
        whole: Callable[[], T],
    ) -> T:
        """Like `call` for a pure call that may take long: `inline()` runs it here for a short
        time slice and gives None when the slice ran out; then it runs again from the start off
        the loop, on the offload threads (`submit`) or, without them, `whole()` on a trio
        worker thread. A native thread cannot be interrupted, so nothing long ever runs here."""
        if self._runs_inline():
            self.inlined += 1
            quick = inline()
            if quick is not None:
                return quick
            if not self.active:
                return await trio.to_thread.run_sync(whole)
        return await self._offloaded(submit)

    async def _offloaded(self, submit: Callable[[int], _core.Job[T]]) -> T:
        job_id = next(_job_ids)
        job = submit(job_id)
        self.offloaded += 1
        # No checkpoint since submit: the reader cannot have seen this id yet.
        _waiting[job_id] = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            _waiting.pop(job_id, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return job.result()


# The KBS worker's instance; the HTTP app starts its reader.
DEFAULT = Offload()

_snapshot: tuple[Mapping[str, str], _core.ReferenceValues] | None = None


def reference_values(values: Mapping[str, str]) -> _core.ReferenceValues:
    """The native form of an RVPS snapshot, converted once per snapshot object."""
    global _snapshot
    if _snapshot is None or _snapshot[0] is not values:
        _snapshot = (values, _core.ReferenceValues(dict(values)))
    return _snapshot[1]
