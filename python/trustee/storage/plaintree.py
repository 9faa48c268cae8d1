"""The ≤v0.18 LocalFs resource repository: a plain `<dir>/<repo>/<type>/<tag>` tree.

This is the layout Kubernetes Secret volumes produce (one file per key, symlinked), so the
operator can mount Secrets straight into the repository. Keys are resource paths; the namespace
is ignored (one repository). Reads (served from memory while the file is unchanged), atomic
writes and deletes are LocalFs's.
"""

from __future__ import annotations

import os

import trio

from trustee.storage.kv import StorageError, check_key
from trustee.storage.localfs import FileStore


class PlainTreeStore(FileStore):
    TEMP_DEPTH = 3  # `<root>/<repo>/<type>/`

    def prepare(self) -> None:
        """Create the repository root and its `default` repository, as upstream does."""
        try:
            (self.root / "default").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create resource repository {self.root}: {exc}") from exc

    def _name(self, namespace: str, key: str) -> str:
        check_key(key)
        return os.path.join(self._root, *key.split("/"))

    async def list(self, namespace: str) -> list[str]:
        def scan() -> list[str]:
            found = []
            for path in self.root.glob("*/*/*"):
                if path.is_file() and not path.name.startswith("."):
                    found.append("/".join(path.relative_to(self.root).parts))
            return sorted(found)

        return await trio.to_thread.run_sync(scan, limiter=self._limiter)
