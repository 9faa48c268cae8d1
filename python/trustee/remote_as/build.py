"""The remote Attestation Service a configuration names, and the signing keys it publishes."""

from __future__ import annotations

import logging

from trustee.config.model import RemoteAsConfig
from trustee.remote_as.common import RemoteAs
from trustee.token.signer_keys import PublishedSignerKeys

log = logging.getLogger("trustee.remote_as")


async def remote_backend(config: RemoteAsConfig) -> tuple[RemoteAs, PublishedSignerKeys | None]:
    """The client of the AS `config` names; for a REST AS, also its published token keys,
    fetched now. An AS that is not up yet does not stop the KBS: readiness says so, and the
    keys are fetched again when its first token arrives."""
    if config.type == "coco_as_grpc":
        # grpcio loads only for a KBS that uses it.
        from trustee.remote_as.grpc_client import GrpcAs

        log.info(
            "remote Attestation Service (gRPC) at %s, up to %d channels, %d ms per call",
            config.address,
            config.pool_size,
            config.timeout_ms,
        )
        return GrpcAs(config), None
    from trustee.remote_as.rest import RestAs

    rest = RestAs(config)
    log.info(
        "remote Attestation Service (REST) at %s, up to %d connections, %d ms per call",
        config.address,
        config.pool_size,
        config.timeout_ms,
    )
    keys = PublishedSignerKeys(rest.jwks_url, rest.fetch_jwks)
    problem = await keys.load()
    if problem is not None:
        log.warning(
            "the Attestation Service's token signing keys are not loaded yet (%s); they are "
            "fetched again when a token arrives",
            problem,
        )
    return rest, keys
