"""Logging set-up from a RUST_LOG-style filter (`info`, `debug,hypercorn=warning`, …)."""

from __future__ import annotations

import logging
import os
import sys

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def parse_filter(spec: str) -> tuple[int, dict[str, int]]:
    """Default level and per-logger levels; unknown parts are ignored (as env_logger does)."""
    default = logging.INFO
    targets: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, level = part.partition("=")
        if not sep:
            if name.lower() in _LEVELS:
                default = _LEVELS[name.lower()]
            continue
        if level.lower() in _LEVELS:
            targets[name.replace("::", ".")] = _LEVELS[level.lower()]
    return default, targets


def setup_logging(env: dict[str, str] | None = None) -> None:
    env = dict(os.environ) if env is None else env
    spec = env.get("TRUSTEE_LOG") or env.get("RUST_LOG") or "info"
    default, targets = parse_filter(spec)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    for name, level in targets.items():
        logging.getLogger(name).setLevel(level)
