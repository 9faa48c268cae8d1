"""Bounded readers for what the network sends: JSON request bodies and init-data TOML.

Python's parsers recurse once per nesting level, so a body of 100 000 `[` ends in a
RecursionError deep inside the parser. Here the nesting depth is measured first, on the raw
text, with a linear scan that never recurses; only input within the bound reaches the parser.
Too-deep or too-large input raises `InputLimitError` (HTTP 400, the limit named in the reason);
malformed input raises ValueError, so every caller keeps its own status for bad syntax.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable
from typing import Any

from trustee.protocol.errors import KbsError, input_limit_exceeded

# The deepest legitimate body (SNP evidence with its certificate chain inside the /attest
# envelope, explain inputs holding full EAR claims) nests under 12 levels.
MAX_JSON_DEPTH = 64
# Init-data documents (and the cdh.toml / aa.toml they carry) are configuration: a few tables.
MAX_TOML_DEPTH = 32

# A JSON string, or an unterminated one up to the end of the text. The possessive loop and
# optional closing quote make every match succeed at its first attempt, so the scan stays
# linear even on hostile input such as `"\"\"\"…` with no closing quote.
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
# Every byte but `[]{}`; UTF-8 never uses ASCII bytes inside a multi-byte character.
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# TOML strings (basic, literal and their multi-line forms, which may end in up to two extra
# quotes) and comments: the places where a bracket is not structure.
_TOML_NOT_STRUCTURE = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*+(?:"{3,5})?'
    r"|'''(?:[^']|'(?!''))*+(?:'{3,5})?"
    r'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"?'
    r"|'[^'\n]*+'?"
    r"|#[^\n]*+",
    re.DOTALL,
)


_OPENING = frozenset(b"[{")


class InputLimitError(KbsError):
    """Input beyond a fixed bound. A KbsError, so it reaches the client as a 400 from however
    deep it is raised, past handlers that map malformed input to their own status."""

    def __init__(self, reason: str) -> None:
        limit = input_limit_exceeded(reason)
        super().__init__(limit.variant, limit.detail, limit.reason)


def _brackets(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET)


def _few_openings(text: str, limit: int) -> bool:
    """True when `text` cannot nest deeper than `limit`: it has no more openings than that,
    even counting those inside strings (the common case, settled without finding strings)."""
    brackets = _brackets(text)
    return brackets.count(b"[") + brackets.count(b"{") <= limit


def _check_bracket_depth(skeleton: str, limit: int, what: str) -> None:
    brackets = _brackets(skeleton)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return
    # Wide but shallow documents (long arrays of small objects) are settled at C speed: each
    # pass deletes the innermost pairs, at most two levels, so emptying the text within
    # limit // 2 passes proves the depth is within the limit.
    rest = brackets
    for _ in range(limit // 2):
        reduced = rest.replace(b"[]", b"").replace(b"{}", b"")
        if not reduced:
            return
        if len(reduced) == len(rest):
            break  # mismatched brackets: not JSON, but the parser may descend before it sees
        rest = reduced
    depth = 0
    for ch in brackets:
        if ch in _OPENING:
            depth += 1
            if depth > limit:
                raise InputLimitError(f"{what} nests deeper than {limit} levels")
        else:
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(data: bytes | str, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON as serde_json would: UTF-8 only, no NaN or Infinity, no number
    that overflows to infinity; nesting beyond `max_depth` raises InputLimitError."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what} is not UTF-8: {exc}") from exc
    else:
        text = data
    if not _few_openings(text, max_depth):
        _check_bracket_depth(_JSON_STRING.sub("", text), max_depth, what)
    try:
        doc = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:  # pragma: no cover - the depth check above prevents it
        raise InputLimitError(f"{what} nests too deeply to parse") from exc
    if _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(doc, what)
    return doc


# `\uD800`…`\uDFFF`: Python joins a valid pair into one character and keeps a lone half as
# is; serde_json refuses the lone half, and so must we (nothing downstream can encode it).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(doc: Any, what: str) -> None:
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"{what} holds a lone UTF-16 surrogate escape") from exc


def toml_loads(text: str, what: str = "TOML document", max_depth: int = MAX_TOML_DEPTH) -> Any:
    """Parse untrusted TOML; inline nesting and dotted-key/table depth are both bounded.

    Raises tomllib.TOMLDecodeError for bad syntax and InputLimitError beyond `max_depth`.
    """
    if not _few_openings(text, max_depth):
        _check_bracket_depth(_TOML_NOT_STRUCTURE.sub("", text), max_depth, what)
    try:
        doc = tomllib.loads(text)
    except RecursionError as exc:  # pragma: no cover - the depth check above prevents it
        raise InputLimitError(f"{what} nests too deeply to parse") from exc
    # `a.b.c… = 1` and `[a.b.c…]` nest tables without a single bracket; the root table is
    # not a level, as it is not one in the bracket count.
    _check_items_depth(doc.values(), max_depth, what)
    return doc


def check_depth(value: Any, limit: int, what: str) -> None:
    """Raise InputLimitError when parsed `value` nests dicts/lists deeper than `limit`."""
    _check_items_depth((value,), limit, what)


def _check_items_depth(items: Iterable[Any], limit: int, what: str) -> None:
    stack: list[tuple[Iterable[Any], int]] = [(items, 0)]
    while stack:
        current, depth = stack.pop()
        for item in current:
            if isinstance(item, dict | list):
                if depth + 1 > limit:
                    raise InputLimitError(f"{what} nests deeper than {limit} levels")
                stack.append((item.values() if isinstance(item, dict) else item, depth + 1))
