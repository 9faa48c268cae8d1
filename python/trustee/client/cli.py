"""`trustee-client`: a drop-in for upstream `kbs-client` (same commands, flags, HTTP and stdout).

Scripts written against kbs-client parse its stdout, so success output is reproduced to the
byte (including the odd "success \\n policy: …" spacing); `get-reference-value` prints the JSON
value itself rather than kbs-client's quoted debug string. A failure is one line on stderr,
`trustee-client: ` then what the KBS said was wrong or why it could not be asked
(`messages.py`), and exit status 1; usage errors exit 2 like clap's, 130 on Ctrl-C.

`--protocol` picks the kbs-client generation to behave as (0.1.0 ≤ v0.9, 0.1.1 v0.10/v0.11,
0.2.0 v0.12/v0.13, 0.4.0 today), and `config --auth-private-key` signs admin tokens per request
the way kbs-client ≤ v0.20 did, for servers with the legacy Ed25519 admin check.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustee.client.kbs import (
    GENERATIONS,
    Generation,
    KbsClient,
    KbsClientError,
)
from trustee.client.messages import PROG, Context, error_line, one_line
from trustee.client.parser import build_parser
from trustee.crypto.b64 import b64std_encode
from trustee.crypto.jwk import JwkError, PrivateKey, describe_key, load_private_key_pem
from trustee.logs import setup_logging

log = logging.getLogger("trustee.client")

# Looked up relative to the working directory first, as kbs-client does, so the upstream
# docker-compose quick start keeps working unchanged.
DOCKER_COMPOSE_ADMIN_TOKEN = Path("kbs/config/docker-compose/admin-token")

# Built-in resource policies (`set-resource-policy --allow-all/--deny-all/--affirming`). The
# `import rego.v1` line makes the `if`/`in` keywords valid for v0-syntax engines too.
ALLOW_ALL_POLICY = """\
package policy

import rego.v1

# Release anything the resource plugin serves; every other plugin stays closed.
default allow = false

allow if {
	data.plugin == "resource"
}
"""

DENY_ALL_POLICY = """\
package policy

# Release nothing.
default allow = false
"""

AFFIRMING_POLICY = """\
package policy

import rego.v1

# Release only when the token carries at least one appraisal and all of them are affirming.
default allow = false

allow if {
	count(input.submods) > 0
	not has_unaffirmed_submod
}

has_unaffirmed_submod if {
	some submod in input.submods
	not submod["ear.status"] == "affirming"
}
"""

BUILTIN_POLICIES = {
    "allow_all": ALLOW_ALL_POLICY,
    "deny_all": DENY_ALL_POLICY,
    "affirming": AFFIRMING_POLICY,
    # Upstream QUIRK kept on purpose: since v0.19 `--default` uploads the deny-all policy.
    "default": DENY_ALL_POLICY,
}

ATTESTATION_TOKEN_NEEDS_KEY = (
    "--attestation-token needs --tee-key-file: the TEE key whose public part is the token's "
    "tee-pubkey"
)


class CliError(Exception):
    """A failure the command reports on stderr as one line."""


# --------------------------------------------------------------------------------------------
# Helpers


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"Failed to read: {path}: {exc.strerror or exc}") from exc


def read_text(path: str) -> str:
    try:
        return read_file(path).decode()
    except UnicodeDecodeError as exc:
        raise CliError(f"Failed to read: {path}: not UTF-8 text") from exc


def load_tee_key(path: str | None) -> PrivateKey | None:
    if path is None:
        return None
    try:
        return load_private_key_pem(read_file(path))
    except JwkError as exc:
        raise CliError(f"--tee-key-file {path}: {exc}") from exc


def load_admin_key(path: str) -> ed25519.Ed25519PrivateKey:
    try:
        key = load_private_key_pem(read_file(path))
    except JwkError as exc:
        raise CliError(f"--auth-private-key {path}: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CliError(
            f"--auth-private-key {path}: an Ed25519 private key is needed, "
            f"got an {describe_key(key)}"
        )
    return key


def resolve_admin_token(
    token_file: str | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> str | None:
    """`--admin-token-file`, then the docker-compose token, then ~/.trustee/admin-token."""
    if token_file is not None:
        return read_text(token_file).strip()
    compose = (cwd if cwd is not None else Path.cwd()) / DOCKER_COMPOSE_ADMIN_TOKEN
    try:
        return compose.read_text().strip()
    except (OSError, UnicodeDecodeError):
        pass
    home = (os.environ if env is None else env).get("HOME")
    if home:
        default = Path(home) / ".trustee" / "admin-token"
        if default.exists():
            return read_text(str(default)).strip()
    log.info(
        "No admin token configured. Sending anonymous admin requests; this only works when "
        "KBS admin authorization_mode is InsecureAllowAll."
    )
    return None


_I32 = re.compile(r"[+-]?[0-9]+")


def parse_i32(text: str) -> int:
    """Integer parsing with Rust's `str::parse::<i32>` rules and messages."""
    if not text:
        raise CliError("cannot parse integer from empty string")
    if not _I32.fullmatch(text) or text in ("+", "-"):
        raise CliError("invalid digit found in string")
    value = int(text)
    if value > 2**31 - 1:
        raise CliError("number too large to fit in target type")
    if value < -(2**31):
        raise CliError("number too small to fit in target type")
    return value


