#!/usr/bin/env python3
"""Attestation evaluations per second through a standalone Attestation Service, against the same
evaluation called in-process.

Run from the repository root with the project's venv:

    .venv/bin/python benches/as.py [--clients 1,32] [--duration 10] [--warmup 2] [--rounds 1]
        [--tee sample,tdx,az-snp-vtpm,az-tdx-vtpm,tpm] [--targets in-process,rest,grpc]
        [--upstream PATH/restful-as]

One evaluation is one `POST /attestation` (REST) or `AttestationEvaluate` (gRPC) carrying one
verification request: sample-TEE evidence, a simulated TDX quote whose collateral the server
reads from a file and keeps cached, or a simulated vTPM guest's evidence (Azure SNP / TDX CVM,
plain TPM; the Azure TDX guest shares the TDX platform and its collateral). The runtime data
is structured (a nonce and a TEE key), hashed with SHA-384 into the evidence's report data,
and the policy is the server's `default`.
A pool of distinct requests (one nonce each) is built before any timing.

Targets, each measured with the same requests and concurrency:

* in-process: `AttestationService.evaluate` called from this process, built from the same AS
  configuration by `as_assemble.assemble_as` (the baseline);
* rest: our REST AS started from `--rest-cmd` (a child process on a free loopback port);
* grpc: our gRPC AS started from `--grpc-cmd`, called through the generated messages of
  `--grpc-stubs` (skipped, with a line on stderr, when grpcio or the messages are missing);
* upstream: upstream's `restful-as` binary given by `--upstream`, sample TEE only (it cannot
  verify our simulated TDX quotes).

Every server runs from the start, and the phases alternate between targets: for each client
count, each TEE is measured on every target in turn, so the figures compared are taken within
minutes of each other on a machine whose speed drifts; `--rounds N` repeats it all and the
summary takes medians.

The load generator is benches/flow.py's: one trio task and one keep-alive connection per
client, hand-written HTTP/1.1; for gRPC one grpc.aio channel per client, on an asyncio loop in
a thread of its own. Before the evaluations at each client count, every HTTP target is driven
with `GET /healthz` (the ceiling: what the generator and the HTTP stack do with no work behind
them). stdout gets one JSON object per measured phase and, last, one summary object per TEE and
client count with `ratio` = over_the_wire / in_process for each server and, when upstream was
measured, `vs_upstream`. stderr gets the progress, the CPU used by server, generator and
everything else, and the generator's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow import (
    DRAIN_TIMEOUT_S,
    HOST,
    NOISY_CPU,
    REQUEST_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    BenchError,
    Connection,
    Phase,
    Server,
    _healthz_ok,
    _levels,
    _seconds,
    _stop,
    close_window,
    exit_code,
    expect,
    free_port,
    log,
    open_window,
    percentile,
    record,
    run_phase,
)
from trustee.crypto.b64 import b64std_encode, b64url_encode
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.crypto.jws import split_compact
from trustee.protocol import binding
from trustee.protocol.rcar import EvidenceRequest

TEES = ("sample", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "tpm")
DEFAULT_TEES = ("sample", "tdx")
TARGETS = ("in-process", "rest", "grpc", "upstream")
OVER_THE_WIRE = ("rest", "grpc", "upstream")
HASH_ALGORITHM = "sha384"
POLICY_ID = "default"
GRPC_METHOD = "/attestation.AttestationService/AttestationEvaluate"
DEFAULT_REST_CMD = "{python} -m trustee.cli as serve --config {config} --socket {socket}"
DEFAULT_GRPC_CMD = "{python} -m trustee.cli as serve --grpc --config {config} --socket {socket}"
TOKEN_SAMPLES = 16
# Servers run as deployed. With RUST_BACKTRACE=1 (set in some development shells) every
# `anyhow` error upstream creates captures a backtrace: 16 % of upstream's CPU per evaluation
# went to unwinding (perf), for errors it then logs without the trace.
DEBUG_ENVIRONMENT = ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")


# --------------------------------------------------------------------------------------------
# The requests


@dataclass(frozen=True)
class Evaluation:
    """One verification request, ready in every form a target takes."""

    tee: str
    nonce: str
    evidence: dict[str, Any]
    runtime_data: dict[str, Any]

    def in_process(self) -> EvidenceRequest:
        return EvidenceRequest(self.tee, self.evidence, self.runtime_data, HASH_ALGORITHM)

    def _evidence_b64(self) -> str:
        return b64url_encode(json.dumps(self.evidence, separators=(",", ":")).encode())

    def rest_body(self) -> bytes:
        request = {
            "tee": self.tee,
            "evidence": self._evidence_b64(),
            "runtime_data": {"structured": self.runtime_data},
            "runtime_data_hash_algorithm": HASH_ALGORITHM,
        }
        body = {"verification_requests": [request], "policy_ids": [POLICY_ID]}
        return json.dumps(body, separators=(",", ":")).encode()

    def grpc_message(self, stubs: GrpcStubs) -> bytes:
        single = stubs.individual(
            tee=self.tee,
            evidence=self._evidence_b64(),
            structured_runtime_data=json.dumps(self.runtime_data, separators=(",", ":")),
            runtime_data_hash_algorithm=HASH_ALGORITHM,
        )
        message = stubs.request(verification_requests=[single], policy_ids=[POLICY_ID])
        return bytes(message.SerializeToString())


def build_pool(tee: str, size: int, guests: dict[str, Any]) -> list[Evaluation]:
    """`size` requests with distinct nonces, bound to one TEE key as a guest's would be."""
    pubkey = tee_public_jwk(generate_tee_key())
    pool = []
    for _ in range(size):
        nonce = b64std_encode(os.urandom(32))
        runtime_data = {"nonce": nonce, "tee-pubkey": pubkey}
        digest = binding.runtime_data_digest(runtime_data, HASH_ALGORITHM)
        if tee == "sample":
            evidence: dict[str, Any] = {"svn": "1", "report_data": b64std_encode(digest)}
        else:
            evidence = dict(guests[tee].evidence(digest, None))
        pool.append(Evaluation(tee, nonce, evidence, runtime_data))
    return pool


