"""JSON Lines sinks carrying the hash chain: `file` (append to a path) and `stdout`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

import trio

from trustee.audit.chain import GENESIS, HashChain, line_digest
from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSinkError

# Keys the config layer consumes for every sink; the sinks accept and ignore them.
COMMON_KEYS = frozenset({"type", "required", "queue_size", "block_timeout", "batch_size"})
_TAIL_CHUNK = 64 * 1024


def _reject_unknown(table: Mapping[str, Any], key: str, own: set[str]) -> None:
    for name in table:
        if name not in COMMON_KEYS and name not in own:
            allowed = ", ".join(sorted(own | COMMON_KEYS))
            raise ValueError(f"{key}.{name}: unknown key for this sink (allowed: {allowed})")


def _last_line_state(handle: IO[bytes]) -> tuple[str, bool]:
    """Hash of the file's last line and whether the file ends mid-line (a torn write)."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return GENESIS, False
    handle.seek(end - 1)
    torn = handle.read(1) != b"\n"
    stop = end if torn else end - 1
    # Walk back in chunks until the newline before the last line, keeping memory bounded
    # by the line length rather than the file size.
    pos = stop
    tail = b""
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        handle.seek(pos)
        chunk = handle.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return line_digest(chunk[cut + 1 :] + tail), torn
        tail = chunk + tail
    return line_digest(tail), torn


class FileSink:
    """Appends chained lines to `path`, continuing the chain already in the file.

    A torn last line (a crash mid-write) is terminated rather than removed: the audit log is
    never rewritten, and `trustee audit verify` will point at the torn line.
    """

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.name = f"file:{path}"
        self._handle: IO[bytes] | None = None
        self._chain = HashChain()
        self._lock = trio.Lock()

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> FileSink:
        _reject_unknown(table, key, {"path", "fsync"})
        path = table.get("path")
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ValueError(f"{key}.path: {path!r} is not a non-empty file path")
        fsync = table.get("fsync", False)
        if not isinstance(fsync, bool):
            raise ValueError(f"{key}.fsync: {fsync!r} is not a boolean")
        return cls(path, fsync=fsync)

    def _open(self) -> IO[bytes]:
        handle = open(self.path, "a+b")  # noqa: SIM115 - kept open across batches
        try:
            prevhash, torn = _last_line_state(handle)
            if torn:
                handle.write(b"\n")
                handle.flush()
        except BaseException:
            handle.close()
            raise
        self._chain = HashChain(prevhash)
        return handle

    def _write(self, events: Sequence[AuditEvent]) -> None:
        if self._handle is None:
            self._handle = self._open()
        payload, next_prev = self._chain.encode(events)
        self._handle.write(payload)
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())
        self._chain.commit(next_prev)

    def _drop_handle(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        async with self._lock:
            try:
                await trio.to_thread.run_sync(self._write, events)
            except (OSError, TypeError, ValueError) as exc:
                # A partial write may have left a torn line: reopen on retry so the chain
                # resumes from what is really on disk.
                self._drop_handle()
                raise AuditSinkError(
                    f"{self.name}: writing {len(events)} event(s) failed: {exc}"
                ) from exc

    async def aclose(self) -> None:
        async with self._lock:
            self._drop_handle()


class StdoutSink:
    """Chained lines on standard output; the chain starts afresh with each process."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.name = "stdout"
        self._stream = stream
        self._chain = HashChain()
        self._lock = trio.Lock()

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> StdoutSink:
        _reject_unknown(table, key, set())
        return cls()

    def _write(self, events: Sequence[AuditEvent]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout.buffer
        payload, next_prev = self._chain.encode(events)
        stream.write(payload)
        stream.flush()
        self._chain.commit(next_prev)

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        async with self._lock:
            try:
                await trio.to_thread.run_sync(self._write, events)
            except (OSError, TypeError, ValueError) as exc:
                raise AuditSinkError(
                    f"{self.name}: writing {len(events)} event(s) failed: {exc}"
                ) from exc

    async def aclose(self) -> None:
        return None