def parse_bool(text: str) -> bool:
    """Rust's `str::parse::<bool>`: exactly `true` or `false`."""
    if text == "true":
        return True
    if text == "false":
        return False
    raise CliError("provided string was not `true` or `false`")


def reference_value(value: str, *, as_integer: bool, as_bool: bool, single: bool) -> Any:
    """The JSON value kbs-client registers: a string unless told otherwise, in a 1-list."""
    parsed: Any = value
    if as_integer:
        parsed = parse_i32(value)
    elif as_bool:
        parsed = parse_bool(value)
    return parsed if single else [parsed]


def select_resource_policy(args: argparse.Namespace) -> bytes:
    if args.policy_file is not None:
        return read_file(args.policy_file)
    for flag in ("allow_all", "deny_all", "affirming", "default"):
        if getattr(args, flag):
            return BUILTIN_POLICIES[flag].encode()
    raise CliError("No policy specified")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Commands


def generation(args: argparse.Namespace) -> Generation:
    return GENERATIONS[args.protocol]


async def run(args: argparse.Namespace) -> None:
    if args.command == "attest":
        tee_key = load_tee_key(args.tee_key_file)
        async with KbsClient(
            args.url, cert_file=args.cert_file, tee_key=tee_key, generation=generation(args)
        ) as client:
            _out(await client.attest(args.init_data))
    elif args.command == "get-resource":
        await _get_resource(args)
    elif args.command == "config":
        await _config(args)
    elif args.command == "as":
        from trustee.client.as_cli import as_command

        _out(await as_command(args))
    else:  # pragma: no cover - argparse rejects unknown commands
        raise CliError(f"unknown command {args.command!r}")


async def _get_resource(args: argparse.Namespace) -> None:
    if args.attestation_token is not None and args.tee_key_file is None:
        raise CliError(ATTESTATION_TOKEN_NEEDS_KEY)
    tee_key = load_tee_key(args.tee_key_file)
    if args.attestation_token is not None:
        assert tee_key is not None
        token = read_text(args.attestation_token).strip()
        async with KbsClient(
            args.url, cert_file=args.cert_file, tee_key=tee_key, generation=generation(args)
        ) as client:
            data = await client.get_resource_with_token(args.path, token, tee_key)
    else:
        async with KbsClient(
            args.url,
            cert_file=args.cert_file,
            tee_key=tee_key,
            init_data=args.init_data,
            generation=generation(args),
        ) as client:
            data = await client.get_resource(args.path)
    _out(b64std_encode(data))


