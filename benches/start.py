#!/usr/bin/env python3
"""Start-up cost of `trustee serve`: time to a listening socket and to the first answer, and
idle resident memory per process.

Run from the repository root with the project's venv:

    .venv/bin/python benches/start.py [--runs 5] [--idle 2] [--workers N | --config FILE]

Each run spawns `trustee serve` on a free loopback port: with the embedded development config
by default (what a bare `trustee serve` runs: a worker per core), with `--workers N` flow.py's
bench config (N = 1: Memory storage, served by the process itself; above 1: LocalFs in a
temporary directory and N spawned workers), or with `--config FILE`. It records

* `listening_s`: spawn to the first successful `connect()` (the socket listens; a TCP probe
  would pass). With workers the supervisor binds before it spawns them, so this says little
  about when requests are answered;
* `serving_s`: spawn to the first `GET /healthz` answered 200 (polled every millisecond);
* `cpu_s`: user + system CPU of the whole process tree until then, less sensitive to other
  load on the machine than wall time;
* after `--idle` seconds: `rss_mib` (VmRSS) of the process `trustee serve` started and
  `worker_rss_mib` (the largest of its children's; equal to `rss_mib` without workers).

The floor is `python -c pass` (spawn to exit) with the same interpreter.

Byte-code matters: with PYTHONDONTWRITEBYTECODE set and no cached .pyc for the package (an
editable install), every start compiles the package's sources; an installed wheel has them.

stdout gets one JSON object per run, then the medians and the minima.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import CONFIG, HOST, free_port, local_fs_config, tree_pids

POLL_S = 0.001
DEADLINE_S = 30.0
KEYS = ("listening_s", "serving_s", "cpu_s", "rss_mib", "worker_rss_mib", "python_floor_s")


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU of the process and its live descendants."""
    ticks = 0
    for each in tree_pids(pid):
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def healthy(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        return sock.recv(64).startswith(b"HTTP/1.1 200")


def python_floor(python: str) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-c", "pass"], check=True)
    return time.perf_counter() - started


def one_run(trustee: str, config: str | None, idle: float) -> dict[str, float]:
    port = free_port()
    argv = [trustee, "serve", "--socket", f"{HOST}:{port}"]
    if config:
        argv += ["--config", config]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listening: float | None = None
    try:
        while True:
            try:
                if listening is None:
                    socket.create_connection((HOST, port), timeout=1).close()
                    listening = time.perf_counter() - started
                if healthy(port):
                    serving = time.perf_counter() - started
                    cpu = tree_cpu_s(proc.pid)
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.perf_counter() - started > DEADLINE_S:
                raise RuntimeError("server did not answer in time")
            time.sleep(POLL_S)
        time.sleep(idle)
        rss = vm_rss_mib(proc.pid)
        workers = [vm_rss_mib(child) for child in tree_pids(proc.pid)[1:]]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "listening_s": round(listening, 4),
        "serving_s": round(serving, 4),
        "cpu_s": round(cpu, 3),
        "rss_mib": round(rss, 1),
        "worker_rss_mib": round(max(workers, default=rss), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before VmRSS")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", help="a kbs-config.toml (default: the embedded one)")
    which.add_argument("--workers", type=int, help="write a development-like config with N")
    parser.add_argument(
        "--trustee",
        default=str(Path(sys.executable).with_name("trustee")),
        help="the trustee entry point (default: beside this interpreter)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trustee-start-") as tmp:
        config = args.config
        if args.workers is not None:
            # flow.py's standard bench config; `--socket` replaces its address.
            text = CONFIG
            if args.workers > 1:
                text = local_fs_config(CONFIG, args.workers, Path(tmp) / "store", None)
            config = str(Path(tmp) / "kbs-config.toml")
            Path(config).write_text(text.format(host=HOST, port=free_port()))
        # One untimed run first, so that every timed run finds byte-code and pages cached.
        one_run(args.trustee, config, 0)
        runs = []
        for index in range(args.runs):
            result = one_run(args.trustee, config, args.idle)
            result["python_floor_s"] = round(python_floor(sys.executable), 4)
            runs.append(result)
            print(json.dumps({"run": index, **result}), flush=True)
    # On a shared machine the minimum is the least disturbed run; the median shows the spread.
    for name, pick in (("median", statistics.median), ("min", min)):
        print(json.dumps({name: {key: round(pick(r[key] for r in runs), 4) for key in KEYS}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
