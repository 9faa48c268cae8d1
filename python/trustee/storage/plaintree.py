"""The ≤v0.18 LocalFs resource repository: a plain `<dir>/<repo>/<type>/<tag>` tree.

This is the layout Kubernetes Secret volumes produce (one file per key, symlinked), so the
operator can mount Secrets straight into the repository. Keys are resource paths.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import trio

from trustee.storage.kv import StorageError, check_key


class PlainTreeStore:
    """A KeyValueStore over a directory tree; the namespace is ignored (one repository)."""

    def __init__(self, dir_path: str | os.PathLike[str]) -> None:
        self.root = Path(dir_path)
        self._limiter = trio.CapacityLimiter(8)

    def prepare(self) -> None:
        """Create the repository root and its `default` repository, as upstream does."""
        try:
            (self.root / "default").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create resource repository {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root.joinpath(*key.split("/"))

    async def get(self, namespace: str, key: str) -> bytes | None:
        try:
            path = self._path(key)
        except StorageError:
            return None

        def read() -> bytes | None:
            try:
                return path.read_bytes()  # follows the symlinks Secret volumes use
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        try:
            return await trio.to_thread.run_sync(read, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        path = self._path(key)

        def write() -> bool:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not overwrite and path.exists():
                return False
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(value)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return True

        try:
            return await trio.to_thread.run_sync(write, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc

    async def delete(self, namespace: str, key: str) -> bool:
        path = self._path(key)

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
        def scan() -> list[str]:
            found = []
            for path in self.root.glob("*/*/*"):
                if path.is_file() and not path.name.startswith("."):
                    found.append("/".join(path.relative_to(self.root).parts))
            return sorted(found)

        return await trio.to_thread.run_sync(scan, limiter=self._limiter)

    async def aclose(self) -> None:
        return None
