"""What a results file says about where and with what it ran (``machine``, ``versions``)."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict[str, Any]:
    """The ``machine`` member: enough to tell two runs' hardware apart."""
    return {
        "hostname": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(**others: str | None) -> dict[str, str]:
    """The ``versions`` member: trustee-py, its native core, and any others given (a None
    value, e.g. a baseline that is not installed, is left out)."""
    from trustee import __version__, _core

    found = {"trustee": __version__, "core": _core.version()}
    found.update({name: version for name, version in others.items() if version is not None})
    return found
