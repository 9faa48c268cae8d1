"""Command lines of the gRPC servers: upstream's `grpc-as` and `rvps`, and the same servers as
`trustee as serve --grpc` and `trustee rvps serve`.

Every failure to start is one line on stderr, the program's name first: exit 2 for a bad
command line or config file, 1 when the server cannot listen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from trustee import __version__

GRPC_AS_SOCKET = "127.0.0.1:3000"
RVPS_ADDRESS = "127.0.0.1:50003"
EXIT_CONFIG = 2


def add_grpc_as_arguments(parser: argparse.ArgumentParser) -> None:
    """grpc-as's flags (also taken by `trustee as serve --grpc`)."""
    parser.add_argument(
        "-c", "--config-file", "--config", dest="config", metavar="FILE",
        help="the AS config file, JSON or TOML (default: upstream's defaults)",
    )  # fmt: skip
    parser.add_argument(
        "-s", "--socket", default=GRPC_AS_SOCKET, metavar="IP:PORT",
        help=f"where to listen (default {GRPC_AS_SOCKET})",
    )  # fmt: skip
    parser.add_argument(
        "-t", "--https-pubkey-cert", metavar="PEM",
        help="TLS certificate (chain); with --https-prikey, serves gRPC over TLS",
    )  # fmt: skip
    parser.add_argument("-k", "--https-prikey", metavar="PEM", help="TLS private key")
    from trustee.as_server.cli import add_workers_argument

    add_workers_argument(parser)


def _rvps_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Reference Value Provider Service (gRPC, reference.proto)"
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE",
        help="rvps.json (default: /etc/rvps.json when present, else Memory storage)",
    )  # fmt: skip
    parser.add_argument(
        "-a", "--address", default=RVPS_ADDRESS, metavar="IP:PORT",
        help=f"where to listen (default {RVPS_ADDRESS})",
    )  # fmt: skip
    return parser


def _fail(prog: str, code: int, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return code


def _run(prog: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """trio.run(main) with every start-up failure as one line."""
    import trio

    from trustee.as_server.grpc_server import GrpcStartError
    from trustee.config.errors import ConfigError
    from trustee.supervision import sole_error

    try:
        try:
            trio.run(main)
        except BaseExceptionGroup as group:
            raise sole_error(group) from None
    except ConfigError as exc:
        return _fail(prog, EXIT_CONFIG, str(exc))
    except GrpcStartError as exc:
        return _fail(prog, 1, str(exc))
    except OSError as exc:
        return _fail(prog, 1, f"cannot serve: {exc}")
    except KeyboardInterrupt:
        pass
    return 0


def _serve(
    prog: str,
    flag: str,
    address: str,
    load: Callable[[], Any],
    listen: Callable[[], Any],
    run: Callable[[Any, Any], Coroutine[Any, Any, None]],
    workers: Callable[[Any], int] = lambda _config: 1,
    serve_workers: Callable[[Any, int], int] | None = None,
) -> int:
    """Check the address, `load()` the config file and make the `listen()`ing settings, each
    failure one line; then serve `run(config, listen)`, or `serve_workers(config, count)`
    when `workers(config)` asks for more than one process."""
    from trustee.as_server.grpc_server import GrpcStartError
    from trustee.config.errors import ConfigError
    from trustee.config.loader import is_socket_address
    from trustee.logs import setup_logging

    setup_logging()
    if not is_socket_address(address):
        return _fail(prog, EXIT_CONFIG, f"{flag}: {address!r} is not an ip:port address")
    try:
        config = load()
        count = workers(config)
        settings = listen()
    except (ConfigError, GrpcStartError) as exc:
        return _fail(prog, EXIT_CONFIG, str(exc))
    if count > 1 and serve_workers is not None:
        return serve_workers(config, count)
    return _run(prog, partial(run, config, settings))


def _serve_as_workers(prog: str, args: argparse.Namespace, config: Any, count: int) -> int:
    from trustee.as_server.grpc_workers import serve_workers
    from trustee.supervision import StartError

    address = args.socket
    try:
        return serve_workers(config, count, address, args.https_pubkey_cert, args.https_prikey)
    except StartError as exc:
        return _fail(prog, exc.code, exc.message)
    except OSError as exc:
        return _fail(prog, 1, f"cannot listen on {address}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return 0


def serve_grpc_as(args: argparse.Namespace, prog: str) -> int:
    """Serve the AS over gRPC with grpc-as's parsed flags."""
    from trustee.as_server import grpc_run, grpc_server
    from trustee.as_server.cli import worker_count
    from trustee.config import as_file

    tls = (args.https_pubkey_cert, args.https_prikey)
    listen = partial(grpc_server.Listen.from_files, args.socket, *tls)
    load = partial(as_file.load_file, args.config)
    workers = partial(worker_count, wanted=args.workers)
    many = partial(_serve_as_workers, prog, args)
    return _serve(prog, "--socket", args.socket, load, listen, grpc_run.run_grpc_as, workers, many)


def serve_rvps(args: argparse.Namespace, prog: str) -> int:
    from trustee.as_server import grpc_run, grpc_server
    from trustee.config import rvps_file

    load = partial(rvps_file.load_file, args.config)
    listen = partial(grpc_server.Listen, args.address)
    return _serve(prog, "--address", args.address, load, listen, grpc_run.run_rvps)


def grpc_as_main(argv: list[str] | None = None) -> int:
    """Upstream's `grpc-as` command line."""
    parser = argparse.ArgumentParser(
        prog="grpc-as", description="Attestation Service (gRPC, attestation.proto)"
    )
    add_grpc_as_arguments(parser)
    parser.add_argument(
        "-V", "--version", action="version", version=f"%(prog)s {__version__} (trustee-py)"
    )
    return serve_grpc_as(parser.parse_args(argv), "grpc-as")


def rvps_main(argv: list[str] | None = None) -> int:
    """Upstream's `rvps` command line."""
    parser = _rvps_parser("rvps")
    parser.add_argument(
        "-V", "--version", action="version", version=f"%(prog)s {__version__} (trustee-py)"
    )
    return serve_rvps(parser.parse_args(argv), "rvps")


def as_main(argv: list[str]) -> int:
    """`trustee as serve --grpc …` (trustee.cli sends `trustee as` here when --grpc is given;
    without it, to the REST server's command line)."""
    parser = argparse.ArgumentParser(prog="trustee as", description="the Attestation Service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Attestation Service")
    serve.add_argument(
        "--grpc", action="store_true", required=True, help="serve attestation.proto over gRPC"
    )
    add_grpc_as_arguments(serve)
    return serve_grpc_as(parser.parse_args(argv), "trustee as serve")


def rvps_command(argv: list[str]) -> int:
    """`trustee rvps serve …`."""
    parser = argparse.ArgumentParser(prog="trustee rvps", description="the RVPS")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve",
        parents=[_rvps_parser("trustee rvps serve")],
        add_help=False,
        help="run the RVPS (gRPC, reference.proto)",
    )
    return serve_rvps(parser.parse_args(argv), "trustee rvps serve")


if __name__ == "__main__":  # python -m trustee.as_server.grpc_cli: the grpc-as command line
    sys.exit(grpc_as_main())
