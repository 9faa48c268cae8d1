"""TRUSTEE_OFFLOAD_THREADS: how many native threads each worker process hands work to.

Apart from `trustee.offload` so that a worker supervisor checks the variable before it binds
a socket, without loading trio.
"""

from __future__ import annotations

import os

from trustee.config.errors import ConfigError

THREADS_ENV = "TRUSTEE_OFFLOAD_THREADS"
MAX_DEFAULT_THREADS = 4
MAX_THREADS = 64


def default_threads(workers: int = 1) -> int:
    """`TRUSTEE_OFFLOAD_THREADS` (per worker process), else each of `workers` processes gets
    one thread per core it has beyond the one its event loop uses, at most 4."""
    raw = os.environ.get(THREADS_ENV)
    if raw is not None and raw.strip():
        text = raw.strip()
        if not (text.isascii() and text.isdigit()):
            raise ConfigError(THREADS_ENV, f"{raw!r} is not a whole number of threads")
        value = int(text)
        if value > MAX_THREADS:
            raise ConfigError(
                THREADS_ENV, f"{raw!r}: at most {MAX_THREADS} threads (0 runs everything inline)"
            )
        return value
    cores_each = (os.cpu_count() or 1) // max(1, workers)
    return max(0, min(MAX_DEFAULT_THREADS, cores_each - 1))
