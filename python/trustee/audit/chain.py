"""The JSON Lines hash chain, sans IO: encode events into chained lines and check a chain.

Each line is the canonical (RFC 8785) CloudEvent plus the extension attribute `prevhash`, the
hex SHA-256 of the previous line's bytes without its newline. The chain is unkeyed: it catches
edits, deletions and reorderings by anyone who does not rewrite every later line, and it cannot
notice lines cut off the end of the file (ship the file elsewhere to catch that).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from trustee.audit.event import AuditEvent, canonical

GENESIS = "0" * 64
PREVHASH = "prevhash"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REQUIRED_STRINGS = ("id", "source", "type")


def line_digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def encode_line(event: AuditEvent, prevhash: str) -> bytes:
    """One chained line, without its newline."""
    record = event.cloudevent()
    record[PREVHASH] = prevhash
    return canonical(record)


def encode_batch(events: Sequence[AuditEvent], prevhash: str) -> tuple[bytes, str]:
    """The newline-terminated lines for `events` and the hash the next line must carry."""
    out = bytearray()
    for event in events:
        line = encode_line(event, prevhash)
        out += line + b"\n"
        prevhash = line_digest(line)
    return bytes(out), prevhash


class HashChain:
    """Encoder state: commit() only after the lines are durably written, so a failed write
    is re-encoded against the same predecessor on retry."""

    def __init__(self, prevhash: str = GENESIS) -> None:
        self.prevhash = prevhash

    def encode(self, events: Sequence[AuditEvent]) -> tuple[bytes, str]:
        return encode_batch(events, self.prevhash)

    def commit(self, next_prevhash: str) -> None:
        self.prevhash = next_prevhash


@dataclass(frozen=True)
class ChainBreak:
    line: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    lines: int
    first_break: ChainBreak | None
    # Lines that are well-formed audit records, counted only while deciding whether the input
    # is an audit log at all (a break stops counting once one record has been seen).
    records_seen: int
    # SHA-256 of the last line read: where a file that continues this one must start.
    last_digest: str = GENESIS

    @property
    def ok(self) -> bool:
        return self.first_break is None


def _record_problem(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(record, dict):
        return None, f"not a JSON object but {type(record).__name__}"
    if record.get("specversion") != "1.0":
        return None, f"specversion is {record.get('specversion')!r}, not '1.0'"
    for field in _REQUIRED_STRINGS:
        if not isinstance(record.get(field), str):
            return None, f"CloudEvent attribute {field!r} is missing or not a string"
    prev = record.get(PREVHASH)
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        return None, f"{PREVHASH} is {prev!r}, not 64 lowercase hex digits"
    return record, None


def verify_lines(lines: Iterable[bytes], *, start: str = GENESIS) -> ChainReport:
    """Check a chain line by line; `lines` may keep their trailing newline (as file iteration
    yields them). Line numbers in the report are 1-based."""
    expected = start
    count = 0
    records = 0
    first_break: ChainBreak | None = None
    for count, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        record, problem = _record_problem(line)
        if record is not None:
            records += 1
        if first_break is not None:
            if records:
                break
            continue
        if problem is not None:
            first_break = ChainBreak(count, problem)
        elif record is not None and record[PREVHASH] != expected:
            which = "the chain start" if count == 1 else f"SHA-256 of line {count - 1}"
            first_break = ChainBreak(
                count,
                f"{PREVHASH} {record[PREVHASH]} is not {which} ({expected}): a line at or "
                "before this one was edited, removed or moved",
            )
        expected = line_digest(line)
    return ChainReport(
        lines=count, first_break=first_break, records_seen=records, last_digest=expected
    )
