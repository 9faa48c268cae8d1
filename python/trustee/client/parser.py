"""`trustee-client`'s command line: kbs-client's commands and options."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from trustee import __version__
from trustee.client.generations import GENERATIONS, PROTOCOL_0_4_0
from trustee.client.kbs import DEFAULT_URL
from trustee.client.messages import PROG


class ClientArgumentParser(argparse.ArgumentParser):
    """Usage errors in the client's one error style (argparse would name the subcommand
    first, `trustee-client config set-resource: error: …`)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ClientArgumentParser(prog=PROG, description="A command line client tool for KBS APIs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--url", default=DEFAULT_URL, help="The KBS server root URL.")
    parser.add_argument(
        "--cert-file", help="Extra trusted root certificate (PEM) for an HTTPS KBS."
    )
    parser.add_argument(
        "--protocol",
        choices=list(GENERATIONS),
        default=PROTOCOL_0_4_0.version,
        help="KBS protocol version to speak (0.1.0: kbs-client <= v0.9, 0.1.1: v0.10/v0.11, "
        "0.2.0: v0.12/v0.13, 0.4.0: v0.14 onwards; default %(default)s).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", help="Set and Config KBS")
    credentials = config.add_mutually_exclusive_group()
    credentials.add_argument(
        "--admin-token-file",
        help="Admin bearer token file (default: kbs/config/docker-compose/admin-token, then "
        "~/.trustee/admin-token, then anonymous).",
    )
    credentials.add_argument(
        "--auth-private-key",
        help="Ed25519 private key (PKCS#8 PEM) to sign a role-less admin token for every "
        "request, as kbs-client <= v0.20 did (claims iat/exp/nbf, 2 h).",
    )
    _add_config_commands(config)

    get_resource = commands.add_parser("get-resource", help="Get confidential resource")
    get_resource.add_argument("--path", required=True, help="Resource path repo/type/tag.")
    get_resource.add_argument("--tee-key-file", help="TEE private key (PEM).")
    get_resource.add_argument("--attestation-token", help="Attestation token file (passport).")
    get_resource.add_argument("init_data", nargs="?", metavar="INIT_DATA", help="Init-data TOML.")

    attest = commands.add_parser("attest", help="Attestation and get attestation results token")
    attest.add_argument("--tee-key-file", help="TEE private key (PEM).")
    attest.add_argument("init_data", nargs="?", metavar="INIT_DATA", help="Init-data TOML.")
    return parser


def _add_config_commands(config: argparse.ArgumentParser) -> None:
    subs = config.add_subparsers(dest="config_command", metavar="COMMAND", required=True)

    attestation = subs.add_parser(
        "set-attestation-policy", help="Set attestation verification policy"
    )
    attestation.add_argument("--type", dest="policy_type", help='Policy type (default "rego").')
    attestation.add_argument(
        "--id",
        dest="policy_id",
        help='Policy ID (default "default_cpu"; "default" with --protocol 0.1.x/0.2.0).',
    )
    attestation.add_argument("--policy-file", required=True)

    resource_policy = subs.add_parser("set-resource-policy", help="Set resource policy")
    # Like kbs-client the group is exclusive but not required: naming none is a runtime error.
    choice = resource_policy.add_mutually_exclusive_group()
    choice.add_argument("--policy-file")
    choice.add_argument("--allow-all", action="store_true")
    choice.add_argument("--deny-all", action="store_true")
    choice.add_argument("--affirming", action="store_true")
    choice.add_argument("--default", action="store_true")

    set_resource = subs.add_parser("set-resource", help="Set confidential resource")
    set_resource.add_argument("--path", required=True)
    set_resource.add_argument("--resource-file", required=True)

    delete_resource = subs.add_parser("delete-resource", help="Delete confidential resource")
    delete_resource.add_argument("--path", required=True)

    get_rv = subs.add_parser("get-reference-value", help="Get a reference value by ID")
    get_rv.add_argument("--id", dest="reference_value_id", required=True)

    set_rv = subs.add_parser(
        "set-sample-reference-value", help="Register a reference value (sample extractor)"
    )
    set_rv.add_argument("name")
    set_rv.add_argument("value")
    kind = set_rv.add_mutually_exclusive_group()
    kind.add_argument("--as-integer", action="store_true")
    kind.add_argument("--as-bool", action="store_true")
    set_rv.add_argument("--as-single-value", action="store_true")
