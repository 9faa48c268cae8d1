"""Drive a `trustee bench kbs` run: the workers, the CPU/RSS monitor, the progress line, and the
results object (schema: trustee.bench.results)."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio
from hdrh.histogram import HdrHistogram

from trustee.bench import histogram, procs, sysinfo
from trustee.bench.engine import WorkerSpec

# Above this share of the machine's CPU the generator competes with the server for cores (on a
# shared machine) or is itself near saturation, and the figures describe it, not the server.
GENERATOR_SHARE_WARNING = 0.40


@dataclass
class Monitor:
    """CPU of the generator (this process and its workers) and of the server, over the window."""

    server_pid: int | None
    start: tuple[float, float, float] | None = None
    end: tuple[float, float, float] | None = None
    rss_max: float = 0.0

    def sample(self) -> tuple[float, float, float]:
        rss = sysinfo.tree_rss_mib(self.server_pid)
        if rss is not None:
            self.rss_max = max(self.rss_max, rss)
        return (
            time.monotonic(),
            sysinfo.generator_cpu_seconds(),
            sysinfo.process_cpu_seconds(self.server_pid),
        )

    async def watch(self, window: float, end: float) -> None:
        await trio.sleep_until(trio.current_time() + max(0.0, window - time.monotonic()))
        self.start = self.sample()
        while time.monotonic() < end:
            await trio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            self.end = self.sample()

    def report(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if self.start is None or self.end is None or self.end[0] <= self.start[0]:
            generator = {"cpu_s": 0.0, "cores": 0.0, "share": 0.0}
            return generator, None
        wall = self.end[0] - self.start[0]
        cpu = self.end[1] - self.start[1]
        cores = cpu / wall
        generator = {
            "cpu_s": round(cpu, 3),
            "cores": round(cores, 3),
            "share": round(cores / (os.cpu_count() or 1), 3),
        }
        if self.server_pid is None:
            return generator, None
        server_cpu = self.end[2] - self.start[2]
        server = {
            "pid": self.server_pid,
            "cpu_s": round(server_cpu, 3),
            "cores": round(server_cpu / wall, 3),
            "rss_mib_max": self.rss_max,
        }
        return generator, server


@dataclass
class Progress:
    """One `\\r`-rewritten line per second on a terminal; silent otherwise."""

    stream: TextIO | None
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)

    def tick(self, index: int, tick: dict[str, Any]) -> None:
        self.latest[index] = tick
        if self.stream is None or index != 0:
            return
        ok = sum(t["ok"] for t in self.latest.values())
        errors = sum(t["errors"] for t in self.latest.values())
        last = histogram.merge([t["last"] for t in self.latest.values()])
        elapsed = tick["elapsed"]
        # A tick right at the window's start would divide a few flows by a few milliseconds.
        rate = ok / elapsed if elapsed >= 0.5 else 0.0
        p50, p99 = (last.get_value_at_percentile(q) / 1000 for q in (50, 99))
        phase = "warm-up" if elapsed < 0.5 else f"{elapsed:5.0f} s"
        self.stream.write(
            f"\r{phase}  {rate:8.1f} flows/s  p50 {p50:8.1f} ms  "
            f"p99 {p99:8.1f} ms  errors {errors}   "
        )
        self.stream.flush()

    def done(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


async def drive(
    specs: list[WorkerSpec], server_pid: int | None, progress: Progress
) -> tuple[dict[str, Any], Monitor]:
    monitor = Monitor(server_pid)
    spec = specs[0]
    async with trio.open_nursery() as nursery:

        def on_start(start_at: float) -> None:
            window = start_at + spec.warmup
            nursery.start_soon(monitor.watch, window, window + spec.duration)

        parts = await procs.run_procs(specs, on_start, progress.tick)
    progress.done()
    return procs.merge(parts), monitor


def timeline(seconds: dict[int, tuple[HdrHistogram, int, int]], duration: float) -> list[Any]:
    out = []
    for second in range(math.ceil(duration)):
        hist, ok, errors = seconds.get(second, (histogram.new(), 0, 0))
        p99 = hist.get_value_at_percentile(99) / 1000 if hist.get_total_count() else 0.0
        out.append({"t": second, "ok": ok, "errors": errors, "p99_ms": round(p99, 3)})
    return out


def assemble(
    merged: dict[str, Any], monitor: Monitor, spec: WorkerSpec, head: dict[str, Any]
) -> dict[str, Any]:
    """The results object: `head` (format, command, target, load, …) plus what was measured."""
    generator, server = monitor.report()
    errors = sum(merged["errors"].values())
    ok = merged["ok"]
    warnings = []
    if generator["share"] > GENERATOR_SHARE_WARNING:
        warnings.append(
            f"the load generator used {generator['share']:.0%} of the machine's CPU (more than "
            f"{GENERATOR_SHARE_WARNING:.0%}): it competes with the server, the figures are "
            "distorted; run it on another machine or with fewer flows"
        )
    checks = {
        "tokens_verified": 0,
        "tokens_unverified": 0,
        "secrets_decrypted": 0,
        "secret_mismatches": 0,
    } | merged["checks"]
    latency = histogram.summary(merged["hist"])
    # Little's law: flows in flight on average. Far below the clients of a closed loop, it says
    # the generator (not the server) set the pace.
    in_flight = ok / spec.duration * latency["mean"] / 1000 if ok else 0.0
    return head | {
        "totals": {
            "flows": ok + errors,
            "ok": ok,
            "errors": errors,
            "flows_per_s": round(ok / spec.duration, 3),
            "in_flight_mean": round(in_flight, 2),
        },
        "errors": dict(sorted(merged["errors"].items())),
        "error_messages": dict(sorted(merged["messages"].items())),
        "checks": checks,
        "latency_ms": latency,
        "latency_cdf": histogram.cdf(merged["hist"]),
        "timeline": timeline(merged["seconds"], spec.duration),
        "cpu": {"generator": generator, "server": server},
        "warnings": warnings,
    }


def progress_stream() -> TextIO | None:
    return sys.stderr if sys.stderr.isatty() else None
