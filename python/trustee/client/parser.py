"""`trustee-client`'s command line: kbs-client's commands and options, each with a help line."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import NoReturn

from trustee import __version__
from trustee.client.attesters import (
    SAMPLE_DEVICE_ENV,
    SIMULATED_MEASUREMENT_ENV,
    SIMULATED_PCRS_ENV,
    SIMULATED_PKI_ENV,
    SIMULATED_SNP_CA_ENV,
    SIMULATED_TEE_ENV,
)
from trustee.client.generations import GENERATIONS, PROTOCOL_0_4_0
from trustee.client.kbs import DEFAULT_URL
from trustee.client.messages import PROG

# (variable, what it does) for the help's epilog; every variable the client reads.
ENVIRONMENT = (
    (
        f"{SIMULATED_TEE_ENV}=tdx|snp|az-snp-vtpm|az-tdx-vtpm|tpm",
        "attest as a simulated TDX, SNP, Azure vTPM or TPM guest instead of the sample TEE "
        "(evidence signed by a test PKI of `trustee simulate init`)",
    ),
    (f"{SIMULATED_PKI_ENV}=DIR", "that PKI: the DIR/pki directory `trustee simulate init` wrote"),
    (f"{SIMULATED_SNP_CA_ENV}=1", "simulated SNP: send the ASK and ARK with the VCEK"),
    (
        f"{SIMULATED_MEASUREMENT_ENV}=HEX",
        "the launch digest the simulated guest reports (96 hex digits; default zeros)",
    ),
    (
        f"{SIMULATED_PCRS_ENV}=N=HEX,...",
        "PCR values a simulated vTPM/TPM guest reports (64 hex digits each; not PCR8, which "
        "init-data extends)",
    ),
    (SAMPLE_DEVICE_ENV, "set (to anything) to add sample device evidence"),
    ("TRUSTEE_LOG, RUST_LOG", "log filter for stderr, e.g. info or debug (default: warnings)"),
    ("HOME", "the last admin token fallback is ~/.trustee/admin-token"),
)

DESCRIPTION = (
    "A client for the KBS APIs with kbs-client's commands, options and output: attest and "
    "fetch resources as a guest (sample or simulated TEE), or administer a KBS."
)


def _epilog(width: int = 79) -> str:
    # Raw text (argparse would reflow the table); variables on their own line when long.
    lines = ["environment:"]
    for name, what in ENVIRONMENT:
        text = textwrap.wrap(what, width - 24)
        if len(name) > 20:
            lines.append(f"  {name}")
        else:
            lines.append(f"  {name:<20}  {text.pop(0)}")
        lines += [" " * 24 + line for line in text]
    return "\n".join(lines)


class ClientArgumentParser(argparse.ArgumentParser):
    """Usage errors in the client's one error style (argparse would name the subcommand
    first, `trustee-client config set-resource: error: …`)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{PROG}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ClientArgumentParser(
        prog=PROG,
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--url",
        default=DEFAULT_URL,
        help="The KBS root URL, without /kbs/v0 (default: %(default)s).",
    )
    parser.add_argument(
        "--cert-file",
        metavar="PEM",
        help="Extra trusted root certificate (PEM) for an HTTPS KBS.",
    )
    parser.add_argument(
        "--protocol",
        choices=list(GENERATIONS),
        default=PROTOCOL_0_4_0.version,
        help="KBS protocol version to speak (0.1.0: kbs-client <= v0.9, 0.1.1: v0.10/v0.11, "
        "0.2.0: v0.12/v0.13, 0.4.0: v0.14 onwards; default %(default)s).",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, help="`COMMAND --help` for its options"
    )

    config = commands.add_parser(
        "config", help="Administer the KBS: resources, policies, reference values"
    )
    credentials = config.add_mutually_exclusive_group()
    credentials.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="Admin bearer token file (default: kbs/config/docker-compose/admin-token, then "
        "~/.trustee/admin-token, then anonymous).",
    )
    credentials.add_argument(
        "--auth-private-key",
        metavar="PEM",
        help="Ed25519 private key (PKCS#8 PEM) to sign a role-less admin token for every "
        "request, as kbs-client <= v0.20 did (claims iat/exp/nbf, 2 h).",
    )
    _add_config_commands(config)

    get_resource = commands.add_parser(
        "get-resource", help="Attest, then fetch a resource (printed as base64)"
    )
    get_resource.add_argument("--path", required=True, help="Resource path repo/type/tag.")
    get_resource.add_argument(
        "--tee-key-file", metavar="PEM", help="TEE private key (default: a fresh one)."
    )
    get_resource.add_argument(
        "--attestation-token",
        metavar="FILE",
        help="Present this attestation token instead of attesting (needs --tee-key-file).",
    )
    get_resource.add_argument(
        "init_data", nargs="?", metavar="INIT_DATA", help="Init-data TOML (protocol 0.4.0)."
    )

    _add_as_commands(
        commands.add_parser(
            "as", help="Call a standalone Attestation Service (upstream's restful-as API)"
        )
    )

    attest = commands.add_parser("attest", help="Attest and print the attestation token")
    attest.add_argument(
        "--tee-key-file", metavar="PEM", help="TEE private key (default: a fresh one)."
    )
    attest.add_argument(
        "init_data", nargs="?", metavar="INIT_DATA", help="Init-data TOML (protocol 0.4.0)."
    )
    return parser


