#!/usr/bin/env python3
"""Flows per second with one and two worker processes sharing Redis, against one worker alone.

Run from the repository root with the project's venv (redis-server on PATH):

    .venv/bin/python benches/scale.py [--clients 32] [--duration 8] [--warmup 2]

Three servers are measured in turn, each the real `trustee serve` process tree, with the load
generator of benches/flow.py (full sample-TEE flows over keep-alive connections):

* `memory`: one worker, sessions and storage in memory (the single-process baseline);
* `1w`: one worker, sessions and storage in a local redis-server started by the bench;
* `2w`: `worker_count = 2` on the same Redis.

Server CPU is summed over the whole process tree (the parent and its workers) during the
phase. stdout: one JSON object per server, then a last line with `flows_1w`, `flows_2w`,
`cpu_ms_per_flow` (of 2w), `ratio` = flows_2w / flows_1w. Target ratio ≥ 1.3 on 2 cores shared
with the load generator and Redis.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import (
    CONFIG,
    Guest,
    Server,
    log,
    process_cpu_seconds,
    run_phase,
    running_server,
    seed,
)


def template(redis_url: str | None, workers: int) -> str:
    """The standard bench config, moved to Redis and given `workers` worker processes."""
    if redis_url is None:
        return CONFIG
    text = 'session_storage_type = "Redis"\n' + CONFIG
    text = text.replace('storage_type = "Memory"', 'storage_type = "Redis"')
    text = text.replace("insecure_http = true", f"insecure_http = true\nworker_count = {workers}")
    return text + f'\n[storage_backend.backends.redis]\nurl = "{redis_url}"\n'


async def measure(server: Server, clients: int, warmup: float, duration: float) -> dict[str, float]:
    await seed(server, None)
    guests = [Guest(server.port) for _ in range(clients)]
    pid = server.pid
    cpu_before, start = process_cpu_seconds(pid), time.perf_counter()

    async def flow(guest: Guest) -> bytes:
        return await guest.flow()

    phase = await run_phase(guests, flow, warmup, duration, pid)
    elapsed, cpu = time.perf_counter() - start, process_cpu_seconds(pid) - cpu_before
    flows_per_s = len(phase.latencies) / duration
    # CPU over the whole phase (warm-up and drain included) per flow served in that time.
    return {
        "flows_per_s": flows_per_s,
        "cpu_ms_per_flow": 1000 * cpu / max(flows_per_s * elapsed, 1.0),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not on PATH", file=sys.stderr)
        return 2
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    results: dict[str, dict[str, float]] = {}
    try:
        time.sleep(0.5)
        for name, redis_url, workers in (("memory", None, 1), ("1w", url, 1), ("2w", url, 2)):
            with (
                tempfile.TemporaryDirectory(prefix="trustee-scale-") as tmp,
                running_server(
                    Path(tmp), None, "", template(redis_url, workers), wait_workers=workers
                ) as server,
            ):
                result = trio.run(
                    measure, server, args.clients, args.warmup, args.duration,
                )  # fmt: skip
            results[name] = result
            line = {"server": name, "workers": workers}
            line.update({k: round(v, 3) for k, v in result.items()})
            log(f"{name}: {line}")
            print(json.dumps(line), flush=True)
    finally:
        redis.terminate()
        redis.wait(10)
    summary = {
        "flows_1w": round(results["1w"]["flows_per_s"], 2),
        "flows_2w": round(results["2w"]["flows_per_s"], 2),
        "cpu_ms_per_flow": round(results["2w"]["cpu_ms_per_flow"], 3),
        "ratio": round(results["2w"]["flows_per_s"] / results["1w"]["flows_per_s"], 3),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