async def _config(args: argparse.Namespace) -> None:
    command = args.config_command
    # Inputs are read before any request so a typo in a path never half-applies a change.
    policy: bytes | None = None
    resource: bytes | None = None
    rv: Any = None
    if command == "set-attestation-policy":
        policy = read_file(args.policy_file)
    elif command == "set-resource-policy":
        policy = select_resource_policy(args)
    elif command == "set-resource":
        resource = read_file(args.resource_file)
    elif command == "set-sample-reference-value":
        rv = reference_value(
            args.value,
            as_integer=args.as_integer,
            as_bool=args.as_bool,
            single=args.as_single_value,
        )
    admin_key: ed25519.Ed25519PrivateKey | None = None
    token: str | None = None
    if args.auth_private_key is not None:
        admin_key = load_admin_key(args.auth_private_key)
    else:
        token = resolve_admin_token(args.admin_token_file)
    gen = generation(args)

    # The admin client never attests: the generation only decides the default policy id, and
    # is not handed over (a legacy one would make the client generate an RSA key for nothing).
    async with KbsClient(
        args.url, cert_file=args.cert_file, admin_token=token, admin_key=admin_key
    ) as client:
        if command == "set-attestation-policy":
            assert policy is not None
            await client.set_attestation_policy(
                policy,
                policy_id=args.policy_id or gen.default_attestation_policy_id,
                type_=args.policy_type or "rego",
            )
            _out(f"Set attestation policy success \n policy: {b64std_encode(policy)}")
        elif command == "set-resource-policy":
            assert policy is not None
            await client.set_resource_policy(policy)
            _out(f"Set resource policy success \n policy: {b64std_encode(policy)}")
        elif command == "set-resource":
            assert resource is not None
            await client.set_resource(args.path, resource)
            _out(f"Set resource success \n resource: {b64std_encode(resource)}")
        elif command == "delete-resource":
            await client.delete_resource(args.path)
            _out("Delete resource success")
        elif command == "set-sample-reference-value":
            await client.set_sample_reference_value(args.name, rv)
            _out("Reference Values Updated")
        elif command == "get-reference-value":
            # The JSON value as the KBS sent it, ready for jq (kbs-client quoted it again).
            body = await client.get_reference_value(args.reference_value_id)
            _out(body.rstrip("\n"))
        else:  # pragma: no cover - argparse rejects unknown commands
            raise CliError(f"unknown config command {command!r}")


def context(args: argparse.Namespace) -> Context:
    """What an error message may name: the URL, and the policy file an upload came from."""
    if args.command == "as":
        return Context(url=args.as_url or args.url, service="Attestation Service")
    return Context(url=args.url, policy_file=getattr(args, "policy_file", None))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage error (2) or --help/--version (0), already printed
        return exc.code if isinstance(exc.code, int) else 2
    if os.environ.get("TRUSTEE_LOG") or os.environ.get("RUST_LOG"):
        setup_logging()
    else:
        # Quiet by default so that a failure is exactly one line on stderr.
        logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        trio.run(run, args)
    except BaseException as exc:  # every failure becomes one line, never a traceback
        return report(exc, context(args))
    return 0


def report(exc: BaseException, ctx: Context) -> int:
    """Print `exc` as one line on stderr; the exit status for it."""
    exc = _sole(exc)
    if isinstance(exc, KeyboardInterrupt):
        _err(f"{PROG}: interrupted")
        return 130
    if isinstance(exc, BrokenPipeError):
        # Whoever read stdout has gone; point it at /dev/null so the interpreter's final
        # flush does not fail a second time.
        # (No file descriptor behind stdout: nothing will be flushed either.)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _err(f"{PROG}: stdout was closed before the output was written")
        return 1
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, CliError | KbsClientError):
        _err(error_line(exc, ctx))
    else:  # a bug of ours: still one line, the type says where to look
        _err(f"{PROG}: internal error: {type(exc).__name__}: {one_line(str(exc))}")
    return 1


def _sole(exc: BaseException) -> BaseException:
    """The one failure inside (nested) exception groups; a Ctrl-C anywhere in one wins."""
    while isinstance(exc, BaseExceptionGroup):
        interrupt, _ = exc.split(KeyboardInterrupt)
        if interrupt is not None:
            return KeyboardInterrupt()
        if len(exc.exceptions) != 1:
            return exc
        exc = exc.exceptions[0]
    return exc


def _err(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:  # stderr gone too: the exit status is all that is left
        pass


if __name__ == "__main__":
    sys.exit(main())
