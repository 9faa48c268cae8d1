"""Upstream's LocalFs layout: `<dir>/<namespace>/<key>` with `/` in keys written as `\\x2F`.

Writes go to a temporary file renamed into place so a crash never leaves a half-written secret;
the temporary files of writers killed mid-write are removed when the store is opened.

Other processes share the directory (sibling workers, an operator's mounted Secret, a hand
edit), so a value is served from memory only while one `stat` of its file, done on the event
loop, says the file is the one that was read; a miss or a changed file is read in a worker
thread so a slow disk does not stall the event loop. `version(namespace)` tells the policy and
reference-value caches when anything in a namespace changed, by whichever process.
"""

from __future__ import annotations

import os
import stat
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import trio

from trustee.storage.atomic import TEMP_PREFIX, remove_orphans, write_atomically
from trustee.storage.kv import StorageError, check_key

_SLASH = "\\x2F"

# Which file holds the bytes (a rename or a swapped symlink gives another inode), its size, and
# when its content and its metadata last changed.
Stamp = tuple[int, int, int, int, int]

# File times move in clock ticks of some milliseconds: a file rewritten in place twice within
# one tick keeps its stamp. A stamp is trusted only once its change time is this far from now;
# until then the file counts as changed at every look.
SETTLE_NS = 1_000_000_000

CACHE_ENTRIES = 4096
CACHE_BYTES = 32 << 20
CACHE_VALUE_BYTES = 1 << 20


def encode_key(key: str) -> str:
    return key.replace("/", _SLASH)


def decode_key(name: str) -> str:
    return name.replace(_SLASH, "/")


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(stamp: Stamp | None) -> bool:
    # The change time, not the modification time: no one can set it, every change moves it.
    return stamp is None or abs(time.time_ns() - stamp[4]) >= SETTLE_NS


def stamp_or_none(path: str) -> Stamp | None:
    """The stamp of what `path` leads to (symlinks followed); None when nothing readable is
    there: the reader of that file reports why."""
    try:
        return stamp_of(os.stat(path))
    except OSError:
        return None


