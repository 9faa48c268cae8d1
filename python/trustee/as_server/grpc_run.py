"""The gRPC Attestation Service and the standalone RVPS processes: assemble from the config
file, run the audit dispatcher and the native offload beside the server, stop on a signal."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
import trio

from trustee import offload
from trustee.as_server.grpc_as import AttestationServicer, ReferenceValueServicer
from trustee.as_server.grpc_server import Listen, serve_grpc
from trustee.attestation.ear import Signer
from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher
from trustee.config.as_file import AsConfig
from trustee.config.rvps_file import RvpsFileConfig
from trustee.grpc_api import attestation_pb2_grpc, reference_pb2_grpc
from trustee.grpc_api.bridge import TrioPortal
from trustee.offload_threads import default_threads

log = logging.getLogger("trustee.as")

AUDIT_FLUSH_SECONDS = 10.0
AS_SERVICE = "attestation.AttestationService"
RVPS_SERVICE = "reference.ReferenceValueProviderService"
# Status messages of upstream's two servers: (query, register).
AS_RVPS_WORDS = ("Failed to query reference values", "Register reference value")
RVPS_WORDS = ("Query reference value", "Register reference value")


async def _with_background(
    audit: AuditDispatcher | NullDispatcher, serve: Callable[[], Awaitable[None]]
) -> None:
    from trustee.serving import _settle_garbage_collector as settle_garbage_collector

    offload.DEFAULT.threads = default_threads(1)
    # As for the KBS: what start-up built is frozen, young collections run less often.
    settle_garbage_collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(audit.run)
        await nursery.start(offload.DEFAULT.run)
        await serve()
        await audit.aclose(AUDIT_FLUSH_SECONDS)
        nursery.cancel_scope.cancel()


async def run_grpc_as(
    config: AsConfig,
    listen: Listen,
    on_listening: Callable[[int], None] | None = None,
    signer: Signer | None = None,
) -> None:
    """Serve upstream's grpc-as services (and health) until SIGINT/SIGTERM; `signer` stands
    in for an unconfigured one (workers share it)."""
    from trustee.as_assemble import assemble_as

    standalone = await assemble_as(config, signer=signer)

    def register(server: grpc.Server, portal: TrioPortal) -> list[str]:
        attestation_pb2_grpc.add_AttestationServiceServicer_to_server(
            AttestationServicer(standalone, portal), server
        )
        rvps = ReferenceValueServicer(standalone.service.rvps, portal, AS_RVPS_WORDS)
        reference_pb2_grpc.add_ReferenceValueProviderServiceServicer_to_server(rvps, server)
        return [AS_SERVICE, RVPS_SERVICE]

    async def serve() -> None:
        await serve_grpc(listen, register, "gRPC Attestation Service", on_listening=on_listening)

    await _with_background(standalone.audit, serve)


async def run_rvps(
    config: RvpsFileConfig, listen: Listen, on_listening: Callable[[int], None] | None = None
) -> None:
    """Serve reference.proto (and health) until SIGINT/SIGTERM."""
    from trustee.attestation.rvps import ReferenceValueStore
    from trustee.storage.factory import StoreRegistry
    from trustee.storage.kv import KeyValueStore
    from trustee.storage.rvfile import ReferenceValueFile

    for key in config.ignored_keys:
        log.info("config key ignored: %s", key)
    store: KeyValueStore
    if config.records_file is not None:
        log.info("RVPS storage: the records file %s", config.records_file)
        store = ReferenceValueFile(config.records_file)
    else:
        log.info("RVPS storage backend: %s", config.storage.storage_type)
        store = StoreRegistry(config.storage).get()
    rvps = ReferenceValueStore(store)

    def register(server: grpc.Server, portal: TrioPortal) -> list[str]:
        servicer = ReferenceValueServicer(rvps, portal, RVPS_WORDS)
        reference_pb2_grpc.add_ReferenceValueProviderServiceServicer_to_server(servicer, server)
        return [RVPS_SERVICE]

    async def serve() -> None:
        await serve_grpc(listen, register, "RVPS", on_listening=on_listening)

    await _with_background(NullDispatcher(), serve)
