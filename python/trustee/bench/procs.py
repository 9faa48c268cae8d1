"""Worker processes (spawned, each with its own trio loop) and the merge of what they count.

With one process the load runs in the caller's trio loop. With P processes each gets clients/P
guests or rate/P flows per second, its open-loop schedule shifted by its index so that the
merged arrivals stay evenly spaced; all start on one shared time.monotonic() instant (the clock
is system-wide), after every worker has imported and made its keys.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import trio

from trustee.bench import histogram
from trustee.bench.engine import WorkerSpec, make_guests, run_worker

START_DELAY_S = 0.3  # between "everyone is ready" and the first flow
READY_TIMEOUT_S = 60.0


class WorkerError(Exception):
    """A worker process failed; the message is its error."""


def split(spec: WorkerSpec, procs: int) -> list[WorkerSpec]:
    """The share of the load each of `procs` workers carries."""
    if procs <= 1:
        return [spec]
    out = []
    for index in range(procs):
        clients = spec.clients // procs + (1 if index < spec.clients % procs else 0)
        shift = index / spec.rate if spec.mode == "open" and spec.rate else 0.0
        out.append(replace(spec, clients=clients, rate=spec.rate / procs, start_at=shift))
    return [s for s in out if s.mode == "open" or s.clients > 0]


def _child(spec: WorkerSpec, index: int, events: Any, go: Any, start: Any) -> None:
    try:
        guests = make_guests(spec)
        events.put(("ready", index, None))
        go.wait()
        spec = replace(spec, start_at=start.value + spec.start_at)

        def report(tick: dict[str, Any]) -> None:
            events.put(("tick", index, tick))

        events.put(("done", index, trio.run(run_worker, spec, report, guests)))
    except BaseException as exc:  # the parent must hear of any failure
        events.put(("error", index, f"{type(exc).__name__}: {exc}"))


async def run_procs(
    specs: list[WorkerSpec], on_start: Callable[[float], None], tick: Callable[[int, Any], None]
) -> list[dict[str, Any]]:
    """Run `specs` in that many processes; `on_start(start_at)` once all are ready."""
    if len(specs) == 1:
        guests = make_guests(specs[0])
        start_at = time.monotonic() + START_DELAY_S
        on_start(start_at)
        spec = replace(specs[0], start_at=start_at)
        return [await run_worker(spec, lambda t: tick(0, t), guests)]
    ctx = multiprocessing.get_context("spawn")
    events, go, start = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    workers = [
        ctx.Process(target=_child, args=(s, i, events, go, start), daemon=True)
        for i, s in enumerate(specs)
    ]
    for worker in workers:
        worker.start()
    try:
        return await _collect(specs, events, go, start, on_start, tick)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join(timeout=5)


async def _collect(
    specs: list[WorkerSpec],
    events: Any,
    go: Any,
    start: Any,
    on_start: Callable[[float], None],
    tick: Callable[[int, Any], None],
) -> list[dict[str, Any]]:
    ready = 0
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(results) < len(specs):
        try:
            kind, index, payload = await trio.to_thread.run_sync(events.get, True, 1.0)
        except queue.Empty:
            if ready < len(specs) and time.monotonic() > deadline:
                raise WorkerError("worker processes did not start in time") from None
            continue
        if kind == "ready":
            ready += 1
            if ready == len(specs):
                start.value = time.monotonic() + START_DELAY_S
                on_start(start.value)
                go.set()
        elif kind == "tick":
            tick(index, payload)
        elif kind == "error":
            raise WorkerError(f"worker {index}: {payload}")
        else:
            results[index] = payload
    return [results[i] for i in sorted(results)]


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One tally out of the workers' (histograms merged, counts summed)."""
    errors: dict[str, int] = {}
    messages: dict[str, str] = {}
    checks: dict[str, int] = {}
    seconds: dict[int, list[Any]] = {}
    for part in parts:
        for name, count in part["errors"].items():
            errors[name] = errors.get(name, 0) + count
        for name, message in part["messages"].items():
            messages.setdefault(name, message)
        for name, count in part["checks"].items():
            checks[name] = checks.get(name, 0) + count
        for second, (blob, ok, failed) in part["seconds"].items():
            entry = seconds.setdefault(int(second), [[], 0, 0])
            entry[0].append(blob)
            entry[1] += ok
            entry[2] += failed
    return {
        "hist": histogram.merge([part["hist"] for part in parts]),
        "ok": sum(part["ok"] for part in parts),
        "errors": errors,
        "messages": messages,
        "checks": checks,
        "seconds": {k: (histogram.merge(v[0]), v[1], v[2]) for k, v in sorted(seconds.items())},
    }
