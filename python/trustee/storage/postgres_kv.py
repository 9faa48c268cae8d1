"""PostgreSQL key-value backend: the shared store that lets several KBS replicas serve one state.

psycopg's async API needs asyncio while the server runs on trio, so the synchronous API is driven
from worker threads; one capacity limiter bounds both the threads and the connections they hold.
Every write bumps a per-namespace version in the same transaction and sends a NOTIFY, so other
replicas can drop caches as soon as the write commits (and, after a missed notification, by
comparing versions).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from trustee.storage.kv import StorageError, check_key_size

NOTIFY_CHANNEL = "trustee_kv"

# Unquoted-identifier shape, so the versions table name derived from it stays valid too.
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
# Serialises concurrent schema creation across replicas: CREATE TABLE IF NOT EXISTS alone can
# still fail with a duplicate-type error when two sessions race.
_SCHEMA_LOCK_ID = 0x7472_7573_7465_65  # "trustee"
_LISTEN_POLL_S = 0.2
_RECONNECT_DELAY_S = 0.5

T = TypeVar("T")


class _Unavailable(Exception):
    """The connection failed; carries the driver's message for the StorageError."""


class PostgresKvStore:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        db: str,
        table: str = "kbs_kv",
        pool_size: int = 4,
        timeout: float = 5.0,
    ) -> None:
        if not _TABLE_RE.match(table):
            raise StorageError(
                f"invalid postgres table name {table!r}: must match {_TABLE_RE.pattern}"
            )
        if pool_size < 1:
            raise StorageError(f"invalid postgres pool_size {pool_size}: must be at least 1")
        if not timeout > 0:
            raise StorageError(f"invalid postgres timeout {timeout}: must be positive")
        self.table = table
        self.versions_table = f"{table}_versions"
        self.timeout = timeout
        self._where = f"{host}:{port}/{db}"
        self._params: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": username,
            "password": password,
            "dbname": db,
            # libpq only takes whole seconds here and treats values below 2 as 2.
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"-c statement_timeout={int(timeout * 1000)}"
            f" -c lock_timeout={int(timeout * 1000)}",
            # A peer that vanished without closing the socket would otherwise hang a write
            # for the kernel's retransmission timeout (minutes).
            "tcp_user_timeout": int(timeout * 1000),
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "application_name": "trustee",
        }
        self._limiter = trio.CapacityLimiter(pool_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._idle_lock = threading.Lock()
        self._schema_ready = False
        self._schema_lock = trio.Lock()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        table: str = "kbs_kv",
        pool_size: int = 4,
        timeout: float = 5.0,
    ) -> PostgresKvStore:
        """Build from a `postgres://user:pass@host:port/db?opt=…` URL (e.g. POSTGRES_URL)."""
        try:
            parts = conninfo_to_dict(url)
        except psycopg.Error as exc:
            # The driver's message can echo the URL, password included.
            raise StorageError(f"invalid postgres URL: {type(exc).__name__}") from None
        try:
            port = int(parts.pop("port", 5432) or 5432)
        except (TypeError, ValueError):
            raise StorageError("invalid postgres URL: port is not a number") from None
        store = cls(
            host=str(parts.pop("host", "localhost") or "localhost"),
            port=port,
            username=str(parts.pop("user", "") or ""),
            password=str(parts.pop("password", "") or ""),
            db=str(parts.pop("dbname", "") or ""),
            table=table,
            pool_size=pool_size,
            timeout=timeout,
        )
        # Options such as sslmode pass through; ours win where both are given.
        store._params = {**parts, **store._params}
        return store

    # -- KeyValueStore -------------------------------------------------------------------------

    async def get(self, namespace: str, key: str) -> bytes | None:
        _check_text("get", namespace, key)
        q = sql.SQL("SELECT value FROM {} WHERE namespace = %s AND key = %s").format(
            sql.Identifier(self.table)
        )

        def op(conn: psycopg.Connection[Any]) -> tuple[bytes | None, bool]:
            row = conn.execute(q, (namespace, key)).fetchone()
            return (None if row is None else bytes(row[0])), True

        return await self._run("get", namespace, key, op)

    async def set(self, namespace: str, key: str, value: bytes, *, overwrite: bool = True) -> bool:
        check_key_size(key)
        _check_text("set", namespace, key)
        data = bytes(value)
        if overwrite:
            q = sql.SQL(
                "INSERT INTO {t} (namespace, key, value, version, updated_at)"
                " VALUES (%s, %s, %s, %s, now())"
                " ON CONFLICT (namespace, key) DO UPDATE"
                " SET value = EXCLUDED.value, version = EXCLUDED.version, updated_at = now()"
                " RETURNING 1"
            ).format(t=sql.Identifier(self.table))
        else:
            q = sql.SQL(
                "INSERT INTO {t} (namespace, key, value, version, updated_at)"
                " VALUES (%s, %s, %s, %s, now())"
                " ON CONFLICT (namespace, key) DO NOTHING RETURNING 1"
            ).format(t=sql.Identifier(self.table))

        def op(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
            version = self._bump(conn, namespace)
            written = conn.execute(q, (namespace, key, data, version)).fetchone() is not None
            # Nothing written: roll back so the namespace version and NOTIFY go too.
            return written, written

        return await self._run("set", namespace, key, op)

    async def delete(self, namespace: str, key: str) -> bool:
        _check_text("delete", namespace, key)
        q = sql.SQL("DELETE FROM {} WHERE namespace = %s AND key = %s RETURNING 1").format(
            sql.Identifier(self.table)
        )

        def op(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
            self._bump(conn, namespace)
            deleted = conn.execute(q, (namespace, key)).fetchone() is not None
            return deleted, deleted

        return await self._run("delete", namespace, key, op)

    async def list(self, namespace: str) -> list[str]:
        _check_text("list", namespace, None)
        q = sql.SQL("SELECT key FROM {} WHERE namespace = %s").format(sql.Identifier(self.table))

        def op(conn: psycopg.Connection[Any]) -> tuple[list[str], bool]:
            rows = conn.execute(q, (namespace,)).fetchall()
            # Sorted here rather than by the database collation, to match the other backends.
            return sorted(str(r[0]) for r in rows), True

        return await self._run("list", namespace, None, op)

    async def aclose(self) -> None:
        self._closed = True
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- change propagation --------------------------------------------------------------------

    async def version(self, namespace: str) -> int:
        """The namespace's write counter: 0 before the first write, +1 per committed write."""
        _check_text("version", namespace, None)
        q = sql.SQL("SELECT version FROM {} WHERE namespace = %s").format(
            sql.Identifier(self.versions_table)
        )

        def op(conn: psycopg.Connection[Any]) -> tuple[int, bool]:
            row = conn.execute(q, (namespace,)).fetchone()
            return (0 if row is None else int(row[0])), True

        return await self._run("version", namespace, None, op)

    async def listen(
        self,
        callback: Callable[[str], object],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call `callback(namespace)` in this trio run for every committed write, until cancelled.

        Runs on its own connection. When that connection drops it reconnects, and on
        reconnecting calls back for every namespace whose version moved meanwhile, since
        notifications sent while disconnected are lost. `task_status.started()` fires once
        the first LISTEN is in place, so writes after `nursery.start(store.listen, cb)` are seen.
        """
        if self._closed:
            raise StorageError("postgres listen: the store is closed")
        await self._ensure_schema("listen", None, None)
        try:
            await trio.to_thread.run_sync(
                self._listen_thread, callback, task_status, limiter=trio.CapacityLimiter(1)
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"postgres listen: database unavailable at {self._where}: {_first_line(exc)}"
            ) from None

    # -- internals -----------------------------------------------------------------------------

    def _bump(self, conn: psycopg.Connection[Any], namespace: str) -> int:
        # The upsert locks the namespace's row, so concurrent writers queue here and each
        # gets its own version: no lost updates, and versions follow commit order.
        row = conn.execute(
            sql.SQL(
                "INSERT INTO {v} AS v (namespace, version, updated_at) VALUES (%s, 1, now())"
                " ON CONFLICT (namespace) DO UPDATE"
                " SET version = v.version + 1, updated_at = now() RETURNING version"
            ).format(v=sql.Identifier(self.versions_table)),
            (namespace,),
        ).fetchone()
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, namespace))
        if row is None:  # RETURNING on an upsert always yields the row
            raise psycopg.ProgrammingError("version upsert returned no row")
        return int(row[0])

    async def _ensure_schema(self, what: str, namespace: str | None, key: str | None) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if self._schema_ready:
                return
            t = sql.Identifier(self.table)
            v = sql.Identifier(self.versions_table)
            statements = [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " namespace TEXT NOT NULL, key TEXT NOT NULL, value BYTEA NOT NULL,"
                    " version BIGINT NOT NULL,"
                    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (namespace, key))"
                ).format(t),
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} ("
                    " namespace TEXT PRIMARY KEY, version BIGINT NOT NULL,"
                    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                ).format(v),
            ]

            def op(conn: psycopg.Connection[Any]) -> tuple[None, bool]:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                for stmt in statements:
                    conn.execute(stmt)
                return None, True

            # Named after the operation that needed the tables, so its error says what failed.
            await self._run(what, namespace, key, op, schema=False)
            self._schema_ready = True

    async def _run(
        self,
        what: str,
        namespace: str | None,
        key: str | None,
        op: Callable[[psycopg.Connection[Any]], tuple[T, bool]],
        *,
        schema: bool = True,
    ) -> T:
        if self._closed:
            raise StorageError(f"postgres {what}{_target(namespace, key)}: the store is closed")
        if schema:
            await self._ensure_schema(what, namespace, key)
        try:
            return await trio.to_thread.run_sync(self._transact, op, limiter=self._limiter)
        except _Unavailable as exc:
            raise StorageError(
                f"postgres {what}{_target(namespace, key)}: database unavailable at "
                f"{self._where}: {exc}"
            ) from None
        except psycopg.errors.QueryCanceled as exc:
            raise StorageError(
                f"postgres {what}{_target(namespace, key)}: statement exceeded the "
                f"{self.timeout}s timeout: {_first_line(exc)}"
            ) from exc
        except psycopg.Error as exc:
            raise StorageError(
                f"postgres {what}{_target(namespace, key)}: {type(exc).__name__}: "
                f"{_first_line(exc)}"
            ) from exc

    def _transact(self, op: Callable[[psycopg.Connection[Any]], tuple[T, bool]]) -> T:
        """Run `op` in one transaction on a pooled connection (worker thread)."""
        for attempt in range(2):
            conn, reused = self._checkout()
            try:
                result, commit = op(conn)
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    conn.close()
                    # A pooled connection may have died while idle (say, a database
                    # restart). Nothing was committed yet, so one retry on a fresh
                    # connection is safe.
                    if reused and attempt == 0:
                        continue
                    raise _Unavailable(_first_line(exc)) from None
                self._rollback_and_checkin(conn)
                raise
            try:
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            except psycopg.Error as exc:
                conn.close()
                if commit:
                    raise _Unavailable(
                        f"connection lost while committing, outcome unknown: {_first_line(exc)}"
                    ) from None
                raise _Unavailable(_first_line(exc)) from None
            self._checkin(conn)
            return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _checkout(self) -> tuple[psycopg.Connection[Any], bool]:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), True
        try:
            return psycopg.connect(**self._params), False
        except psycopg.Error as exc:
            raise _Unavailable(_first_line(exc)) from None

    def _checkin(self, conn: psycopg.Connection[Any]) -> None:
        if self._closed or conn.closed:
            conn.close()
            return
        with self._idle_lock:
            self._idle.append(conn)

    def _rollback_and_checkin(self, conn: psycopg.Connection[Any]) -> None:
        try:
            conn.rollback()
        except psycopg.Error:
            conn.close()
            return
        self._checkin(conn)

    def _listen_thread(
        self, callback: Callable[[str], object], task_status: trio.TaskStatus[None]
    ) -> None:
        known: dict[str, int] | None = None
        started = False
        while True:
            trio.from_thread.check_cancelled()
            try:
                conn = psycopg.connect(**self._params, autocommit=True)
            except psycopg.Error:
                if not started:
                    raise
                self._sleep_cancellable(_RECONNECT_DELAY_S)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                current = self._read_versions(conn)
                if not started:
                    trio.from_thread.run_sync(task_status.started)
                    started = True
                if known is not None:
                    for ns in sorted(current):
                        if current[ns] != known.get(ns, 0):
                            trio.from_thread.run_sync(callback, ns)
                known = current
                while True:
                    trio.from_thread.check_cancelled()
                    for note in conn.notifies(timeout=_LISTEN_POLL_S):
                        known[note.payload] = known.get(note.payload, 0) + 1
                        trio.from_thread.run_sync(callback, note.payload)
            except psycopg.Error:
                if not started:
                    raise
                # Connection lost; versions are re-read after reconnecting.
            finally:
                conn.close()
            self._sleep_cancellable(_RECONNECT_DELAY_S)

    def _read_versions(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        rows = conn.execute(
            sql.SQL("SELECT namespace, version FROM {}").format(sql.Identifier(self.versions_table))
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    @staticmethod
    def _sleep_cancellable(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            trio.from_thread.check_cancelled()
            time.sleep(0.05)


def _check_text(what: str, namespace: str, key: str | None) -> None:
    # PostgreSQL text cannot hold NUL; refuse here with a clear reason, not a driver error.
    if "\x00" in namespace:
        raise StorageError(f"postgres {what}: namespace {namespace!r} contains a NUL character")
    if key is not None and "\x00" in key:
        raise StorageError(f"postgres {what} {namespace}/{key!r}: key contains a NUL character")


def _target(namespace: str | None, key: str | None) -> str:
    if namespace is None:
        return ""
    return f" {namespace}" if key is None else f" {namespace}/{key}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