class ValueCache:
    """File contents by path, each valid while the file keeps the stamp it had when read; the
    least recently used go first when the entry or byte bound is reached."""

    def __init__(
        self,
        max_entries: int = CACHE_ENTRIES,
        max_bytes: int = CACHE_BYTES,
        max_value_bytes: int = CACHE_VALUE_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_value_bytes = min(max_value_bytes, max_bytes)
        self._entries: OrderedDict[str, tuple[Stamp, bytes]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, stamp: Stamp) -> bytes | None:
        hit = self._entries.get(name)
        if hit is None or hit[0] != stamp:
            return None
        self._entries.move_to_end(name)
        return hit[1]

    def put(self, name: str, stamp: Stamp, value: bytes) -> None:
        self.drop(name)
        if len(value) > self.max_value_bytes or not settled(stamp):
            return
        self._entries[name] = (stamp, value)
        self.bytes += len(value)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self.bytes -= len(old)

    def drop(self, name: str) -> None:
        old = self._entries.pop(name, None)
        if old is not None:
            self.bytes -= len(old[1])


def _read(name: str) -> tuple[Stamp, bytes] | None:
    try:
        with open(name, "rb") as fh:
            value = fh.read()
            # Stamped after reading: a change made meanwhile moves the stamp past this one.
            return stamp_of(os.fstat(fh.fileno())), value
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class FileStore(ABC):
    """One file per value below `root`, where `_name` says."""

    # Where writes put their temporary files: this many levels from the root down.
    TEMP_DEPTH: int

    def __init__(self, dir_path: str | os.PathLike[str], cache: ValueCache | None = None) -> None:
        self.root = Path(dir_path)
        self._root = os.fspath(self.root)
        self._limiter = trio.CapacityLimiter(8)
        self.cache = ValueCache() if cache is None else cache
        remove_orphans(self.root, self.TEMP_DEPTH)

    @abstractmethod
    def _name(self, namespace: str, key: str) -> str:
        """The file of `key`, below the root; StorageError for a key no file may hold."""

    def _written(self, namespace: str, name: str) -> None:
        self.cache.drop(name)

    async def get(self, namespace: str, key: str) -> bytes | None:
        # Strings, not pathlib: this runs for every resource and policy lookup.
        try:
            name = self._name(namespace, key)
        except StorageError:
            return None
        try:
            st = os.stat(name)  # follows symlinks (Kubernetes Secret volumes)
        except (FileNotFoundError, NotADirectoryError):
            self.cache.drop(name)
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {name}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None  # a directory, or a pipe that would never end
        value = self.cache.get(name, stamp_of(st))
        if value is not None:
            return value
        try:
            read = await trio.to_thread.run_sync(_read, name, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot read {name}: {exc.strerror}") from exc
        if read is None:
            return None
        self.cache.put(name, *read)
        return read[1]

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        name = self._name(namespace, key)
        path = Path(name)

        def write() -> bool:
            if not overwrite and path.exists():
                return False
            write_atomically(path, value)
            return True

        try:
            return await trio.to_thread.run_sync(write, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        finally:
            self._written(namespace, name)

    async def delete(self, namespace: str, key: str) -> bool:
        name = self._name(namespace, key)
        path = Path(name)

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
        finally:
            self._written(namespace, name)

    async def aclose(self) -> None:
        return None


@dataclass
class _Watch:
    """A namespace as last compared: its directory and every file in it."""

    path: str
    version: int = 0
    folder: Stamp | None = None
    files: dict[str, Stamp | None] = field(default_factory=dict)
    current: bool = False  # cleared by this store's own writes

    def unchanged(self) -> bool:
        if not (self.current and settled(self.folder)) or stamp_or_none(self.path) != self.folder:
            return False
        # A file edited in place leaves its directory as it was.
        for name, seen in self.files.items():
            if not settled(seen) or stamp_or_none(os.path.join(self.path, name)) != seen:
                return False
        return True


def _scan(folder: str) -> tuple[Stamp | None, dict[str, Stamp | None]]:
    try:
        here = stamp_of(os.stat(folder))
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None, {}
    files = {
        n: stamp_or_none(os.path.join(folder, n)) for n in names if not n.startswith(TEMP_PREFIX)
    }
    return here, files


class LocalFsStore(FileStore):
    TEMP_DEPTH = 2  # `<root>/<namespace>/`

    def __init__(self, dir_path: str | os.PathLike[str], cache: ValueCache | None = None) -> None:
        super().__init__(dir_path, cache)
        self._watches: dict[str, _Watch] = {}

    def _name(self, namespace: str, key: str) -> str:
        check_key(key)
        return os.path.join(self._root, namespace, encode_key(key))

    def _written(self, namespace: str, name: str) -> None:
        super()._written(namespace, name)
        watch = self._watches.get(namespace)
        if watch is not None:
            watch.current = False

    async def list(self, namespace: str) -> list[str]:
        folder = self.root / namespace

        def scan() -> list[str]:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                return []
            return sorted(decode_key(n) for n in names if not n.startswith(TEMP_PREFIX))

        return await trio.to_thread.run_sync(scan, limiter=self._limiter)

    async def version(self, namespace: str) -> int:
        """A number that moves whenever the namespace may have changed, by any process: a file
        written, replaced, removed or edited in place. Unchanged, it costs one stat per file."""
        watch = self._watches.get(namespace)
        if watch is None:
            watch = self._watches[namespace] = _Watch(os.path.join(self._root, namespace))
        folder = watch.path
        if watch.unchanged():
            return watch.version
        try:
            here, files = await trio.to_thread.run_sync(_scan, folder, limiter=self._limiter)
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror}") from exc
        fresh = settled(here) and all(settled(s) for s in files.values())
        if not fresh or (here, files) != (watch.folder, watch.files):
            watch.version += 1
        watch.folder, watch.files, watch.current = here, files, True
        return watch.version
