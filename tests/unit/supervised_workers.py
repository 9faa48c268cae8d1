"""Worker bodies with a scripted fate, for the supervisor's tests. A spawned worker imports
this module by name, so it stays light: no trustee, no trio."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def killed_once_before_serving(marker: str, ready: Any, failures: Any) -> None:
    """The first start is killed before it serves; the next one serves, then asks the
    supervisor to stop."""
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    ready.set()
    os.kill(os.getppid(), signal.SIGTERM)
    time.sleep(60)  # until the supervisor passes SIGTERM on


def always_killed_before_serving(ready: Any, failures: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exits_saying_why(ready: Any, failures: Any) -> None:
    failures.put((2, "storage: cannot reach the store"))
    sys.exit(2)
