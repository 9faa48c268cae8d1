"""A standalone Attestation Service as a child process on a loopback port, for the KBS's remote
AS tests: REST (`trustee as serve`) or gRPC (`trustee as serve --grpc`), stopped, paused and
restarted on the same port the way an outage looks to its clients."""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import trio

from tests.e2e.harness import client_env, free_port, server_env

STARTUP_TIMEOUT = 60.0
# Which KBS `[attestation_service] type` talks to which AS server.
KBS_TYPES = {"rest": "coco_as_restful", "grpc": "coco_as_grpc"}


@functools.cache
def grpc_server_missing() -> str | None:
    """Why no gRPC AS can be started from this tree, or None when one can."""
    result = subprocess.run(
        [sys.executable, "-m", "trustee.cli", "as", "serve", "--grpc", "--help"],
        capture_output=True,
        text=True,
        env=client_env(),
        check=False,
    )
    if "--grpc" in result.stdout:
        return None
    return "needs the gRPC Attestation Service server (`trustee as serve --grpc`), not in this tree"


@dataclass
class AsProcess:
    kind: str  # "rest" | "grpc"
    workdir: Path
    config: Path | None = None
    port: int = field(default_factory=free_port)
    process: trio.Process | None = None
    _log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"as-{self.kind}.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "trustee.cli", "as", "serve"]
        # One process: pausing it pauses the whole AS.
        argv += ["--grpc"] if self.kind == "grpc" else ["--workers", "1"]
        argv += ["--socket", f"127.0.0.1:{self.port}"]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        return argv

    async def start(self) -> None:
        """Start on this AS's port (the same one after a stop) and wait until it serves."""
        self._log = self.log_path.open("ab")
        self.process = await trio.lowlevel.open_process(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT, env=server_env()
        )
        with trio.move_on_after(STARTUP_TIMEOUT):
            while self.process.returncode is None:
                if await self._serving():
                    return
                await trio.sleep(0.05)
        raise RuntimeError(f"the {self.kind} AS did not start:\n{self.log_text()}")

    async def _serving(self) -> bool:
        if self.kind == "rest":
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{self.address}/healthz")).status_code == 200
            except httpx.TransportError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    async def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(how)
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()

    def pause(self) -> None:
        """Stop the process in its tracks: it accepts connections (the kernel does) and
        answers nothing, an AS slower than any timeout."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@asynccontextmanager
async def running_as(
    kind: str, workdir: Path, config: Path | None = None
) -> AsyncIterator[AsProcess]:
    workdir.mkdir(parents=True, exist_ok=True)
    service = AsProcess(kind, workdir, config)
    try:
        await service.start()
        yield service
    finally:
        if service.process is not None and service.process.returncode is None:
            service.resume()  # a paused process cannot act on SIGINT
        await service.stop()
