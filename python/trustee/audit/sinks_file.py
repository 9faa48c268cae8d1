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
from trustee.audit.settings import DEFAULT_KEEP, FileSinkOptions, file_options, stdout_options
from trustee.audit.sink import AuditSinkError
from trustee.config.reader import Table

_TAIL_CHUNK = 64 * 1024


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


class _ChainedWriter:
    """A sink writing hash-chained lines from a worker thread, one batch at a time."""

    name: str
    _lock: trio.Lock

    def _write(self, events: Sequence[AuditEvent]) -> None:
        raise NotImplementedError

    def _write_failed(self) -> None:
        """Called when a batch failed part-way, before the failure is reported."""

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        async with self._lock:
            try:
                await trio.to_thread.run_sync(self._write, events)
            except (OSError, TypeError, ValueError) as exc:
                self._write_failed()
                raise AuditSinkError(
                    f"{self.name}: writing {len(events)} event(s) failed: {exc}"
                ) from exc


class FileSink(_ChainedWriter):
    """Appends chained lines to `path`, continuing the chain already in the file.

    A torn last line (a crash mid-write) is terminated rather than removed: the audit log is
    never rewritten, and `trustee audit verify` will point at the torn line.

    With `max_bytes`, a batch that would take the file past that size first rotates it
    (`path` → `path.1` → … → `path.<keep>`, the oldest removed); the new file's first line
    continues the chain from the last line of `path.1`, so the files verify together, oldest
    first.
    """

    def __init__(
        self,
        path: str,
        *,
        fsync: bool = False,
        max_bytes: int | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.keep = keep
        self.name = f"file:{path}"
        self._handle: IO[bytes] | None = None
        self._chain = HashChain()
        self._lock = trio.Lock()

    @classmethod
    def from_options(cls, options: FileSinkOptions) -> FileSink:
        return cls(
            options.path, fsync=options.fsync, max_bytes=options.max_bytes, keep=options.keep
        )

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> FileSink:
        return cls.from_options(file_options(Table(dict(table), key)))

    def _rotated(self, n: int) -> str:
        return f"{self.path}.{n}"

    def _open(self) -> IO[bytes]:
        handle = open(self.path, "a+b")  # noqa: SIM115 - kept open across batches
        try:
            prevhash, torn = _last_line_state(handle)
            if torn:
                handle.write(b"\n")
                handle.flush()
            if handle.tell() == 0 and self.max_bytes is not None:
                # A fresh file after a rotation continues the rotated one's chain.
                with contextlib.suppress(FileNotFoundError), open(self._rotated(1), "rb") as old:
                    prevhash, _ = _last_line_state(old)
        except BaseException:
            handle.close()
            raise
        self._chain = HashChain(prevhash)
        return handle

    def _rotate(self) -> None:
        self._drop_handle()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._rotated(self.keep))
        for n in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self._rotated(n), self._rotated(n + 1))
        os.replace(self.path, self._rotated(1))

    def _write(self, events: Sequence[AuditEvent]) -> None:
        if self._handle is None:
            self._handle = self._open()
        payload, next_prev = self._chain.encode(events)
        if self.max_bytes is not None:
            size = self._handle.seek(0, os.SEEK_END)
            if size and size + len(payload) > self.max_bytes:
                self._rotate()
                self._handle = self._open()
                # The chain carries over, so the lines already encoded stay valid.
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

    def _write_failed(self) -> None:
        # A partial write may have left a torn line: reopen on retry so the chain resumes from
        # what is really on disk.
        self._drop_handle()

    async def aclose(self) -> None:
        async with self._lock:
            self._drop_handle()


class StdoutSink(_ChainedWriter):
    """Chained lines on standard output; the chain starts afresh with each process."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.name = "stdout"
        self._stream = stream
        self._chain = HashChain()
        self._lock = trio.Lock()

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> StdoutSink:
        stdout_options(Table(dict(table), key))
        return cls()

    def _write(self, events: Sequence[AuditEvent]) -> None:
        stream = self._stream if self._stream is not None else sys.stdout.buffer
        payload, next_prev = self._chain.encode(events)
        stream.write(payload)
        stream.flush()
        self._chain.commit(next_prev)

    async def aclose(self) -> None:
        return None
