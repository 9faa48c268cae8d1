"""Serving gRPC services from a trio process: grpcio's synchronous server on a thread pool,
the services' work on the trio loop (through a TrioPortal), the standard health service, and
a graceful stop on SIGINT/SIGTERM. Used by the gRPC Attestation Service and the RVPS."""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import trio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from trustee import offload
from trustee.grpc_api.bridge import TrioPortal

log = logging.getLogger("trustee.grpc")

# Each call in progress holds one pool thread while its work runs on the loop; a thread that
# waits costs little, so the pool is sized for concurrency, not for cores.
POOL_THREADS = 64
# Calls beyond this many in progress are refused (RESOURCE_EXHAUSTED) instead of queued.
MAX_CONCURRENT_RPCS = 1024
# Evidence is bounded at 4 MiB of JSON; base64url makes that 5.4 MiB.
MAX_MESSAGE_BYTES = 8 << 20
# One call's work on the loop, at most (policies and collateral fetches have their own bounds).
CALL_TIME_LIMIT_S = 60.0
STOP_GRACE_S = 10.0


class GrpcStartError(Exception):
    """The server cannot start: one line for the user."""


@dataclass(frozen=True)
class Listen:
    address: str  # IP:PORT
    credentials: grpc.ServerCredentials | None = None  # None: plain HTTP/2
    # Worker processes each bind the same port; the kernel spreads connections across them.
    reuse_port: bool = False

    @classmethod
    def from_files(cls, address: str, cert: str | None, key: str | None) -> Listen:
        """TLS from PEM files when both are given (upstream's grpc-as: both or neither)."""
        if cert is None and key is None:
            return cls(address)
        if cert is None or key is None:
            raise GrpcStartError(
                "HTTPS public key cert and private key must be provided to enable HTTPS."
            )
        chain = _read(cert, "failed to read HTTPS public key cert")
        private = _read(key, "failed to read HTTPS private key")
        _check_pem(cert, chain, key, private)
        return cls(address, grpc.ssl_server_credentials([(private, chain)]))


def _check_pem(cert: str, chain: bytes, key: str, private: bytes) -> None:
    """grpcio would only say that it could not listen: name the file that is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificates(chain)
    except ValueError as exc:
        raise GrpcStartError(f"HTTPS public key cert {cert}: not a PEM certificate: {exc}") from exc
    try:
        serialization.load_pem_private_key(private, None)
    except (ValueError, TypeError) as exc:
        raise GrpcStartError(f"HTTPS private key {key}: not an unencrypted PEM key: {exc}") from exc


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise GrpcStartError(f"{what}: {path}: {exc.strerror or exc}") from exc


Register = Callable[[grpc.Server, TrioPortal], list[str]]


def _server(reuse_port: bool) -> grpc.Server:
    return grpc.server(
        ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="grpc-call"),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # grpcio shares ports by default: a second server would bind silently (workers
            # share theirs on purpose, under a supervisor that checked the port was free).
            ("grpc.so_reuseport", int(reuse_port)),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )


def _bind(server: grpc.Server, listen: Listen) -> int:
    try:
        if listen.credentials is None:
            return server.add_insecure_port(listen.address)
        return server.add_secure_port(listen.address, listen.credentials)
    except RuntimeError as exc:
        why = _why_not(listen.address)
        raise GrpcStartError(f"cannot listen on {listen.address}: {why}") from exc


def _why_not(address: str) -> str:
    """grpcio says only that binding failed; a socket of our own finds out why."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, where = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(where)
    except (OSError, ValueError, IndexError) as exc:
        return getattr(exc, "strerror", None) or str(exc)
    return "grpcio could not bind it"


async def serve_grpc(
    listen: Listen,
    register: Register,
    what: str,
    *,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve the services `register` adds (it returns their names for the health service)
    until SIGINT/SIGTERM; then refuse new calls and let those in progress finish."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        portal = TrioPortal(trio.lowlevel.current_trio_token(), CALL_TIME_LIMIT_S, offload.DEFAULT)
        server = _server(listen.reuse_port)
        names = register(server, portal)
        checker = health.HealthServicer(
            experimental_non_blocking=True,
            experimental_thread_pool=ThreadPoolExecutor(max_workers=1),
        )
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        port = _bind(server, listen)
        async with trio.open_nursery() as nursery:
            await nursery.start(portal.serve)
            server.start()
            for name in ["", *names]:
                checker.set(name, health_pb2.HealthCheckResponse.SERVING)
            scheme = "plain HTTP/2" if listen.credentials is None else "TLS"
            log.info("%s listening on %s (%s, port %d)", what, listen.address, scheme, port)
            if on_listening is not None:
                on_listening(port)
            try:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
            finally:
                checker.enter_graceful_shutdown()
                # The portal keeps running meanwhile: calls in progress need it to finish.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(lambda: server.stop(STOP_GRACE_S).wait())
                nursery.cancel_scope.cancel()
