"""Serve the app with hypercorn on trio, TLS from `[http_server]`."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import hypercorn.trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from trustee.config.errors import ConfigError
from trustee.config.model import HttpServerConfig

log = logging.getLogger("trustee.http")

# Mozilla server-side TLS recommendations (TLS 1.2 cipher suites; TLS 1.3 suites are fixed).
_INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)
_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_PROFILE_MIN = {"old": "1.0", "intermediate": "1.2", "modern": "1.3", "custom": "1.2"}

# Large EAR tokens travel as `Authorization: Bearer` headers.
MAX_REQUEST_HEAD = 256 * 1024


def build_ssl_context(cfg: HttpServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert cfg.certificate is not None and cfg.private_key is not None
    try:
        ctx.load_cert_chain(cfg.certificate, cfg.private_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "http_server.certificate", f"cannot load {cfg.certificate} / {cfg.private_key}: {exc}"
        ) from exc
    ctx.minimum_version = _VERSIONS[cfg.tls_min_version or _PROFILE_MIN[cfg.tls_profile]]
    if cfg.tls_max_version:
        ctx.maximum_version = _VERSIONS[cfg.tls_max_version]
    ciphers = cfg.tls_ciphers
    if ciphers is None and cfg.tls_profile == "intermediate":
        ciphers = _INTERMEDIATE_CIPHERS
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(
                "http_server.tls_ciphers", f"no usable cipher in {ciphers!r}"
            ) from exc
    if cfg.tls_groups:
        log.warning("http_server.tls_groups is not applied: Python's ssl cannot set key groups")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _Config(HypercornConfig):
    ssl_context: ssl.SSLContext | None = None

    @property
    def ssl_enabled(self) -> bool:
        return self.ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self.ssl_context


def hypercorn_config(cfg: HttpServerConfig) -> HypercornConfig:
    hc = _Config()
    hc.bind = list(cfg.sockets)
    hc.h11_max_incomplete_size = MAX_REQUEST_HEAD
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = 30
    if not cfg.insecure_http:
        hc.ssl_context = build_ssl_context(cfg)
    return hc


def listening_sockets(cfg: HttpServerConfig) -> Sockets:
    """Bound sockets for worker processes to share (each worker listens on them)."""
    return hypercorn_config(cfg).create_sockets()


async def serve(
    app: Any,
    cfg: HttpServerConfig,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    sockets: Sockets | None = None,
) -> None:
    hc = hypercorn_config(cfg)
    scheme = "http" if cfg.insecure_http else "https"
    if sockets is not None:
        # A worker process: the parent bound the sockets; every worker accepts on them.
        for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
            sock.listen(hc.backlog)
        await worker_serve(
            wrap_app(app, hc.wsgi_max_body_size, None),
            hc,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
        )
        return
    log.info("Starting %s server at %s", scheme.upper(), cfg.sockets)
    if shutdown_trigger is None:
        await hypercorn.trio.serve(app, hc)
    else:
        await hypercorn.trio.serve(app, hc, shutdown_trigger=shutdown_trigger)
