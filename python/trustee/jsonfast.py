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
import rfc8785


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


def _jcs_plain(value: Any) -> bool:
    """True when `value` holds only what orjson with sorted keys writes exactly as JCS does.

    JCS differs from sorted compact JSON only for floats and for object keys outside the Basic
    Multilingual Plane (UTF-16 versus code-point order); string escaping is identical.
    """
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**53) < value < 2**53  # JCS numbers are IEEE doubles
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _jcs_plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_jcs_plain(v) for v in value)
    return False


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (dicts and lists): orjson for plain JSON, the reference
    implementation for the rest. Raises ValueError for what JCS cannot carry."""
    if _jcs_plain(value):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
