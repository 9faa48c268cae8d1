"""Worker processes under a supervisor: it starts them (spawned, so each loads only what it
serves), replaces one that dies, passes SIGINT/SIGTERM on and reports a worker that could not
start as one line. The KBS's and the standalone AS's servers (REST and gRPC) run on it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("trustee")

EXIT_CONFIG = 2


class StartError(Exception):
    """The server stops before serving: exit `code`, with one line (the program's name goes
    in front of it)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A worker that keeps dying is restarted after this pause, so a crash loop cannot spin.
RESTART_BACKOFF = 0.5
SUPERVISOR_POLL = 0.2
# A worker killed by a signal before it serves is started again this many times in a row at
# most before the server gives up.
START_ATTEMPTS = 3


class ServingFlag:
    """Set by a worker once it serves, read by the supervisor. It is shared memory with no
    lock (unlike multiprocessing's Event), so a worker killed at any instant cannot leave the
    supervisor waiting for a lock the dead worker held."""

    def __init__(self, context: Any) -> None:
        self._value = context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def supervise(
    count: int,
    target: Callable[..., None],
    worker_args: Callable[[int], tuple[Any, ...]],
    name: str,
) -> int:
    """Run `target(*worker_args(index), ready, failures)` in `count` spawned processes: each
    sets `ready` (a ServingFlag) once it serves, or puts (exit code, one line) on `failures` if it
    cannot start. A worker that dies is replaced (within a second) for as long as the server
    should serve; SIGINT/SIGTERM are passed on, and each worker shuts down gracefully. A
    worker that fails before serving stops them all (StartError, with its line); one killed
    by a signal before serving is replaced, up to START_ATTEMPTS times in a row."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []
    workers: list[multiprocessing.process.BaseProcess] = []

    failures = context.SimpleQueue()
    started: list[Any] = [None] * count  # per worker: a ServingFlag set once it serves

    def start(index: int) -> multiprocessing.process.BaseProcess:
        ready = ServingFlag(context)
        worker = context.Process(
            target=target, args=(*worker_args(index), ready, failures), name=f"{name}-{index}"
        )
        worker.start()
        started[index] = ready
        return worker

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    workers.extend(start(i) for i in range(count))
    failed: list[str] = []
    early_deaths = [0] * count  # per worker: deaths in a row before it served
    while True:
        # Exits are looked at before anything else: workers that all failed to start within
        # one poll must still be reported as such, not taken for a finished server.
        alive = [w for w in workers if w.exitcode is None]
        if alive:
            wait([w.sentinel for w in alive], timeout=SUPERVISOR_POLL)
        for index, worker in enumerate(workers):
            if worker.exitcode is None:
                continue
            if stopping:
                if worker.exitcode not in (0, -signal.SIGINT, -signal.SIGTERM):
                    failed.append(worker.name or f"worker {index}")
                continue
            if started[index].is_set():
                early_deaths[index] = 0
            else:
                early_deaths[index] += 1
                if _start_failed(worker.exitcode, early_deaths[index], failures):
                    raise _stop_workers_after_failed_start(workers, failures, worker.exitcode)
            # Nothing asked it to stop: whatever ended it, the server keeps its capacity.
            log.error(
                "worker %d (pid %s) died (%s); starting a new one",
                index,
                worker.pid,
                _exit_reason(worker.exitcode),
            )
            time.sleep(RESTART_BACKOFF if worker.exitcode != 0 else 0)
            if not stopping:
                workers[index] = start(index)
        if stopping and all(w.exitcode is not None for w in workers):
            break
    if failed:
        log.error("workers exited with errors: %s", ", ".join(sorted(set(failed))))
        return 1
    return 0


def _start_failed(exitcode: int | None, early_deaths: int, failures: Any) -> bool:
    """Whether a worker that died before it served means the server cannot serve. One that
    exited (a store it cannot reach, a bad file) or said why would fail the same way again.
    One killed by a signal (the OOM killer, an operator, a load that slowed its start) is
    replaced, unless that keeps happening: then its start itself kills it."""
    if exitcode is None or exitcode >= 0 or not failures.empty():
        return True
    return early_deaths >= START_ATTEMPTS


def _stop_workers_after_failed_start(
    workers: list[Any], failures: Any, exitcode: int | None
) -> StartError:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(10)
    code, message = 1, f"a worker failed to start ({_exit_reason(exitcode)})"
    if not failures.empty():
        code, message = failures.get()
    return StartError(int(code), str(message))


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def run_worker(
    main: Callable[[int | None], Callable[[], Awaitable[None]]],
    failures: Any,
    errors: tuple[type[Exception], ...] = (),
) -> None:
    """A worker process's body: trio.run(main(the supervisor's sentinel)). Start-up errors go
    to the supervisor, which prints one line for the server and stops; `errors` are more
    exception types that mean "cannot serve" (exit 1, their message as the line)."""
    import multiprocessing

    import trio

    from trustee.config import ConfigError
    from trustee.logs import setup_logging

    setup_logging()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # the parent passed on SIGINT: shut down
            try:
                parent = multiprocessing.parent_process()
                trio.run(main(parent.sentinel if parent is not None else None))
            except BaseExceptionGroup as group:
                raise sole_error(group) from None
    except ConfigError as exc:
        failures.put((EXIT_CONFIG, str(exc)))
        sys.exit(EXIT_CONFIG)
    except errors as exc:
        failures.put((1, str(exc)))
        sys.exit(1)
    except OSError as exc:
        failures.put((1, f"cannot serve: {exc}"))
        sys.exit(1)


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a (nested) exception group holds, as itself: trio's nurseries wrap what
    fails inside them, and a person should read the error, not the nesting."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
