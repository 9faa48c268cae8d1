"""The v0.11-era RVPS LocalJson file: one JSON array of reference-value records.

Records are `{"version", "name", "expiration", "hash-value": [{"alg", "value"}]}` (≤2025-06) or
`{..., "value": <json>}`. Exposed as the `reference_value` namespace in today's record format
(`value` = the list of hash values for old records), so the RVPS code is the same for both. The
file is re-read when it changes (a ConfigMap update) and expired records are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustee.storage.atomic import remove_orphans, write_atomically
from trustee.storage.kv import StorageError, check_key_size

log = logging.getLogger(__name__)


def _expired(record: dict[str, Any], now: datetime) -> bool:
    text = record.get("expiration")
    if not isinstance(text, str):
        return False
    try:
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return when <= now


def _normalise(record: dict[str, Any]) -> dict[str, Any]:
    if "value" in record:
        return record
    hashes = record.get("hash-value", [])
    values = [h.get("value") for h in hashes if isinstance(h, dict)]
    return {**{k: v for k, v in record.items() if k != "hash-value"}, "value": values}


class ReferenceValueFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._records: list[dict[str, Any]] = []
        remove_orphans(self.path.parent, 1)

    def _load(self) -> list[dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._stamp != (0, 0):
                log.warning(
                    "reference value file %s does not exist; no reference values", self.path
                )
            self._stamp, self._records = (0, 0), []
            return self._records
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                doc = json.loads(self.path.read_bytes() or b"[]")
            except (OSError, ValueError) as exc:
                raise StorageError(f"{self.path}: not a reference value array: {exc}") from exc
            if not isinstance(doc, list):
                raise StorageError(f"{self.path}: expected a JSON array of reference values")
            self._records = [
                r for r in doc if isinstance(r, dict) and isinstance(r.get("name"), str)
            ]
            self._stamp = stamp
        return self._records

    def stamp(self) -> tuple[object, ...] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        # Expiry changes the live set while the file stays the same.
        return (st.st_mtime_ns, st.st_size, st.st_ino, tuple(sorted(self._live())))

    def _live(self) -> dict[str, dict[str, Any]]:
        now = datetime.now(UTC)
        return {r["name"]: _normalise(r) for r in self._load() if not _expired(r, now)}

    async def get(self, namespace: str, key: str) -> bytes | None:
        record = self._live().get(key)
        return None if record is None else json.dumps(record).encode()

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        records = [r for r in self._load() if r.get("name") != key]
        if not overwrite and len(records) != len(self._records):
            return False
        try:
            records.append(json.loads(value))
        except ValueError as exc:
            raise StorageError(f"reference value {key!r} is not JSON: {exc}") from exc
        self._write(records)
        return True

    async def delete(self, namespace: str, key: str) -> bool:
        records = [r for r in self._load() if r.get("name") != key]
        if len(records) == len(self._records):
            return False
        self._write(records)
        return True

    async def list(self, namespace: str) -> list[str]:
        return sorted(self._live())

    def _write(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            write_atomically(self.path, json.dumps(list(records), indent=1).encode())
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._stamp = None

    async def aclose(self) -> None:
        return None
