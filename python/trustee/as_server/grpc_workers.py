"""The gRPC Attestation Service in worker processes (`--workers N`, N > 1). grpcio binds its
own listening sockets, so each worker binds the same port with SO_REUSEPORT and the kernel
spreads connections across them; the supervisor checks first that the port is free and keeps
it reserved, so that no other server takes it while a worker is being replaced."""

from __future__ import annotations

import logging
import os
import signal
import socket
from dataclasses import dataclass
from functools import partial
from typing import Any

from trustee.as_server.cli import AsSettings, worker_settings

log = logging.getLogger("trustee.as")


@dataclass(frozen=True)
class GrpcWorker:
    """What a worker serves (pickled to it: credentials are read from the files there)."""

    settings: AsSettings
    address: str  # IP:PORT, the port resolved
    cert: str | None
    key: str | None


def reserve(address: str) -> tuple[socket.socket, str]:
    """A socket bound to `address` with SO_REUSEPORT (never listening, so the kernel gives it
    no connections) and the address with its port resolved. A port another server holds is
    refused, as `--workers 1` refuses it: the check binds without SO_REUSEPORT first."""
    host, _, port = address.rpartition(":")
    infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    family, kind, proto, _, where = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(where)
        resolved = probe.getsockname()[1]
    held = socket.socket(family, kind, proto)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((where[0], resolved, *where[2:]))
    except OSError:
        held.close()
        raise
    return held, f"{host}:{resolved}"


def serve_workers(config: Any, count: int, address: str, cert: str | None, key: str | None) -> int:
    """Serve with `count` workers until SIGINT/SIGTERM (StartError when one cannot start)."""
    from trustee.as_server.cli import shared_signer_pem
    from trustee.supervision import supervise

    settings = AsSettings(config, shared_signer_pem(config, count))
    held, resolved = reserve(address)
    with held:
        work = GrpcWorker(settings, resolved, cert, key)
        log.info("Starting %d gRPC workers at %s", count, resolved)
        return supervise(count, _worker, partial(_worker_args, work), "grpc-as-worker")


def _worker_args(work: GrpcWorker, index: int) -> tuple[Any, ...]:
    return (GrpcWorker(worker_settings(work.settings, index), work.address, work.cert, work.key),)


def _worker(work: GrpcWorker, ready: Any, failures: Any) -> None:
    from trustee.as_server.grpc_server import GrpcStartError
    from trustee.supervision import run_worker

    def main(sentinel: int | None) -> Any:
        return partial(_serve, work, ready.set, sentinel)

    run_worker(main, failures, (GrpcStartError,))


async def _serve(work: GrpcWorker, ready: Any, sentinel: int | None) -> None:
    import dataclasses

    import trio

    from trustee.as_server.grpc_run import run_grpc_as
    from trustee.as_server.grpc_server import Listen

    listen = Listen.from_files(work.address, work.cert, work.key)
    listen = dataclasses.replace(listen, reuse_port=True)

    async def orphaned(sentinel: int) -> None:
        # The supervisor's end of this pipe closes when it dies, even by SIGKILL: stop as
        # a signal would stop this worker, gracefully.
        await trio.lowlevel.wait_readable(sentinel)
        log.warning("the supervisor is gone, shutting down")
        os.kill(os.getpid(), signal.SIGTERM)

    async with trio.open_nursery() as nursery:
        if sentinel is not None:
            nursery.start_soon(orphaned, sentinel)
        signer = work.settings.signer()
        await run_grpc_as(work.settings.config, listen, lambda _port: ready(), signer)
        nursery.cancel_scope.cancel()
