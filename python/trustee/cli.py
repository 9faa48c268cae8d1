"""The `trustee` command (and `kbs`, which accepts upstream's command line)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from trustee import __version__

# Each command imports what it runs: `trustee audit verify` needs neither trio nor the server.


def _parser() -> argparse.ArgumentParser:
    from trustee import verify_cli

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
    verify_cli.add_parser(sub)
    simulate = sub.add_parser(
        "simulate",
        help="simulated TDX/SNP test PKIs (`trustee simulate init --help`)",
        add_help=False,
    )
    simulate.add_argument("rest", nargs=argparse.REMAINDER)
    audit = sub.add_parser(
        "audit",
        help="audit log tools (`trustee audit verify FILE`: check a JSON Lines hash chain)",
        add_help=False,
    )
    audit.add_argument("rest", nargs=argparse.REMAINDER)
    policy = sub.add_parser(
        "policy",
        help="evaluate a policy against claims and explain the decision (`trustee policy eval`)",
        add_help=False,
    )
    policy.add_argument("rest", nargs=argparse.REMAINDER)
    collateral = sub.add_parser(
        "collateral",
        help="collateral bundles for clusters without egress (`trustee collateral fetch|verify`)",
        add_help=False,
    )
    collateral.add_argument("rest", nargs=argparse.REMAINDER)
    for name, text in (
        (
            "as",
            "the Attestation Service on its own (`trustee as serve [--grpc] --config FILE`)",
        ),
        ("rvps", "the Reference Value Provider Service (`trustee rvps serve --config FILE`)"),
        ("bench", "benchmark any KBS and compare runs (`trustee bench kbs|verify|report`)"),
    ):
        sub.add_parser(name, help=text, add_help=False).add_argument(
            "rest", nargs=argparse.REMAINDER
        )
    operator = sub.add_parser("operator", help="the Kubernetes operator's tools")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    render = operator_sub.add_parser(
        "render",
        help="print the objects the operator would apply for a KbsConfig, as a YAML stream",
    )
    render.add_argument("--kbsconfig", required=True, metavar="FILE", help="the KbsConfig YAML")
    render.add_argument(
        "--namespace",
        metavar="NS",
        help="where the objects go (default: the KbsConfig's namespace, else "
        "trustee-operator-system)",
    )
    render.add_argument("--image", metavar="IMAGE", help="the KBS image")
    render.add_argument(
        "--objects",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="YAML streams of the referenced ConfigMaps/Secrets; they feed the rollout hash",
    )
    return parser


def _delegated(name: str) -> Callable[[list[str]], int]:
    # These commands own their command lines (and their --help); import them only when used.
    if name == "audit":
        from trustee.audit.cli import audit_main

        return audit_main
    if name == "policy":
        from trustee.policy_cli import policy_main

        return policy_main
    if name == "collateral":
        from trustee.collateral.bundle_cli import collateral_main

        return collateral_main
    if name == "bench":
        from trustee.bench.cli import bench_main

        return bench_main
    if name == "as":
        return _as_main
    if name == "rvps":
        from trustee.as_server.grpc_cli import rvps_command

        return rvps_command
    from trustee.simulate.cli import simulate_main

    return simulate_main


def _as_main(argv: list[str]) -> int:
    """`trustee as serve` serves the REST API, `trustee as serve --grpc` the gRPC one."""
    if "--grpc" in argv:
        from trustee.as_server.grpc_cli import as_main as grpc_main

        return grpc_main(argv)
    from trustee.as_server.cli import as_main

    return as_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("audit", "policy", "simulate", "as", "rvps", "collateral", "bench"):
        return _delegated(argv[0])(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from trustee.serving import serve_command

        return serve_command(args.config or os.environ.get("KBS_CONFIG_FILE"), args.socket)
    if args.command == "verify":
        from trustee import verify_cli

        return verify_cli.run(args)
    if args.command == "operator" and args.operator_command == "render":
        from trustee.operator.render_cli import operator_render

        return operator_render(args)
    return 2


def kbs_main(argv: list[str] | None = None) -> int:
    """Upstream's `kbs [-c|--config-file FILE]` command line."""
    parser = argparse.ArgumentParser(
        prog="kbs",
        description="Key Broker Service (trustee-py): the server `trustee serve` runs, with "
        "upstream kbs's command line.",
    )
    parser.add_argument(
        "-c",
        "--config-file",
        dest="config",
        metavar="FILE",
        help="kbs-config.toml (default: $KBS_CONFIG_FILE, else the embedded development config)",
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"%(prog)s {__version__} (trustee-py)"
    )
    args = parser.parse_args(argv)
    from trustee.serving import serve_command

    return serve_command(args.config or os.environ.get("KBS_CONFIG_FILE"), prog="kbs")


if __name__ == "__main__":
    sys.exit(main())
