"""The worker supervisor, run in its own interpreter with workers whose fate is scripted: it
replaces a worker killed before serving, and stops when a worker cannot start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DRIVER = """
import logging, sys
from tests.unit import supervised_workers
from trustee.supervision import StartError, supervise
logging.basicConfig(level=logging.INFO, format="%(message)s")
target, args = getattr(supervised_workers, sys.argv[1]), tuple(sys.argv[2:])
try:
    sys.exit(supervise(1, target, lambda _index: args, "test-worker"))
except StartError as exc:
    print(f"stopped ({exc.code}): {exc.message}")
    sys.exit(exc.code)
"""


def supervised(*argv: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_worker_killed_before_it_serves_is_replaced(tmp_path: Path) -> None:
    # A loaded machine, the OOM killer or an operator can kill a worker while it still
    # imports; the server must keep its capacity rather than stop.
    code, out = supervised("killed_once_before_serving", str(tmp_path / "started-once"))
    assert code == 0, out
    assert "died (signal SIGKILL); starting a new one" in out
    assert "stopped" not in out


def test_a_worker_that_keeps_being_killed_before_serving_stops_the_server() -> None:
    code, out = supervised("always_killed_before_serving")
    assert code == 1, out
    assert out.count("starting a new one") == 2, out
    assert "stopped (1): a worker failed to start (signal SIGKILL)" in out


def test_a_worker_that_says_why_it_cannot_start_stops_the_server_at_once() -> None:
    code, out = supervised("exits_saying_why")
    assert code == 2, out
    assert "starting a new one" not in out
    assert "stopped (2): storage: cannot reach the store" in out
