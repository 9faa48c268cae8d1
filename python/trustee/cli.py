"""The `trustee` command (and `kbs`, which accepts upstream's command line)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from functools import partial

import trio

from trustee import __version__
from trustee.config import Config, ConfigError, load_embedded_default, load_file
from trustee.logs import setup_logging

log = logging.getLogger("trustee")

EXIT_CONFIG = 2


def _banner(config: Config) -> str:
    sock = config.http_server.sockets[0]
    url = f"http://{sock}"
    return "\n".join(
        [
            "=" * 72,
            " trustee-py development KBS: NOT FOR PRODUCTION",
            f" listening on {url} (plain HTTP, loopback only)",
            " storage in memory, ephemeral token signer, insecure_header_jwk = true,",
            " admin API open to loopback clients (InsecureAllowAll).",
            f" try:  trustee-client --url {url} attest",
            " run with --config FILE (or KBS_CONFIG_FILE) for a real deployment.",
            "=" * 72,
        ]
    )


async def _run(config: Config) -> None:
    from trustee.http.app import create_app
    from trustee.http.serve import serve
    from trustee.server import build_kbs

    # Signals end the server gracefully (Kubernetes sends SIGTERM, a terminal SIGINT) instead
    # of raising KeyboardInterrupt inside whichever request happens to be running.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        kbs = await build_kbs(config)
        app = create_app(kbs)
        if config.development:
            print(_banner(config), file=sys.stderr, flush=True)

        async def shutdown_trigger() -> None:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

        await serve(app, config.http_server, shutdown_trigger)


def _serve(config_path: str | None, sockets: list[str] | None = None) -> int:
    setup_logging()
    try:
        if config_path:
            log.info("Using config file %s", config_path)
            config = load_file(config_path)
            config.source = config_path
        else:
            config = load_embedded_default()
        if sockets:
            config.http_server.sockets = sockets
        log.info("trustee-py Key Broker Service %s", __version__)
        if config.http_server.worker_count > 1:
            log.warning(
                "http_server.worker_count = %d ignored: sessions are kept in memory, so one "
                "worker serves all requests",
                config.http_server.worker_count,
            )
            config.http_server.worker_count = 1
        trio.run(partial(_run, config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trustee", description="trustee-py KBS")
    parser.add_argument("--version", action="version", version=f"trustee-py {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Key Broker Service")
    serve.add_argument(
        "-c",
        "--config",
        "--config-file",
        dest="config",
        metavar="FILE",
        help="kbs-config.toml (default: $KBS_CONFIG_FILE, else the embedded development config)",
    )
    serve.add_argument(
        "--socket",
        action="append",
        metavar="IP:PORT",
        help="listen here instead of [http_server] sockets (repeatable)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.config or os.environ.get("KBS_CONFIG_FILE"), args.socket)
    return 2


def kbs_main(argv: list[str] | None = None) -> int:
    """Upstream's `kbs [-c|--config-file FILE]` command line."""
    parser = argparse.ArgumentParser(prog="kbs")
    parser.add_argument("-c", "--config-file", dest="config", metavar="FILE")
    args = parser.parse_args(argv)
    return _serve(args.config or os.environ.get("KBS_CONFIG_FILE"))


if __name__ == "__main__":
    sys.exit(main())
