"""TRUSTEE_BODY_TIMEOUT: how long a request body may take to arrive in full (then 408).

Apart from the application so that the worker supervisor can check the variable before it binds
a socket without loading the web framework it never serves with.
"""

from __future__ import annotations

import os

from trustee.config.errors import ConfigError

# A client trickling its body holds a connection slot, so the wait is bounded.
DEFAULT_BODY_TIMEOUT = 30.0
ENV_BODY_TIMEOUT = "TRUSTEE_BODY_TIMEOUT"


def body_timeout() -> float:
    raw = os.environ.get(ENV_BODY_TIMEOUT)
    if raw is None:
        return DEFAULT_BODY_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigError(ENV_BODY_TIMEOUT, f"{raw!r}: expected seconds, more than 0, at most 3600")
    return value
