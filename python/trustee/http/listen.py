"""What the server listens with, before anything serves: hypercorn's configuration, the TLS
context from `[http_server]`, and the bound sockets.

Apart from `serve` so that a worker supervisor (and a single worker, before it builds its app)
can bind and listen without loading trio, the HTTP machinery or the web framework.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

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


def _tls_culprit(cert_path: str, key_path: str, exc: Exception) -> tuple[str, str]:
    """Which of the two files OpenSSL refused, and why: its error alone names neither."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with open(cert_path, "rb") as fh:
            certs = x509.load_pem_x509_certificates(fh.read())
    except OSError as err:
        return "http_server.certificate", f"cannot read {cert_path}: {err.strerror or err}"
    except ValueError:
        return "http_server.certificate", f"{cert_path} holds no PEM certificate"
    try:
        with open(key_path, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
    except OSError as err:
        return "http_server.private_key", f"cannot read {key_path}: {err.strerror or err}"
    except (ValueError, TypeError) as err:
        # TypeError: the key is encrypted and no password can be given in the config.
        return "http_server.private_key", f"{key_path} is not a usable PEM private key: {err}"
    leaf = (
        certs[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf != pub:
        return (
            "http_server.private_key",
            f"{key_path} does not match the certificate in {cert_path}",
        )
    return "http_server.certificate", f"cannot load {cert_path} / {key_path}: {exc}"


def build_ssl_context(cfg: HttpServerConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert cfg.certificate is not None and cfg.private_key is not None
    try:
        ctx.load_cert_chain(cfg.certificate, cfg.private_key)
    except (OSError, ssl.SSLError) as exc:
        key, why = _tls_culprit(cfg.certificate, cfg.private_key, exc)
        raise ConfigError(key, why) from exc
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


KEEP_ALIVE_TIMEOUT = 30.0


class ServerConfig(HypercornConfig):
    ssl_context: ssl.SSLContext | None = None
    _headers_at: tuple[int, str] | None = None
    _headers: tuple[tuple[bytes, bytes], ...] = ()

    def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
        # hypercorn formats the Date header for every answer; it changes once a second.
        key = (int(time.time()), protocol)
        if key != self._headers_at:
            self._headers, self._headers_at = tuple(super().response_headers(protocol)), key
        return list(self._headers)

    @property
    def ssl_enabled(self) -> bool:
        return self.ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self.ssl_context


def hypercorn_config(cfg: HttpServerConfig) -> HypercornConfig:
    hc = ServerConfig()
    hc.bind = list(cfg.sockets)
    hc.h11_max_incomplete_size = MAX_REQUEST_HEAD
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    if not cfg.insecure_http:
        hc.ssl_context = build_ssl_context(cfg)
    return hc


class ListenError(Exception):
    """An address the server cannot listen on; one line, naming the address."""


def _why(exc: OSError) -> str:
    why = exc.strerror or str(exc)
    return why[:1].lower() + why[1:]


def _probe(address: str) -> None:
    """Bind `address` alone, as nothing else is bound there. Sockets for several workers share
    their port (SO_REUSEPORT), so a second server of the same user would bind beside a running
    one and take half its connections in silence; a socket without that option cannot."""
    host, _, port = address.replace("[", "").replace("]", "").rpartition(":")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As hypercorn's own sockets: a previous run's connections in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise ListenError(f"cannot listen on {address}: {_why(exc)}") from exc


def worker_sockets(cfg: HttpServerConfig, count: int) -> list[Sockets]:
    """A set of bound sockets per worker process, all on the configured addresses with
    SO_REUSEPORT: the kernel spreads new connections evenly over the workers. With one shared
    socket whichever worker woke first took them, and keep-alive clients stayed where they
    landed (27 of 32 on one of two workers, measured). Raises ListenError for an address
    that is taken or cannot be bound, before any socket is made."""
    hc = hypercorn_config(cfg)
    hc.workers = count  # hypercorn sets SO_REUSEPORT on sockets made for several workers
    for address in cfg.sockets:
        _probe(address)
    try:
        made = [hc.create_sockets() for _ in range(count)]
    except OSError as exc:  # taken between the probe and now
        raise ListenError(f"cannot listen on {', '.join(cfg.sockets)}: {_why(exc)}") from exc
    # Listening from the start: the kernel only hashes connections to listening sockets, so a
    # burst that arrives while the workers start would all go to the first one up. Queued
    # here, they wait for their own worker instead (and for its successor after a restart).
    for sockets in made:
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.listen(hc.backlog)
    return made
