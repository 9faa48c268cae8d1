"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, serve on 127.0.0.1.

PostgreSQL refuses to run as root, so under root the cluster belongs to an unprivileged
account and every server command runs through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "trustee"
DB = "postgres"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl, if any."""
    candidates = []
    for entry in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(entry)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            try:
                candidates.append((int(path.parent.name), path))
            except ValueError:
                continue
    return max(candidates)[1] if candidates else None


def _unprivileged_account() -> str | None:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def why_unavailable() -> str | None:
    """A reason the tests cannot start a server here, or None when they can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        if _unprivileged_account() is None:
            return "running as root and no unprivileged 'postgres' or 'nobody' account to run as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is not installed"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries")
        self.bindir = bindir
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.user = USER
        self.db = DB
        self.root = Path(tempfile.mkdtemp(prefix="trustee-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = _unprivileged_account()
            if account is None:
                raise RuntimeError("no unprivileged account to run PostgreSQL as")
            info = pwd.getpwnam(account)
            os.chown(self.root, info.pw_uid, info.pw_gid)
            self._as = ["runuser", "-u", account, "--"]

    def _cmd(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()}\n{log}"
            )

    def init(self) -> None:
        self._cmd(
            "initdb",
            "-D",
            str(self.data),
            "--auth=trust",
            f"--username={self.user}",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        # Durability settings off: the cluster lives for one test run.
        options = (
            f"-c listen_addresses={self.host} -c port={self.port}"
            f" -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=40 -c shared_buffers=16MB"
        )
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.db}"

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
