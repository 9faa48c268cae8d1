"""The standalone Attestation Service's command lines: `trustee as serve` and upstream's
`restful-as` (same flags: `-c/--config-file`, `-s/--socket`, `-t/--https-pubkey-cert`,
`-k/--https-prikey`, `-r/--allowed_origin`), plus our `--workers`.

Like `trustee serve`, the process that parses this loads neither trio nor the HTTP stack: a
worker supervisor binds the sockets and starts workers that build the service.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trustee import __version__

if TYPE_CHECKING:
    from trustee.attestation.ear import Signer
    from trustee.config.as_file import AsConfig
    from trustee.config.model import HttpServerConfig
    from trustee.serving import Program

log = logging.getLogger("trustee.as")


@dataclass(frozen=True)
class AsSettings:
    """What a worker builds its service from (pickled to spawned workers)."""

    config: AsConfig
    # Without a configured signer every worker signs with this one key, so that the JWKS any
    # worker serves verifies the tokens of all of them.
    signer_pem: bytes | None = None

    def signer(self) -> Signer | None:
        if self.signer_pem is None:
            return None
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from trustee.attestation.ear import Signer

        key = serialization.load_pem_private_key(self.signer_pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Signer(key)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every AS server command takes (upstream's names and short forms)."""
    parser.add_argument(
        "-c",
        "--config-file",
        "--config",
        dest="config",
        metavar="FILE",
        help="the AS config file, JSON or TOML (default: Memory storage, built-in RVPS, "
        "an ephemeral token key)",
    )
    parser.add_argument("-s", "--socket", required=True, metavar="IP:PORT", help="where to listen")
    parser.add_argument(
        "-t",
        "--https-pubkey-cert",
        metavar="PEM",
        help="the HTTPS certificate chain (with --https-prikey: serve HTTPS)",
    )
    parser.add_argument("-k", "--https-prikey", metavar="PEM", help="the HTTPS private key")
    parser.add_argument(
        "-r",
        "--allowed_origin",
        "--allowed-origin",
        dest="allowed_origin",
        nargs="+",
        action="extend",
        default=[],
        metavar="ORIGIN",
        help="CORS origins (accepted for upstream's command line; not applied)",
    )
    add_workers_argument(parser)


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """`--workers N`, for the REST and the gRPC servers alike (see `worker_count`)."""
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: one per core when the storage is shared between "
        "processes, else 1)",
    )


def _serve_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Attestation Service (trustee-py), upstream's REST API"
    )
    add_server_arguments(parser)
    parser.add_argument(
        "-V", "--version", action="version", version=f"%(prog)s {__version__} (trustee-py)"
    )
    return parser


def as_main(argv: list[str]) -> int:
    """`trustee as …`: the standalone Attestation Service."""
    parser = argparse.ArgumentParser(prog="trustee as", description="the Attestation Service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve upstream's REST API", add_help=False)
    if argv and argv[0] == "serve":
        args = _serve_parser("trustee as serve").parse_args(argv[1:])
        return serve_rest(args, "trustee as serve")
    parser.parse_args(argv)
    return 2


def restful_as_main(argv: list[str] | None = None) -> int:
    """Upstream's `restful-as` command line."""
    args = _serve_parser("restful-as").parse_args(sys.argv[1:] if argv is None else argv)
    return serve_rest(args, "restful-as")


def serve_rest(args: argparse.Namespace, prog: str) -> int:
    from trustee.logs import setup_logging
    from trustee.serving import serve_program

    setup_logging()
    return serve_program(lambda: prepare(args, _build_rest), prog)


async def _build_rest(settings: AsSettings) -> Any:
    from trustee.as_server.rest_app import build_rest_app

    return await build_rest_app(settings)


def prepare(args: argparse.Namespace, build: Any) -> Program:
    """What the server processes run, from the command line; ConfigError names the flag or
    the config file's key that is wrong."""
    from trustee.config.as_file import load_file
    from trustee.serving import Program, check_front_end_env

    log.info("trustee-py Attestation Service %s", __version__)
    if args.allowed_origin:
        log.warning(
            "--allowed_origin %s: CORS is not supported by this server; no CORS headers are sent",
            ",".join(args.allowed_origin),
        )
    if args.config:
        log.info("Using config file %s", args.config)
    config = load_file(args.config)
    http = http_config(args)
    http.worker_count = worker_count(config, args.workers)
    check_front_end_env()
    settings = AsSettings(config, shared_signer_pem(config, http.worker_count))
    return Program(settings, http, build, worker_settings, source=args.config)


def http_config(args: argparse.Namespace) -> HttpServerConfig:
    from trustee.config import ConfigError
    from trustee.config.loader import is_socket_address
    from trustee.config.model import HttpServerConfig
    from trustee.http.listen import build_ssl_context

    if not is_socket_address(args.socket):
        raise ConfigError("--socket", f"{args.socket!r} is not an ip:port address")
    cert, key = args.https_pubkey_cert, args.https_prikey
    if (cert is None) != (key is None):
        given, missing = ("-t", "-k") if key is None else ("-k", "-t")
        raise ConfigError(given, f"HTTPS needs both -t and -k; {missing} is missing")
    http = HttpServerConfig(
        sockets=[args.socket], insecure_http=cert is None, certificate=cert, private_key=key
    )
    if cert is not None:
        try:
            build_ssl_context(http)  # refused here, naming the flag, before anything binds
        except ConfigError as exc:
            flag = "-t" if exc.key.endswith("certificate") else "-k"
            raise ConfigError(flag, exc.message) from None
    return http


def worker_count(config: AsConfig, wanted: int | None) -> int:
    """`wanted`, or the KBS's default: a worker per core when every store is shared."""
    from trustee.config import ConfigError
    from trustee.config.stores import SHARED_STORAGE

    main = config.storage.storage_type
    kinds = {main, config.service.storage_type or main, config.service.rvps.storage_type or main}
    if config.service.rvps.legacy_file is not None:
        kinds.discard(config.service.rvps.storage_type or main)
    private = sorted(k for k in kinds if k not in SHARED_STORAGE)
    if wanted is None:
        return 1 if private else max(1, len(os.sched_getaffinity(0)))
    if wanted < 1:
        raise ConfigError("--workers", "must be at least 1")
    if wanted > 1 and private:
        raise ConfigError(
            "--workers",
            f"{wanted} workers cannot share policies and reference values kept in one "
            f"process's memory (storage {', '.join(private)}); use LocalFs, Postgres or Redis "
            "storage, or one worker",
        )
    return wanted


def shared_signer_pem(config: AsConfig, workers: int) -> bytes | None:
    """The one key every worker signs with when the config names no signer (None: each
    process may make its own, or loads the configured one)."""
    if workers > 1 and config.service.broker.signer is None:
        return _ephemeral_key()
    return None


def _ephemeral_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    log.info("No token signer key configured: the workers share one ephemeral key")
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def worker_settings(settings: AsSettings, index: int) -> AsSettings:
    """A file audit sink gets one file per worker: a hash chain needs a single writer."""
    from trustee.serving import worker_audit_sinks

    sinks = worker_audit_sinks(settings.config.audit_sinks, index)
    return dataclasses.replace(
        settings, config=dataclasses.replace(settings.config, audit_sinks=sinks)
    )


if __name__ == "__main__":
    sys.exit(restful_as_main())
