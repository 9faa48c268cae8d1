"""Replace a file's content all at once: readers see the old bytes or the new, never half.

The new bytes go to a temporary file beside the target, renamed over it when complete. A writer
killed before the rename leaves its temporary file behind; `remove_orphans` clears those at
start-up. A live writer holds an exclusive lock on its temporary file for as long as the file
has that name, so a sweep run by a sibling worker or replica that starts meanwhile leaves it
alone, while the kernel drops the lock of a killed writer.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
from pathlib import Path

log = logging.getLogger("trustee.storage")

TEMP_PREFIX = ".tmp-"
# What mkstemp makes of TEMP_PREFIX: eight characters from its lower-case alphabet follow.
_TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]{8}")


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of our temporary files (and so must never be a stored key)."""
    return _TEMP_NAME.fullmatch(name) is not None


def _locked_temp_file(folder: Path) -> tuple[int, str]:
    while True:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A sweep may have locked and removed the file between its creation and our lock.
        if os.fstat(fd).st_nlink > 0:
            return fd, tmp
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp_file(path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            # The rename must not reach the disk before the bytes do (power loss).
            os.fsync(fh.fileno())
            # Renamed while still locked: the lock covers the whole life of the temporary name.
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_if_orphaned(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer
        # Still the same file under that name (the writer may have renamed it meanwhile)?
        st = os.fstat(fd)
        try:
            named = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _sweep(folder: str, depth: int) -> int:
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 1:
                    removed += _sweep(entry.path, depth - 1)
            elif (
                entry.is_file(follow_symlinks=False)
                and is_temp_name(entry.name)
                and _remove_if_orphaned(entry.path)
            ):
                removed += 1
        except OSError:
            continue
    return removed


def remove_orphans(root: str | os.PathLike[str], depth: int) -> int:
    """Remove temporary files left by killed writers in `root` and the directories below it,
    down to `depth` levels (1: `root` only). Nothing else is touched; returns the count."""
    removed = _sweep(os.fspath(root), depth)
    if removed:
        log.info(
            "removed %d orphaned temporary file(s) of interrupted writes under %s", removed, root
        )
    return removed