def simulated_guests(tees: list[str], workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A simulated attester per hardware TEE in `tees`, and the verifier config trusting them."""
    if tees == ["sample"]:
        return {}, {}
    from trustee.simulate import (
        SimulatedTdxAttester,
        SnpTestPki,
        TdxTestPki,
        write_server_trust,
    )
    from trustee.simulate.azure import (
        AzSnpVtpmPki,
        AzTdxVtpmPki,
        SimulatedAzSnpVtpmAttester,
        SimulatedAzTdxVtpmAttester,
        VtpmKeys,
    )
    from trustee.simulate.tpm import SimulatedTpmAttester, TpmTestPki

    # One TDX platform for tdx and az-tdx-vtpm: the server reads one collateral file.
    tdx = TdxTestPki.generate()
    guests: dict[str, Any] = {
        "tdx": SimulatedTdxAttester(tdx),
        "az-tdx-vtpm": SimulatedAzTdxVtpmAttester(AzTdxVtpmPki(tdx, VtpmKeys.generate())),
        "tpm": SimulatedTpmAttester(TpmTestPki.generate()),
    }
    tdx_files = write_server_trust(tdx, workdir / "tdx-trust")
    roots = [str(tdx_files["test_roots"])]
    if "az-snp-vtpm" in tees:
        snp = SnpTestPki.generate()
        guests["az-snp-vtpm"] = SimulatedAzSnpVtpmAttester(AzSnpVtpmPki(snp, VtpmKeys.generate()))
        roots.append(str(write_server_trust(snp, workdir / "snp-trust")["test_roots"]))
    config = {"insecure_test_roots": roots, "collateral": str(tdx_files["collateral"])}
    return guests, config


def check_tokens(tokens: list[bytes], pool: list[Evaluation]) -> Counter[str]:
    """Every sampled token answers one of our requests; returns its ear.status counts."""
    nonces = {item.nonce for item in pool}
    statuses: Counter[str] = Counter()
    for raw in tokens:
        try:
            claims = split_compact(raw.decode().strip()).claims()
            submod = next(iter(claims["submods"].values()))
            evidence = submod["ear.veraison.annotated-evidence"]
            nonce = evidence["runtime_data_claims"]["nonce"]
        except (ValueError, KeyError, TypeError, StopIteration, UnicodeDecodeError) as exc:
            raise BenchError(f"the answer is not an EAR token of ours: {raw[:200]!r}") from exc
        if nonce not in nonces:
            raise BenchError(f"a token carries nonce {nonce!r}, which no request had")
        statuses[str(submod.get("ear.status"))] += 1
    if not tokens:
        raise BenchError("no token was sampled")
    return statuses


# --------------------------------------------------------------------------------------------
# AS configuration (upstream's JSON form)


def as_config(
    workdir: Path, storage: str, verifier_config: dict[str, Any] | None
) -> dict[str, Any]:
    backend: dict[str, Any] = {"storage_type": storage}
    if storage == "LocalFs":
        backend["backends"] = {"local_fs": {"dir_path": str(workdir)}}
    config: dict[str, Any] = {
        "rvps_config": {"type": "BuiltIn"},
        "attestation_token_broker": {"duration_min": 5},
        "storage_backend": backend,
    }
    if verifier_config is not None:
        config["verifier_config"] = verifier_config
    return config


async def in_process_service(config: dict[str, Any]) -> Any:
    """The AttestationService a standalone AS builds from this configuration."""
    from trustee.as_assemble import assemble_as
    from trustee.config.as_file import parse

    standalone = await assemble_as(parse(json.dumps(config), "<bench AS config>"))
    return standalone.service


# --------------------------------------------------------------------------------------------
# Clients: each has `conn` (closed by run_phase after a phase), `select(tee)` and `evaluate()`


class _Idle:
    async def aclose(self) -> None:
        pass


class Walker:
    """A client's walk through each TEE's requests, from its own starting point, so that
    concurrent clients send different requests."""

    def __init__(self, per_tee: dict[str, list[Any]], start: int) -> None:
        self.cycles = {tee: (items, start % len(items)) for tee, items in per_tee.items()}
        self.tee = next(iter(per_tee))

    def select(self, tee: str) -> None:
        self.tee = tee

    def next(self) -> Any:
        items, index = self.cycles[self.tee]
        self.cycles[self.tee] = (items, (index + 1) % len(items))
        return items[index]


class HttpClient(Walker):
    """`per_tee`: the whole raw requests (one Host header serves every client of a target)."""

    def __init__(self, port: int, per_tee: dict[str, list[bytes]], start: int) -> None:
        super().__init__(per_tee, start)
        self.conn = Connection(port)
        self.healthz_request = self.conn.build("GET", "/healthz")

    async def evaluate(self) -> bytes:
        answer = await self.conn.request(self.next())
        return expect(answer, "POST /attestation").body

    async def healthz(self) -> None:
        expect(await self.conn.request(self.healthz_request), "GET /healthz")


class InProcessClient(Walker):
    def __init__(self, service: Any, per_tee: dict[str, list[EvidenceRequest]], start: int):
        super().__init__(per_tee, start)
        self.conn = _Idle()
        self.service = service

    async def evaluate(self) -> bytes:
        from trustee import offload

        # What the server's middleware does: concurrent requests send the native work to the
        # offload threads; a lone one runs it inline.
        offload.DEFAULT.requests += 1
        try:
            appraised = await self.service.evaluate([self.next()], [POLICY_ID])
        finally:
            offload.DEFAULT.requests -= 1
        # An inline evaluation never yields; a server yields at every request's I/O.
        await trio.lowlevel.checkpoint()
        return str(appraised.token).encode()


@dataclass
class GrpcStubs:
    grpc: Any
    request: Any
    individual: Any
    response: Any


class GrpcClient(Walker):
    """A grpc.aio channel of its own (one HTTP/2 connection, like the HTTP clients), driven
    under asyncio: grpcio's cheapest client. Blocking calls on trio worker threads, or grpcio
    futures waking trio tasks, cost the generator two to three times the CPU per call."""

    def __init__(self, port: int, stubs: GrpcStubs, messages: dict[str, list[bytes]], start: int):
        super().__init__(messages, start)
        self.conn = _Idle()  # the channel outlives the phases; `close()` ends it
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channel = stubs.grpc.aio.insecure_channel(f"{HOST}:{port}", options=options)
        self.call = self.channel.unary_unary(GRPC_METHOD)  # bytes in, bytes out
        self.response = stubs.response

    async def evaluate(self) -> bytes:
        raw = await self.call(self.next(), timeout=REQUEST_TIMEOUT_S)
        return str(self.response.FromString(raw).attestation_token).encode()

    async def close(self) -> None:
        await self.channel.close()


def load_grpc_stubs(module_name: str) -> GrpcStubs | str:
    """The generated attestation.proto messages, or why they cannot be used."""
    try:
        import grpc  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        return f"grpcio is not installed ({exc})"
    try:
        module = importlib.import_module(module_name)
        if not hasattr(module, "AttestationRequest"):
            module = importlib.import_module(f"{module_name}.attestation_pb2")
        return GrpcStubs(
            grpc,
            module.AttestationRequest,
            module.IndividualAttestationRequest,
            module.AttestationResponse,
        )
    except (ImportError, AttributeError) as exc:
        return f"no attestation.proto messages in {module_name} ({exc})"


# --------------------------------------------------------------------------------------------
# Server processes


def command(template: str, config: Path, port: int) -> list[str]:
    values = {
        "python": sys.executable,
        "bindir": str(Path(sys.executable).parent),
        "config": str(config),
        "socket": f"{HOST}:{port}",
    }
    try:
        return [part.format(**values) for part in shlex.split(template)]
    except (KeyError, ValueError, IndexError) as exc:
        raise BenchError(
            f"server command {template!r}: {exc} (placeholders: {', '.join(values)})"
        ) from exc


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def healthz_ok(port: int) -> bool:
    return _healthz_ok(HOST, port)


@contextmanager
def served(
    name: str, template: str, config: Path, workdir: Path, ready: Callable[[int], bool]
) -> Iterator[Server]:
    """Start `template` on a free loopback port; stop it (SIGINT, then SIGKILL) when done."""
    env = {k: v for k, v in os.environ.items() if k not in DEBUG_ENVIRONMENT}
    env.setdefault("TRUSTEE_LOG", "info")
    for attempt in range(3):
        port = free_port()
        argv = command(template, config, port)
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log_file:
            try:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                    env=env,
                )  # fmt: skip
            except OSError as exc:
                raise BenchError(f"{name}: cannot run {argv[0]}: {exc}") from exc
        server = Server(HOST, port, process.pid, process, log_path)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if ready(port):
                    break
                time.sleep(0.05)
            else:
                tail = server.log_tail()
                if "in use" in tail.lower() and attempt < 2:
                    continue
                raise BenchError(f"{name} did not start ({shlex.join(argv)}):\n{tail}")
            log(f"{name}: pid {process.pid} on {HOST}:{port}: {shlex.join(argv)}")
            yield server
            return
        finally:
            _stop(process)
    raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Settings:
    levels: list[int]
    warmup: float
    duration: float
    ceiling_duration: float
    tees: list[str]
    rounds: int


def report(
    target: str, what: str, clients: int, phase: Phase, pid: int | None, **extra: Any
) -> dict[str, Any]:
    """Print a phase's JSON line and its stderr summary; `what` is a TEE or `healthz`."""
    lat = sorted(phase.latencies)
    count = len(lat)
    generator_us = 1e6 * phase.client_cpu * phase.duration / count if count else None
    line: dict[str, Any] = {
        "target": target,
        "what": what,
        "clients": clients,
        "per_s": round(count / phase.duration, 1),
        "p50_ms": round(percentile(lat, 50) * 1000, 2),
        "p99_ms": round(percentile(lat, 99) * 1000, 2),
        # In-process, this process is both: its CPU is reported as the generator's.
        "server_cores": round(phase.server_cpu, 2) if pid is not None else None,
        "generator_cores": round(phase.client_cpu, 2),
        "other_cores": round(phase.other_cpu, 2),
        "generator_us_per_request": round(generator_us, 1) if generator_us and pid else None,
        **extra,
    }
    print(json.dumps(line), flush=True)
    if pid is None:
        cpu = f"this process {phase.client_cpu:.2f} cores"
    else:
        cpu = (
            f"server {phase.server_cpu:.2f} cores, load generator {phase.client_cpu:.2f} "
            f"({line['generator_us_per_request']} µs CPU per request)"
        )
    unit = "GET /healthz" if what == "healthz" else f"{what} evaluations"
    log(
        f"[{target} {clients:>3}] {line['per_s']} {unit}/s, p50 {line['p50_ms']} ms; {cpu}, "
        f"other {phase.other_cpu:.2f}"
        + (f"; ear.status {extra['ear_status']}" if "ear_status" in extra else "")
    )
    if phase.other_cpu > NOISY_CPU:
        log(
            f"[{target} {clients:>3}] warning: other processes used {phase.other_cpu:.0%} of a "
            "core during the window; the figures are disturbed"
        )
    return line


async def run_phase_asyncio(
    clients: list[Any],
    unit: Callable[[Any], Awaitable[bytes | None]],
    warmup: float,
    duration: float,
    server_pid: int | None,
) -> Phase:
    """flow.run_phase under asyncio, for grpc.aio."""
    phase = Phase(warmup, duration, sample_quota=max(1, TOKEN_SAMPLES // len(clients)))

    async def loop(client: Any) -> None:
        while not phase.stopping:
            start = time.perf_counter()
            record(phase, client, start, await unit(client))

    tasks = [asyncio.ensure_future(loop(client)) for client in clients]
    try:
        await asyncio.sleep(warmup)
        cpu0 = open_window(phase, server_pid)
        await asyncio.sleep(duration)
        close_window(phase, server_pid, cpu0)
        phase.stopping = True
        # Every client finishes its call so that no backlog leaks into the next phase; a
        # client that failed raises here.
        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT_S)
    finally:
        for task in tasks:
            task.cancel()
    return phase


class AsyncioThread:
    """An asyncio loop on a thread of its own, for grpc.aio: the gRPC target's channels live
    there, and the trio side waits while a gRPC phase runs on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await trio.to_thread.run_sync(future.result)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@dataclass
class Target:
    """A measured thing: its clients (one per simulated client), the TEEs it is given, and the
    phase runner of the event loop its clients need."""

    name: str
    clients: list[Any]
    tees: list[str]
    server: Server | None = None
    asyncio_thread: AsyncioThread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.server is None else self.server.pid

    async def phase(
        self,
        level: int,
        unit: Callable[[Any], Awaitable[bytes | None]],
        warmup: float,
        duration: float,
    ) -> Phase:
        group = self.clients[:level]
        try:
            if self.asyncio_thread is None:
                return await run_phase(group, unit, warmup, duration, self.pid)
            phase = run_phase_asyncio(group, unit, warmup, duration, self.pid)
            result: Phase = await self.asyncio_thread.run(phase)
            return result
        except (BenchError, TimeoutError, trio.TooSlowError) as exc:
            raise self.failed(exc) from None

    async def probe(self, pools: dict[str, list[Evaluation]]) -> None:
        """One evaluation per TEE before any timing, so that a refusal stops the bench early."""

        async def once() -> None:
            client = self.clients[0]
            for tee in self.tees:
                client.select(tee)
                check_tokens([await client.evaluate()], pools[tee])
            await client.conn.aclose()

        try:
            if self.asyncio_thread is None:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    await once()
            else:
                await self.asyncio_thread.run(asyncio.wait_for(once(), REQUEST_TIMEOUT_S))
        except (BenchError, TimeoutError, trio.TooSlowError) as exc:
            raise self.failed(exc) from None

    def failed(self, exc: BaseException) -> BenchError:
        tail = "" if self.server is None else f"\nits log ends:\n{self.server.log_tail()}"
        return BenchError(f"{self.name}: {type(exc).__name__}: {exc}{tail}")


async def evaluate(client: Any) -> bytes:
    return bytes(await client.evaluate())


async def healthz(client: Any) -> None:
    await client.healthz()


async def measure_level(
    targets: list[Target],
    level: int,
    settings: Settings,
    pools: dict[str, list[Evaluation]],
    rates: dict[tuple[str, str, int], list[float]],
) -> None:
    """One client count: the HTTP targets' healthz ceilings, then each TEE on every target in
    turn, so that the targets compared are measured minutes apart at most."""
    for target in targets:
        if isinstance(target.clients[0], HttpClient):
            phase = await target.phase(level, healthz, settings.warmup, settings.ceiling_duration)
            report(target.name, "healthz", level, phase, target.pid)
    for tee in settings.tees:
        for target in targets:
            if tee not in target.tees:
                continue
            for client in target.clients[:level]:
                client.select(tee)
            phase = await target.phase(level, evaluate, settings.warmup, settings.duration)
            statuses = check_tokens([token for _, token in phase.samples], pools[tee])
            line = report(target.name, tee, level, phase, target.pid, ear_status=dict(statuses))
            rates.setdefault((target.name, tee, level), []).append(line["per_s"])


# --------------------------------------------------------------------------------------------
# Targets


@dataclass
class Plan:
    targets: list[str]
    rest_cmd: str
    grpc_cmd: str
    upstream: Path | None
    stubs: GrpcStubs | None
    storage: str
    workdir: Path
    verifier_config: dict[str, Any] | None  # our servers' (TDX test root and collateral)


def starts(pools: dict[str, list[Evaluation]], count: int) -> list[int]:
    size = len(next(iter(pools.values())))
    return [i * max(1, size // count) for i in range(count)]


def server_template(name: str, plan: Plan) -> str:
    if name == "rest":
        return plan.rest_cmd
    if name == "grpc":
        return plan.grpc_cmd
    assert plan.upstream is not None
    binary = shlex.quote(str(plan.upstream)).replace("{", "{{").replace("}", "}}")
    return f"{binary} --config-file {{config}} --socket {{socket}}"


def target_pools(name: str, pools: dict[str, list[Evaluation]]) -> dict[str, list[Evaluation]]:
    if name == "upstream":
        # Upstream cannot verify our simulated evidence (nor does its build here have TDX).
        return {tee: pool for tee, pool in pools.items() if tee == "sample"}
    return pools


def start_server(name: str, plan: Plan, stack: AsyncExitStack) -> Server:
    config = as_config(
        plan.workdir / f"store-{name}",
        plan.storage,
        None if name == "upstream" else plan.verifier_config,
    )
    path = plan.workdir / f"{name}-as-config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    ready = tcp_open if name == "grpc" else healthz_ok
    template = server_template(name, plan)
    return stack.enter_context(served(name, template, path, plan.workdir, ready))


async def make_target(
    name: str, plan: Plan, pools: dict[str, list[Evaluation]], count: int, stack: AsyncExitStack
) -> Target:
    """Start the target (a server process, or the in-process service) and its clients."""
    pools = target_pools(name, pools)
    tees = list(pools)
    if name == "in-process":
        config = as_config(plan.workdir / f"store-{name}", plan.storage, plan.verifier_config)
        service = await in_process_service(config)
        requests = {tee: [item.in_process() for item in pool] for tee, pool in pools.items()}
        clients = [InProcessClient(service, requests, start) for start in starts(pools, count)]
        return Target(name, clients, tees)
    server = start_server(name, plan, stack)
    if name != "grpc":
        builder = Connection(server.port)
        raw = {
            tee: [builder.build("POST", "/attestation", item.rest_body(), "application/json")
                  for item in pool]
            for tee, pool in pools.items()
        }  # fmt: skip
        clients = [HttpClient(server.port, raw, start) for start in starts(pools, count)]
        return Target(name, clients, tees, server)
    stubs = plan.stubs
    assert stubs is not None
    messages = {tee: [item.grpc_message(stubs) for item in pool] for tee, pool in pools.items()}
    thread = AsyncioThread()
    stack.callback(thread.close)

    async def connect() -> list[GrpcClient]:
        # grpc.aio channels belong to the loop they are made on.
        return [GrpcClient(server.port, stubs, messages, start) for start in starts(pools, count)]

    grpc_clients = await thread.run(connect())

    async def disconnect() -> None:
        for client in grpc_clients:
            await client.close()

    stack.push_async_callback(lambda: thread.run(disconnect()))
    return Target(name, grpc_clients, tees, server, thread)


def summarise(rates: dict[tuple[str, str, int], list[float]], settings: Settings) -> None:
    """One line per TEE and level: every target's evaluations/s (the median over the rounds),
    ratio = over_the_wire / in_process, and each one against upstream's."""
    for tee in settings.tees:
        for level in settings.levels:
            got = {
                name: statistics.median(values)
                for (name, t, n), values in rates.items()
                if (t, n) == (tee, level)
            }
            if not got:
                continue
            line: dict[str, Any] = {"summary": True, "tee": tee, "clients": level}
            if settings.rounds > 1:
                line["rounds"] = settings.rounds
            line.update({name.replace("-", "_"): value for name, value in got.items()})
            base = got.get("in-process")
            wire = [name for name in OVER_THE_WIRE if name in got]
            if base and wire:
                line["ratio"] = {name: round(got[name] / base, 3) for name in wire}
            upstream = got.get("upstream")
            if upstream and len(got) > 1:
                line["vs_upstream"] = {
                    name.replace("-", "_"): round(value / upstream, 3)
                    for name, value in got.items()
                    if name != "upstream"
                }
            print(json.dumps(line), flush=True)


async def bench(plan: Plan, settings: Settings, pool_size: int) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    log(
        f"{len(os.sched_getaffinity(0))} cores, load average {load}; "
        f"load generator pid {os.getpid()}; targets {', '.join(plan.targets)}"
    )
    guests, verifier_config = simulated_guests(settings.tees, plan.workdir)
    if verifier_config:
        plan.verifier_config = verifier_config
    pools = {tee: build_pool(tee, pool_size, guests) for tee in settings.tees}
    rates: dict[tuple[str, str, int], list[float]] = {}
    from trustee import offload

    async with trio.open_nursery() as nursery:
        # The in-process target's native threads and their reader, as a server starts them.
        await nursery.start(offload.DEFAULT.run)
        # Every server runs from the start (idle ones cost nothing), so that the phases of
        # different targets can alternate.
        async with AsyncExitStack() as stack:
            targets = []
            for name in plan.targets:
                if not target_pools(name, pools):
                    log(f"{name}: skipped, it is measured with the sample TEE only")
                    continue
                target = await make_target(name, plan, pools, max(settings.levels), stack)
                await target.probe(pools)
                targets.append(target)
            if not targets:
                raise BenchError("no target takes the TEEs asked for")
            for number in range(settings.rounds):
                if settings.rounds > 1:
                    log(f"round {number + 1} of {settings.rounds}")
                for level in settings.levels:
                    await measure_level(targets, level, settings, pools, rates)
        nursery.cancel_scope.cancel()
    summarise(rates, settings)


# --------------------------------------------------------------------------------------------
# Main


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}; got {text!r}"
            )
        return [name for name in allowed if name in chosen]

    return parse


