"""Upstream's LocalJson layout: one file per namespace, `{key: base64url-with-padding(value)}`.

The whole namespace is kept in memory and written back atomically on every change, which is
what a small policy/reference-value store needs.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import trio

from trustee.storage.atomic import remove_orphans, write_atomically
from trustee.storage.kv import StorageError, check_key_size


class LocalJsonStore:
    def __init__(self, file_dir_path: str | os.PathLike[str]) -> None:
        self.root = Path(file_dir_path)
        self._cache: dict[str, dict[str, bytes]] = {}
        self._lock = trio.Lock()
        remove_orphans(self.root, 1)

    def _load(self, namespace: str) -> dict[str, bytes]:
        if namespace in self._cache:
            return self._cache[namespace]
        path = self.root / namespace
        data: dict[str, bytes] = {}
        if path.exists():
            try:
                raw = json.loads(path.read_bytes() or b"{}")
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
                for key, value in raw.items():
                    data[str(key)] = base64.urlsafe_b64decode(str(value))
            except (ValueError, TypeError) as exc:
                raise StorageError(f"{path}: not a LocalJson namespace file: {exc}") from exc
        self._cache[namespace] = data
        return data

    def _flush(self, namespace: str) -> None:
        data = self._cache[namespace]
        doc = {k: base64.urlsafe_b64encode(v).decode() for k, v in sorted(data.items())}
        write_atomically(self.root / namespace, json.dumps(doc).encode())

    async def get(self, namespace: str, key: str) -> bytes | None:
        async with self._lock:
            return self._load(namespace).get(key)

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        async with self._lock:
            data = self._load(namespace)
            if not overwrite and key in data:
                return False
            previous = data.get(key)
            data[key] = bytes(value)
            try:
                self._flush(namespace)
            except OSError as exc:
                # Keep memory and disk in agreement when the write fails.
                if previous is None:
                    data.pop(key, None)
                else:
                    data[key] = previous
                raise StorageError(f"cannot write {self.root / namespace}: {exc}") from exc
            return True

    async def delete(self, namespace: str, key: str) -> bool:
        async with self._lock:
            data = self._load(namespace)
            if key not in data:
                return False
            previous = data.pop(key)
            try:
                self._flush(namespace)
            except OSError as exc:
                data[key] = previous
                raise StorageError(f"cannot write {self.root / namespace}: {exc}") from exc
            return True

    async def list(self, namespace: str) -> list[str]:
        async with self._lock:
            return sorted(self._load(namespace))

    async def aclose(self) -> None:
        return None
