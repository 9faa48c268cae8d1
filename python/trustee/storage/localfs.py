"""Upstream's LocalFs layout: `<dir>/<namespace>/<key>` with `/` in keys written as `\\x2F`.

Writes go to a temporary file renamed into place so a crash never leaves a half-written secret;
the temporary files of writers killed mid-write are removed when the store is opened.
File I/O runs in worker threads so a slow disk does not stall the event loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from trustee.storage.atomic import TEMP_PREFIX, remove_orphans, write_atomically
from trustee.storage.kv import StorageError, check_key

_SLASH = "\\x2F"


def encode_key(key: str) -> str:
    return key.replace("/", _SLASH)


def decode_key(name: str) -> str:
    return name.replace(_SLASH, "/")


class LocalFsStore:
    # Where writes put their temporary files: `<root>/<namespace>/`.
    TEMP_DEPTH = 2

    def __init__(self, dir_path: str | os.PathLike[str]) -> None:
        self.root = Path(dir_path)
        self._limiter = trio.CapacityLimiter(8)
        remove_orphans(self.root, self.TEMP_DEPTH)

    def _path(self, namespace: str, key: str) -> Path:
        check_key(key)
        return self.root / namespace / encode_key(key)

    async def get(self, namespace: str, key: str) -> bytes | None:
        try:
            path = self._path(namespace, key)
        except StorageError:
            return None

        def read() -> bytes | None:
            try:
                return path.read_bytes()  # follows symlinks (Kubernetes Secret volumes)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        try:
            return await trio.to_thread.run_sync(read, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        path = self._path(namespace, key)

        def write() -> bool:
            if not overwrite and path.exists():
                return False
            write_atomically(path, value)
            return True

        try:
            return await trio.to_thread.run_sync(write, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc

    async def delete(self, namespace: str, key: str) -> bool:
        path = self._path(namespace, key)

        def remove() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        try:
            return await trio.to_thread.run_sync(remove, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot delete {path}: {exc.strerror}") from exc

    async def list(self, namespace: str) -> list[str]:
        folder = self.root / namespace

        def scan() -> list[str]:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                return []
            return sorted(decode_key(n) for n in names if not n.startswith(TEMP_PREFIX))

        return await trio.to_thread.run_sync(scan, limiter=self._limiter)

    async def aclose(self) -> None:
        return None
