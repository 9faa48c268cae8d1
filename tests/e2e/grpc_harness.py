"""Start the real gRPC servers (`trustee as serve --grpc`, `trustee rvps serve`, `grpc-as`,
`rvps`) as child processes on loopback ports; ready once the health service says SERVING."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.harness import STARTUP_TIMEOUT, _stop, free_port, server_env
from trustee.grpc_api.bridge import unary

# Upstream's programs, run as this package provides them (the console scripts call these).
GRPC_AS = ("-c", "import sys; from trustee.as_server.grpc_cli import grpc_as_main as m; m()")
RVPS = ("-c", "import sys; from trustee.as_server.grpc_cli import rvps_main as m; m()")


@dataclass
class RunningGrpc:
    port: int
    log_path: Path
    process: trio.Process
    ca: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        if self.ca is None:
            return grpc.insecure_channel(self.address)
        creds = grpc.ssl_channel_credentials(self.ca.read_bytes())
        return grpc.secure_channel(self.address, creds)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


async def serving(channel: grpc.Channel, service: str = "") -> bool:
    # The stubs' HealthStub declares no methods; the generated class has them.
    check: grpc.UnaryUnaryMultiCallable[Any, Any] = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
    try:
        reply = await unary(check, health_pb2.HealthCheckRequest(service=service), 1.0)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def aborted(call: Awaitable[Any]) -> str:
    """The message of the ABORTED status that `call` ends with."""
    with pytest.raises(grpc.RpcError) as caught:
        await call
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.ABORTED, error.details()
    return error.details() or ""


@asynccontextmanager
async def run_grpc(
    argv: Callable[[int], list[str]],
    log_path: Path,
    *,
    port: int | None = None,
    ca: Path | None = None,
) -> AsyncIterator[RunningGrpc]:
    """`python <argv(port)>` until ready; a fixed `port` lets a test restart a server."""
    for attempt in range(3):
        chosen = port or free_port()
        log = log_path.open("ab")
        process = await trio.lowlevel.open_process(
            [sys.executable, *argv(chosen)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
        running = RunningGrpc(chosen, log_path, process, ca)
        try:
            if await _wait_ready(running):
                try:
                    yield running
                finally:
                    await _stop(process)
                return
            if "Address already in use" not in running.log_text() or port or attempt == 2:
                raise RuntimeError(f"server did not start:\n{running.log_text()}")
        finally:
            if process.returncode is None:
                await _stop(process)
            log.close()


async def _wait_ready(running: RunningGrpc) -> bool:
    with trio.move_on_after(STARTUP_TIMEOUT), running.channel() as channel:
        while running.process.returncode is None:
            if await serving(channel):
                return True
            await trio.sleep(0.05)
    return False


def as_argv(config: Path, *extra: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [
            "-m", "trustee.cli", "as", "serve", "--grpc",
            "--config", str(config), "--socket", f"127.0.0.1:{port}", *extra,
        ]  # fmt: skip

    return argv


def rvps_argv(config: Path | None) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        given = [] if config is None else ["--config", str(config)]
        return ["-m", "trustee.cli", "rvps", "serve", *given, "--address", f"127.0.0.1:{port}"]

    return argv
