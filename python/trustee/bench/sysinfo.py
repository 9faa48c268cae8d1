"""The machine a run happened on, the versions involved, and CPU/RSS of process trees (Linux
/proc; zeros or None elsewhere)."""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from trustee import __version__


def machine() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count() or 1,
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    core = "unknown"
    with suppress(Exception):
        from trustee import _core

        core = _core.version()
    return {"trustee": __version__, "core": core}


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    with suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (worker processes), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            with suppress(OSError, ValueError):
                todo.extend(
                    int(c)
                    for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()
                )
    return found


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and its live descendants; 0 when unknown."""
    if pid is None:
        return 0.0
    total = 0
    for member in tree_pids(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def generator_cpu_seconds() -> float:
    """This process, its live workers and the workers it has reaped (which leave the tree)."""
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return process_cpu_seconds(os.getpid()) + reaped.ru_utime + reaped.ru_stime


def tree_rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process tree, MiB."""
    if pid is None:
        return None
    total = 0
    for member in tree_pids(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return round(total / 1024, 1)


def machine_cpu_seconds() -> float:
    """CPU time spent by all processes on the machine (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    busy = sum(int(v) for i, v in enumerate(fields[1:9]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() or sys.platform != "linux"
