"""Watch a KBS's process tree through /proc: the parent and its worker children.

A worker pid that disappears (or turns zombie) is a death, even when a supervisor starts a
replacement at once; replacements are recorded as restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter), or None once the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def children(pid: int) -> list[int]:
    found: set[int] = set()
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
        return sorted(found)
    except OSError:
        pass
    # Kernels without /proc/<pid>/task/<tid>/children: scan every process's parent.
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] == pid:
            found.add(int(entry.name))
    return sorted(found)


def is_worker(pid: int) -> bool:
    # multiprocessing's "spawn" children run spawn_main; its resource tracker does not serve.
    try:
        return b"spawn_main" in (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def listening_pids(port: int) -> set[int]:
    """Processes holding a listening TCP socket on `port` (the parent and every worker)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    pids: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    pids.add(int(entry.name))
                    break
            except OSError:
                continue
    return pids


def server_root(port: int) -> int | None:
    """The topmost process listening on `port`: the one whose parent does not listen there."""
    pids = listening_pids(port)
    for pid in sorted(pids):
        stat = _stat(pid)
        if stat is not None and stat[0] not in pids:
            return pid
    return None


@dataclass
class Death:
    pid: int
    role: str  # "parent" or "worker"
    at: float  # seconds since the watch started
    in_flight: list[str]  # the fuzz cases running at that moment: the suspects


@dataclass
class ProcessWatch:
    parent: int
    deaths: list[Death] = field(default_factory=list)
    restarts: int = 0
    workers: set[int] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def current_workers(self) -> set[int]:
        return {pid for pid in children(self.parent) if is_worker(pid) and alive(pid)}

    def settle(self, expected: int, timeout: float = 15.0) -> None:
        """Wait (bounded) for `expected` worker children; 0 when the parent serves alone."""
        deadline = time.monotonic() + timeout
        self.workers = self.current_workers()
        while len(self.workers) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            self.workers = self.current_workers()

    def poll(self, in_flight: list[str]) -> list[Death]:
        now = time.monotonic() - self.started
        new: list[Death] = []
        if not alive(self.parent):
            if not any(d.role == "parent" for d in self.deaths):
                new.append(Death(self.parent, "parent", now, in_flight))
            current: set[int] = set()
        else:
            current = self.current_workers()
        for pid in sorted(self.workers - current):
            new.append(Death(pid, "worker", now, in_flight))
        if self.workers and current - self.workers:
            self.restarts += len(current - self.workers)
        self.workers = current
        self.deaths += new
        return new

    @property
    def parent_dead(self) -> bool:
        return any(d.role == "parent" for d in self.deaths)

    async def run(
        self, in_flight: dict[int, str], report: Callable[[Death], None], interval: float = 0.05
    ) -> None:
        """Poll until cancelled; `report(death)` is called for each death as it is seen."""
        while True:
            for death in self.poll(sorted(in_flight.values())):
                report(death)
            await trio.sleep(interval)