def _add_config_commands(config: argparse.ArgumentParser) -> None:
    subs = config.add_subparsers(
        dest="config_command",
        metavar="COMMAND",
        required=True,
        help="`config COMMAND --help` for its options",
    )

    attestation = subs.add_parser(
        "set-attestation-policy", help="Set attestation verification policy"
    )
    attestation.add_argument(
        "--type", dest="policy_type", metavar="TYPE", help='Policy type (default "rego").'
    )
    attestation.add_argument(
        "--id",
        dest="policy_id",
        metavar="ID",
        help='Policy ID (default "default_cpu"; "default" with --protocol 0.1.x/0.2.0).',
    )
    attestation.add_argument(
        "--policy-file", required=True, metavar="FILE", help="The policy (Rego) to upload."
    )

    resource_policy = subs.add_parser("set-resource-policy", help="Set resource policy")
    # Like kbs-client the group is exclusive but not required: naming none is a runtime error.
    choice = resource_policy.add_mutually_exclusive_group()
    choice.add_argument("--policy-file", metavar="FILE", help="The policy (Rego) to upload.")
    choice.add_argument(
        "--allow-all", action="store_true", help="Release every resource to every guest."
    )
    choice.add_argument("--deny-all", action="store_true", help="Release nothing.")
    choice.add_argument(
        "--affirming",
        action="store_true",
        help="Release only when every appraisal in the token is affirming.",
    )
    choice.add_argument(
        "--default", action="store_true", help="The default policy (denies everything)."
    )

    set_resource = subs.add_parser("set-resource", help="Set confidential resource")
    set_resource.add_argument("--path", required=True, help="Resource path repo/type/tag.")
    set_resource.add_argument(
        "--resource-file", required=True, metavar="FILE", help="The resource's content."
    )

    delete_resource = subs.add_parser("delete-resource", help="Delete confidential resource")
    delete_resource.add_argument("--path", required=True, help="Resource path repo/type/tag.")

    get_rv = subs.add_parser("get-reference-value", help="Print a reference value (JSON) by ID")
    get_rv.add_argument(
        "--id",
        dest="reference_value_id",
        required=True,
        metavar="ID",
        help="Reference value ID (the NAME it was registered under).",
    )

    set_rv = subs.add_parser(
        "set-sample-reference-value", help="Register a reference value (sample extractor)"
    )
    set_rv.add_argument("name", metavar="NAME", help="Reference value name, e.g. svn.")
    set_rv.add_argument("value", metavar="VALUE", help="Its value (a string unless told).")
    kind = set_rv.add_mutually_exclusive_group()
    kind.add_argument("--as-integer", action="store_true", help="VALUE is a 32-bit integer.")
    kind.add_argument("--as-bool", action="store_true", help="VALUE is true or false.")
    set_rv.add_argument(
        "--as-single-value",
        action="store_true",
        help="Register VALUE itself, not a one-element list of accepted values.",
    )


def _add_as_commands(parser: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(
        dest="as_command", metavar="COMMAND", required=True, help="`as COMMAND --help`"
    )
    attest = subs.add_parser(
        "attest",
        help="Send fresh evidence to POST /attestation and print the token",
        description="Make evidence (the sample TEE, or a simulated TDX/SNP guest of the PKI "
        f"{SIMULATED_PKI_ENV} names), send it to the service and print the EAR token.",
    )
    attest.add_argument(
        "--url",
        dest="as_url",
        metavar="URL",
        help="The Attestation Service's root URL (default: the client's --url).",
    )
    attest.add_argument(
        "--tee",
        choices=["sample", "sampledevice", "tdx", "snp", "sgx"],
        default="sample",
        help="Whose evidence to send (tdx/snp/sgx: simulated; default %(default)s).",
    )
    attest.add_argument(
        "--policy-id",
        dest="policy_ids",
        action="append",
        default=[],
        metavar="ID",
        help="Policy id to appraise with (repeatable; default: the service's `default`).",
    )
    data = attest.add_mutually_exclusive_group()
    data.add_argument(
        "--runtime-data",
        metavar="JSON",
        help="Structured runtime data to bind (default: a fresh nonce object).",
    )
    data.add_argument(
        "--runtime-data-raw",
        metavar="B64URL",
        help="Raw runtime data to bind: these bytes are the evidence's report data as they are.",
    )
    attest.add_argument(
        "--hash-algorithm",
        choices=["sha256", "sha384", "sha512"],
        default="sha384",
        help="How structured runtime data is hashed (default %(default)s).",
    )
    attest.add_argument("--init-data", metavar="FILE", help="Init-data TOML to bind.")
    attest.add_argument(
        "--init-data-digest",
        action="store_true",
        help="Send only the init-data's digest, not its TOML.",
    )
    attest.add_argument(
        "--cacert", metavar="PEM", help="Trusted root certificate (PEM) for an HTTPS service."
    )
    attest.add_argument(
        "--claims",
        action="store_true",
        help="Print the token's claims (JSON) once its signature verifies with the service's "
        "JWKS, instead of the token.",
    )
