"""Upstream's LocalJson layout: one file per namespace, `{key: base64url-with-padding(value)}`.

The whole namespace is kept in memory while one `stat` of its file says no one changed it
(another worker sharing the directory, an operator); a change is read again. A write rereads the
file and writes it back atomically while holding a lock on the directory, so writers in
different processes do not undo each other's changes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

import trio

from trustee.storage.atomic import remove_orphans, write_atomically
from trustee.storage.kv import StorageError, check_key_size
from trustee.storage.localfs import Stamp, settled, stamp_or_none


def _parse(path: Path) -> dict[str, bytes]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text or b"{}")
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        return {str(key): base64.urlsafe_b64decode(str(value)) for key, value in raw.items()}
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{path}: not a LocalJson namespace file: {exc}") from exc


def _encode(data: dict[str, bytes]) -> bytes:
    doc = {k: base64.urlsafe_b64encode(v).decode() for k, v in sorted(data.items())}
    return json.dumps(doc).encode()


class LocalJsonStore:
    def __init__(self, file_dir_path: str | os.PathLike[str]) -> None:
        self.root = Path(file_dir_path)
        self._cache: dict[str, tuple[Stamp | None, dict[str, bytes]]] = {}
        self._versions: dict[str, tuple[Stamp | None, int]] = {}
        self._lock = trio.Lock()
        remove_orphans(self.root, 1)

    def _load(self, namespace: str) -> dict[str, bytes]:
        path = self.root / namespace
        stamp = stamp_or_none(os.fspath(path))
        cached = self._cache.get(namespace)
        if cached is not None and cached[0] == stamp and settled(stamp):
            return cached[1]
        data = _parse(path)
        self._cache[namespace] = (stamp, data)
        return data

    def _update(self, namespace: str, change: Callable[[dict[str, bytes]], bool]) -> bool:
        """Apply `change` to the namespace as stored now; write it back if it says so. Runs in
        a worker thread: the lock may wait for another process's write."""
        path = self.root / namespace
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
        try:
            # Where directories cannot be locked (some network filesystems), writers in
            # different processes may race, as they would without the lock.
            with contextlib.suppress(OSError):
                fcntl.flock(folder, fcntl.LOCK_EX)
            data = _parse(path)
            if not change(data):
                return False
            try:
                write_atomically(path, _encode(data))
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc}") from exc
            return True
        finally:
            os.close(folder)  # releases the lock

    async def _write(self, namespace: str, change: Callable[[dict[str, bytes]], bool]) -> bool:
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(self._update, namespace, change)
            finally:
                self._cache.pop(namespace, None)

    async def get(self, namespace: str, key: str) -> bytes | None:
        return self._load(namespace).get(key)

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        stored = bytes(value)

        def put(data: dict[str, bytes]) -> bool:
            if not overwrite and key in data:
                return False
            data[key] = stored
            return True

        return await self._write(namespace, put)

    async def delete(self, namespace: str, key: str) -> bool:
        return await self._write(namespace, lambda data: data.pop(key, None) is not None)

    async def list(self, namespace: str) -> list[str]:
        return sorted(self._load(namespace))

    async def version(self, namespace: str) -> int:
        """A number that moves whenever the namespace's file may have changed, by any process."""
        stamp = stamp_or_none(os.fspath(self.root / namespace))
        seen, number = self._versions.get(namespace, (None, 0))
        if stamp != seen or not settled(stamp):
            number += 1
            self._versions[namespace] = (stamp, number)
        return number

    async def aclose(self) -> None:
        return None
