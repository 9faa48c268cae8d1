"""`trustee bench kbs`: full guest flows against a KBS (ours or upstream's), closed or open loop,
every answer checked; results as JSON (schema: trustee.bench.results).

The results go to --out when given, else to stdout; stdout carries nothing else. A progress line
goes to stderr when it is a terminal. Bad input (unreachable URL, TLS failure, a protocol version
the server refuses, a refused admin token) ends the command with one line and exit status 2
before any load is sent: one full flow runs first as a preflight.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import trio

from trustee.bench import kbs_setup, sysinfo
from trustee.bench.engine import WorkerSpec, preflight
from trustee.bench.flows import FlowFailure, FlowSpec
from trustee.bench.http_conn import tls_context
from trustee.bench.kbs_run import Progress, assemble, drive, progress_stream
from trustee.bench.machine import machine, versions
from trustee.bench.procs import WorkerError, split
from trustee.bench.results import FORMAT, write_results
from trustee.client.attesters import SIMULATED_PKI_ENV, SIMULATED_TEE_ENV, detect_attesters
from trustee.client.errors import KbsClientError
from trustee.client.generations import GENERATIONS
from trustee.usage import OneLineParser, UsageError

PROG = "trustee bench kbs"
DEFAULT_RESOURCE = "default/bench/secret"
MAX_PROCS = 64
FATAL_KINDS = ("connect", "tls", "timeout", "protocol")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else "")
    add = p.add_argument
    add("--url", required=True, help="the KBS root, http://HOST:PORT or https://HOST:PORT")
    add("--cert-file", metavar="CA", help="PEM root the KBS's TLS certificate chains to")
    add("--protocol", default="0.4.0", choices=sorted(GENERATIONS), help="guest protocol (0.4.0)")
    add("--tee", default="sample", help="guest TEE: sample, or tdx/snp/… (--simulated-pki)")
    add("--simulated-pki", metavar="DIR", help="a `trustee simulate init` directory (or its pki/)")
    add("--resource", default=DEFAULT_RESOURCE, metavar="PATH", help="repo/type/tag to fetch")
    add("--passport", action="store_true", help="attest once per guest, then Bearer-token GETs")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--clients", type=int, metavar="N", help="closed loop with N guests (8)")
    load.add_argument("--rate", type=float, metavar="R", help="open loop, R flows per second")
    add("--duration", type=float, default=10.0, metavar="S", help="measuring window, s (10)")
    add("--warmup", type=float, default=1.0, metavar="S", help="warm-up before it, s (1)")
    add("--procs", type=int, default=1, metavar="P", help="generator processes (1)")
    admin = p.add_mutually_exclusive_group()
    admin.add_argument("--admin-token-file", metavar="F", help="admin Bearer token for --setup")
    admin.add_argument("--auth-private-key", metavar="K", help="Ed25519 key signing admin JWTs")
    add("--setup", action="store_true", help="store a random secret and an allow-all policy first")
    add("--secret-file", metavar="F", help="without --setup: the secret the resource holds")
    add("--server-pid", type=int, metavar="PID", help="the server's process, for its CPU and RSS")
    add("--timeout", type=float, default=30.0, metavar="S", help="per-flow timeout, s (30)")
    add("--decrypt-every", type=int, default=16, metavar="N", help="decrypt 1 JWE in N (16)")
    add("--label", help="the run's name in reports (default: the target's host:port)")
    add("--out", metavar="FILE", help="write the results here instead of stdout")
    return p


def _check_numbers(args: argparse.Namespace) -> None:
    if args.clients is None and args.rate is None:
        args.clients = 8
    if args.clients is not None and not 1 <= args.clients <= 10_000:
        raise UsageError("--clients must be from 1 to 10000")
    if args.rate is not None and not 0 < args.rate <= 100_000:
        raise UsageError("--rate must be above 0 and at most 100000 flows per second")
    if not 0 < args.duration <= 3600 or not 0 <= args.warmup <= 600:
        raise UsageError("--duration must be in (0, 3600] s and --warmup in [0, 600] s")
    if not 1 <= args.procs <= MAX_PROCS or not 0 < args.timeout <= 600:
        raise UsageError(f"--procs must be from 1 to {MAX_PROCS}, --timeout in (0, 600] s")
    if args.decrypt_every < 1:
        raise UsageError("--decrypt-every must be at least 1")
    if args.server_pid is not None and not sysinfo.exists(args.server_pid):
        raise UsageError(f"--server-pid {args.server_pid}: no such process")


def _target(url: str, cert_file: str | None) -> tuple[str, int, ssl.SSLContext | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    if parts.path not in ("", "/"):
        raise UsageError(f"--url {url!r}: give the KBS root, without a path")
    if cert_file is not None and parts.scheme != "https":
        raise UsageError("--cert-file needs an https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        context = tls_context(cert_file) if parts.scheme == "https" else None
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: {exc}") from None
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--cert-file {cert_file}: {exc}") from None
    return parts.hostname, port, context


def _attester_env(tee: str, pki: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("TRUSTEE_SIMULATED_")}
    env.pop(SIMULATED_TEE_ENV, None)
    if pki is not None:
        inner = os.path.join(pki, "pki")
        env |= {SIMULATED_TEE_ENV: tee, SIMULATED_PKI_ENV: inner if os.path.isdir(inner) else pki}
    try:
        primary = detect_attesters(env).primary.tee
    except KbsClientError as exc:
        raise UsageError(str(exc)) from None
    if primary != tee:
        raise UsageError(f"--tee {tee}: no such guest here (simulated ones need --simulated-pki)")
    return env


def _secret(args: argparse.Namespace) -> bytes | None:
    if args.setup:
        if args.secret_file is not None:
            raise UsageError("--secret-file and --setup exclude each other (--setup makes one)")
        return kbs_setup.random_secret()
    if args.secret_file is None:
        return None
    try:
        with open(args.secret_file, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"--secret-file {args.secret_file}: {exc.strerror or exc}") from None


def _admin(args: argparse.Namespace) -> tuple[str | None, Any]:
    if args.admin_token_file is not None:
        try:
            with open(args.admin_token_file) as f:
                return f.read().strip(), None
        except OSError as exc:
            raise UsageError(f"--admin-token-file {args.admin_token_file}: {exc}") from None
    if args.auth_private_key is not None:
        try:
            return None, kbs_setup.admin_key(args.auth_private_key)
        except kbs_setup.SetupError as exc:
            raise UsageError(str(exc)) from None
    return None, None


def _head(args: argparse.Namespace, argv: list[str], spec: WorkerSpec) -> dict[str, Any]:
    flow = spec.flow
    return {
        "format": FORMAT,
        "kind": "kbs",
        "label": args.label or f"{flow.host}:{flow.port}",
        "command": ["trustee", "bench", "kbs", *argv],
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": spec.duration,
        "warmup_s": spec.warmup,
        "machine": machine(),
        "versions": versions(),
        "target": {
            "url": args.url,
            "protocol": flow.protocol,
            "tee": args.tee,
            "resource": flow.resource,
            "passport": flow.passport,
        },
        "load": {
            "mode": spec.mode,
            "clients": args.clients,
            "rate": args.rate,
            "procs": args.procs,
        },
    }


def _prepare(args: argparse.Namespace) -> tuple[WorkerSpec, ssl.SSLContext | None]:
    _check_numbers(args)
    host, port, context = _target(args.url, args.cert_file)
    flow = FlowSpec(
        host=host,
        port=port,
        tls=context is not None,
        cert_file=args.cert_file,
        protocol=args.protocol,
        attester_env=_attester_env(args.tee, args.simulated_pki),
        resource=args.resource.strip("/"),
        passport=args.passport,
        secret=_secret(args),
        decrypt_every=args.decrypt_every,
        timeout_s=args.timeout,
    )
    mode = "closed" if args.rate is None else "open"
    spec = WorkerSpec(flow, mode, args.clients or 0, args.rate or 0.0, args.warmup, args.duration)
    return spec, context


async def _before_load(args: argparse.Namespace, spec: WorkerSpec, context: Any) -> None:
    """--setup, then the preflight flow; UsageError for what makes the run pointless."""
    flow = spec.flow
    if args.setup:
        token, key = _admin(args)
        assert flow.secret is not None
        try:
            await kbs_setup.store(
                flow.host, flow.port, context, flow.resource, flow.secret, token, key
            )
        except kbs_setup.SetupError as exc:
            raise UsageError(str(exc)) from None
    try:
        await preflight(flow)
    except FlowFailure as failure:
        # A refusal after a good attestation is a result to measure (a deny policy); failing
        # to reach, to speak TLS or to be accepted at /auth is not.
        if failure.kind in FATAL_KINDS or failure.stage == "auth":
            raise UsageError(f"preflight flow failed ({failure.kind}) at {failure}") from None


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except Exception as exc:  # never a traceback for the user; the type says where to look
        sys.stderr.write(f"{PROG}: {type(exc).__name__}: {exc}\n")
        return 1


def _main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, already printed
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    try:
        spec, context = _prepare(args)
        trio.run(_before_load, args, spec, context)
        merged, monitor = trio.run(
            drive, split(spec, args.procs), args.server_pid, Progress(progress_stream())
        )
    except (UsageError, WorkerError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    results = assemble(merged, monitor, spec, _head(args, argv, spec))
    for warning in results["warnings"]:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")
    if args.out is not None:
        try:
            write_results(args.out, results)
        except OSError as exc:
            sys.stderr.write(f"{PROG}: --out {args.out}: {exc.strerror or exc}\n")
            return 1
    else:
        sys.stdout.write(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0
