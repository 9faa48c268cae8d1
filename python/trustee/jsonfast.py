"""Compact JSON for the request path: orjson where it can, the standard library otherwise.

Output matches ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` for what the
KBS emits (insertion order kept, UTF-8, no spaces), which is also what upstream's serde_json
writes. orjson refuses integers beyond 64 bits and non-string keys; those rare documents take
the standard library's path, so every input that serialised before still does.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_str(value: Any) -> str:
    return dumps(value).decode()


def loads_trusted(text: str | bytes) -> Any:
    """Parse JSON this process or its native core produced (not client input: clients get
    the standard library's parser and its error messages)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
