"""CPU and RSS of process trees and of the machine (Linux /proc; zeros or None elsewhere).
What the machine is and which versions ran: `trustee.bench.machine`."""

from __future__ import annotations

import os
import resource
import sys
from contextlib import suppress
from pathlib import Path


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