def _rounds(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 20:
        raise argparse.ArgumentTypeError("must be from 1 to 20")
    return value


def _pool_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError("must be from 1 to 4096")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--clients", type=_levels, default=[1, 32], help="concurrency levels (default 1,32)")
    add("--duration", type=_seconds, default=10.0, help="measuring window per phase, s (10)")
    add("--warmup", type=_seconds, default=2.0, help="warm-up before each window, s (2)")
    add("--ceiling-duration", type=_seconds, default=5.0,
        help="window of the GET /healthz ceiling per HTTP target and level, s (5)")  # fmt: skip
    add("--tee", type=_choices(TEES), default=list(DEFAULT_TEES),
        help=f"of {','.join(TEES)} (default sample,tdx)")  # fmt: skip
    add("--targets", type=_choices(TARGETS),
        help="of in-process,rest,grpc,upstream (default: in-process,rest,grpc, and upstream "
        "with --upstream)")  # fmt: skip
    add("--rest-cmd", default=DEFAULT_REST_CMD, metavar="CMD",
        help="our REST AS; {config}, {socket}, {python}, {bindir} are filled in "
        f"(default: {DEFAULT_REST_CMD!r})")  # fmt: skip
    add("--grpc-cmd", default=DEFAULT_GRPC_CMD, metavar="CMD",
        help=f"our gRPC AS, same placeholders (default: {DEFAULT_GRPC_CMD!r})")  # fmt: skip
    add("--grpc-stubs", default="trustee.grpc_api", metavar="MODULE",
        help="module (or package with attestation_pb2) of the generated attestation.proto "
        "messages (default trustee.grpc_api)")  # fmt: skip
    add("--upstream", type=Path, metavar="PATH", help="upstream's restful-as binary")
    add("--pool", type=_pool_size, default=256, help="distinct requests per TEE (256)")
    add("--rounds", type=_rounds, default=1,
        help="repeat every phase this many times, alternating targets; the summary takes "
        "medians (1)")  # fmt: skip
    add("--storage", choices=("LocalFs", "Memory"), default="LocalFs",
        help="the AS storage backend (LocalFs, in the temporary directory)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.targets is None:
        args.targets = ["in-process", "rest", "grpc"] + (["upstream"] if args.upstream else [])
    if "upstream" in args.targets and args.upstream is None:
        parser.error("the upstream target needs --upstream PATH")
    if args.upstream is not None and not os.access(args.upstream, os.X_OK):
        parser.error(f"--upstream {args.upstream}: not an executable file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = list(args.targets)
    stubs = None
    if "grpc" in targets:
        loaded = load_grpc_stubs(args.grpc_stubs)
        if isinstance(loaded, str):
            log(f"grpc: skipped: {loaded}")
            targets.remove("grpc")
        else:
            stubs = loaded
    if not targets:
        log("nothing to measure")
        return 1
    settings = Settings(
        args.clients, args.warmup, args.duration, args.ceiling_duration, args.tee, args.rounds
    )

    def run() -> None:
        with tempfile.TemporaryDirectory(prefix="trustee-as-bench-") as tmp:
            plan = Plan(
                targets, args.rest_cmd, args.grpc_cmd, args.upstream, stubs, args.storage,
                Path(tmp), None,
            )  # fmt: skip
            trio.run(bench, plan, settings, args.pool)

    return exit_code(run)


if __name__ == "__main__":
    sys.exit(main())
