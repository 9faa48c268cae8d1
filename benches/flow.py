#!/usr/bin/env python3
"""Throughput of full sample-TEE flows (auth + attest + resource) against one KBS.

Run from the repository root with the project's venv:

    .venv/bin/python benches/flow.py [--clients 1,32] [--duration 6] [--warmup 1]

The real server (`python -m trustee.cli serve --config …`) is started as a child process on a
free loopback port and stopped at the end: LocalFs storage, sealed-cookie sessions and the
server's default worker count (a worker per core) unless --memory (one worker, Memory storage),
--workers N or --redis-sessions say otherwise; --url measures a running KBS instead. This
process is the load generator: one trio task and one keep-alive HTTP/1.1 connection per
simulated client, with hand-written requests, so that the client side stays cheap (server and
load generator share the machine's cores).

For every concurrency level three phases run back to back, each a warm-up followed by a fixed
measuring window:

* ceiling: every client loops `GET /healthz` (an empty 200 from the same app);
* flows: every client loops POST /kbs/v0/auth (fresh session) → POST /kbs/v0/attest (sample
  evidence bound to the challenge nonce and the client's TEE key) → GET /kbs/v0/resource/…
  with the session cookie, and checks the answer is a JWE; a sample of the JWEs is decrypted
  with the client's TEE key after the phase, outside the timed loop;
* ceiling again; `ceiling_rps` is the mean of the two ceiling phases.

stdout gets one JSON object per concurrency level, in ascending order (so the highest level is
last): clients, flows_per_s, p50_ms, p99_ms (per-flow latency), ceiling_rps, and
ratio = 3 × flows_per_s / ceiling_rps (how close a flow's three requests come to three trivial
requests). Everything else goes to stderr.

`--profile-server FILE.pstats` runs the server under cProfile, enabled only during the measuring
window of the last flow phase (SIGUSR1/SIGUSR2 from this process), and prints the top entries.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from trustee.bench.http_conn import Answer, Connection, TransportError
from trustee.bench.sysinfo import machine_cpu_seconds, process_cpu_seconds, tree_rss_mib
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.kbs import PROTOCOL_0_4_0, Challenge, compact_json
from trustee.crypto.b64 import b64std_encode, b64url_encode
from trustee.crypto.jwk import PrivateKey, generate_tee_key, tee_public_jwk
from trustee.protocol import binding, jwe

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 30.0  # in-flight units after a window closes
REQUEST_TIMEOUT_S = 30.0
MAX_CLIENTS = 256
MAX_DURATION_S = 120.0
DECRYPT_SAMPLES = 16
NOISY_CPU = 0.15  # other processes' CPU share above which a phase is reported as disturbed

RESOURCE_PATH = "default/bench/secret"
SECRET = b"trustee-py bench secret"
ALLOW_ALL_RESOURCE_POLICY = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
SESSION_COOKIE = "kbs-session-id"

CONFIG = """\
[http_server]
sockets = ["{host}:{port}"]
insecure_http = true

[admin]
authorization_mode = "InsecureAllowAll"

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

[storage_backend]
storage_type = "Memory"

[[plugins]]
name = "resource"
"""

# Runs the server under cProfile; SIGUSR1 starts collecting, SIGUSR2 stops, exit dumps.
PROFILE_BOOTSTRAP = """\
import cProfile, signal, sys
from trustee.cli import main
profiler = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
signal.signal(signal.SIGUSR2, lambda *_: profiler.disable())
try:
    code = main(sys.argv[2:])
finally:
    profiler.disable()
    profiler.dump_stats(sys.argv[1])
sys.exit(code)
"""


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The keep-alive HTTP/1.1 client is the library's (trustee.bench.http_conn)


def expect(answer: Answer, what: str, status: int = 200) -> Answer:
    if answer.status != status:
        preview = answer.body[:300].decode(errors="replace")
        raise BenchError(f"{what}: HTTP {answer.status}, expected {status}: {preview}")
    return answer


# --------------------------------------------------------------------------------------------
# The guest flow


AUTH_BODY = compact_json(PROTOCOL_0_4_0.auth_request(SampleAttester.tee)).encode()


def attestation_body(tee_pubkey: dict[str, Any], nonce: str) -> bytes:
    """The /attest body the client sends for the sample TEE (no device, no init-data).

    Same binding as `Protocol040.attestation`: SHA-384 over JCS of
    {"tee-pubkey", "nonce", "additional-evidence": ""}; `check_attestation_body` proves it.
    """
    digest = binding.runtime_data_digest(binding.primary_runtime_data(tee_pubkey, nonce, ""))
    evidence = {"svn": SampleAttester.svn, "report_data": b64std_encode(digest)}
    return compact_json(
        {
            "init-data": None,
            "runtime-data": {"nonce": nonce, "tee-pubkey": tee_pubkey},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
        }
    ).encode()


def check_attestation_body(tee_pubkey: dict[str, Any]) -> None:
    nonce = b64std_encode(os.urandom(32))
    reference = PROTOCOL_0_4_0.attestation(
        Challenge(nonce=nonce, extra_params=""), tee_pubkey, AttesterSet(SampleAttester()), None
    )
    if attestation_body(tee_pubkey, nonce) != compact_json(reference).encode():
        raise BenchError("the bench's /attest body differs from the client library's")


class Guest:
    """One simulated client: its connection, its TEE key (reused across flows)."""

    def __init__(self, port: int, host: str = HOST) -> None:
        self.conn = Connection(port, host)
        self.key: PrivateKey = generate_tee_key()
        self.pubkey = tee_public_jwk(self.key)
        self.auth_request = self.conn.build("POST", "/kbs/v0/auth", AUTH_BODY, "application/json")
        self.healthz_request = self.conn.build("GET", "/healthz")

    async def healthz(self) -> None:
        answer = expect(await self.conn.request(self.healthz_request), "GET /healthz")
        if answer.body:
            raise BenchError("GET /healthz answered a non-empty body")

    async def flow(self) -> bytes:
        """auth → attest → resource; returns the resource response body (a JWE JSON)."""
        conn = self.conn
        auth = expect(await conn.request(self.auth_request), "POST /kbs/v0/auth")
        if auth.set_cookie is None:
            raise BenchError("POST /kbs/v0/auth set no cookie")
        cookie = auth.set_cookie.split(b";", 1)[0].decode()
        if not cookie.startswith(SESSION_COOKIE + "="):
            raise BenchError(f"unexpected session cookie {cookie!r}")
        nonce = json.loads(auth.body)["nonce"]
        body = attestation_body(self.pubkey, nonce)
        attest = await conn.request(
            conn.build("POST", "/kbs/v0/attest", body, "application/json", cookie)
        )
        if not isinstance(json.loads(expect(attest, "POST /kbs/v0/attest").body).get("token"), str):
            raise BenchError("POST /kbs/v0/attest answered no token")
        if attest.set_cookie is not None:
            # A sealed session's cookie changes at /attest (upstream re-sends the same one).
            cookie = attest.set_cookie.split(b";", 1)[0].decode()
        resource = await conn.request(
            conn.build("GET", f"/kbs/v0/resource/{RESOURCE_PATH}", cookie=cookie)
        )
        sealed = expect(resource, "GET /kbs/v0/resource").body
        doc = json.loads(sealed)
        if not isinstance(doc, dict) or set(doc) != set(jwe.MEMBERS):
            raise BenchError(f"resource response is not a flattened JWE: {sealed[:200]!r}")
        return sealed


# --------------------------------------------------------------------------------------------
# Phases


@dataclass
class Phase:
    warmup: float
    duration: float
    window_start: float = math.inf
    window_end: float = math.inf
    stopping: bool = False
    sample_quota: int = 1  # JWEs kept per client for decryption after the phase
    server_cpu: float = 0.0  # server CPU seconds in the window / window length
    client_cpu: float = 0.0  # same for this (load generator) process
    other_cpu: float = 0.0  # same for everything else on the machine (noise)
    latencies: list[float] = field(default_factory=list)
    samples: list[tuple[Guest, bytes]] = field(default_factory=list)
    sampled: dict[int, int] = field(default_factory=dict)


def record(phase: Phase, guest: Any, start: float, result: bytes | None) -> None:
    """Count a unit that started at `start` and just ended, if it ended inside the window."""
    end = time.perf_counter()
    if phase.window_start <= end <= phase.window_end:
        phase.latencies.append(end - start)
        if result is not None and phase.sampled.get(id(guest), 0) < phase.sample_quota:
            phase.sampled[id(guest)] = phase.sampled.get(id(guest), 0) + 1
            phase.samples.append((guest, result))


def open_window(phase: Phase, server_pid: int | None) -> tuple[float, float, float]:
    """Start the measuring window; returns the CPU counters `close_window` compares with."""
    cpu0 = (process_cpu_seconds(server_pid), time.process_time(), machine_cpu_seconds())
    phase.window_start = time.perf_counter()
    return cpu0


def close_window(phase: Phase, server_pid: int | None, cpu0: tuple[float, float, float]) -> None:
    """End the window and work out who used the CPU during it."""
    phase.window_end = time.perf_counter()
    elapsed = phase.window_end - phase.window_start
    phase.server_cpu = (process_cpu_seconds(server_pid) - cpu0[0]) / elapsed
    phase.client_cpu = (time.process_time() - cpu0[1]) / elapsed
    machine = (machine_cpu_seconds() - cpu0[2]) / elapsed
    phase.other_cpu = max(0.0, machine - phase.server_cpu - phase.client_cpu)


async def _client_loop(
    phase: Phase, guest: Guest, unit: Callable[[Guest], Awaitable[bytes | None]]
) -> None:
    while not phase.stopping:
        start = time.perf_counter()
        with trio.fail_after(REQUEST_TIMEOUT_S):
            result = await unit(guest)
        record(phase, guest, start, result)
    await guest.conn.aclose()


async def run_phase(
    guests: list[Guest],
    unit: Callable[[Guest], Awaitable[bytes | None]],
    warmup: float,
    duration: float,
    server_pid: int | None,
    on_window: Callable[[bool], None] | None = None,
) -> Phase:
    phase = Phase(warmup, duration, sample_quota=max(1, DECRYPT_SAMPLES // len(guests)))
    async with trio.open_nursery() as nursery:
        for guest in guests:
            nursery.start_soon(_client_loop, phase, guest, unit)
        await trio.sleep(warmup)
        if on_window is not None:
            on_window(True)
        cpu0 = open_window(phase, server_pid)
        await trio.sleep(duration)
        close_window(phase, server_pid, cpu0)
        if on_window is not None:
            on_window(False)
        phase.stopping = True
        with trio.move_on_after(DRAIN_TIMEOUT_S) as drained:
            # Let every client finish its unit so no backlog leaks into the next phase.
            while len(nursery.child_tasks) > 0:
                await trio.sleep(0.01)
        if drained.cancelled_caught:
            raise BenchError("clients did not finish their last request in time")
    return phase


async def _healthz_unit(guest: Guest) -> None:
    await guest.healthz()


async def _flow_unit(guest: Guest) -> bytes:
    return await guest.flow()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def verify_samples(phase: Phase) -> int:
    for guest, sealed in phase.samples:
        plaintext = jwe.decrypt(json.loads(sealed), guest.key)
        if plaintext != SECRET:
            raise BenchError(f"decrypted resource {plaintext[:40]!r} is not the seeded secret")
    if not phase.samples:
        raise BenchError("no resource response was sampled for decryption")
    return len(phase.samples)


# --------------------------------------------------------------------------------------------
# Server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """The KBS under test: one this bench started (`process`, `log_path`) or one given by
    `--url` (then `pid` only when `--server-pid` names it)."""

    host: str
    port: int
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def log_text(self) -> str:
        if self.log_path is None:
            return "(no log: the server was not started by this bench)"
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _healthz_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_server(
    workdir: Path,
    profile: Path | None,
    extra_config: str = "",
    template: str = CONFIG,
    workers: int = 1,
    wait_workers: int | None = None,
    *,
    local_fs: bool = False,
    redis_sessions: bool = False,
) -> Iterator[Server]:
    """Serve `template` (the standard bench config unless given) plus `extra_config`.
    `local_fs`: storage in a LocalFs directory instead of memory; then `workers` 0 leaves
    worker_count to the server (a worker per core). `redis_sessions`: sessions in a throwaway
    redis-server instead of the sealed cookie. `wait_workers` (default `workers`): how many
    workers must be accepting before the bench starts, for a `template` that sets worker_count
    itself."""
    env = dict(os.environ)
    env.pop("KBS_CONFIG_FILE", None)
    env.setdefault("TRUSTEE_LOG", "info")
    with ExitStack() as stack:
        if local_fs:
            redis_url = stack.enter_context(throwaway_redis(workdir)) if redis_sessions else None
            template = local_fs_config(template, workers, workdir / "store", redis_url)
            if workers == 0:
                workers = len(os.sched_getaffinity(0))
        for attempt in range(3):
            port = free_port()
            config = workdir / "kbs-config.toml"
            config.write_text(template.format(host=HOST, port=port) + extra_config)
            log_path = workdir / "kbs.log"
            serve = ["serve", "--config", str(config)]
            if profile is None:
                argv = [sys.executable, "-m", "trustee.cli", *serve]
            else:
                argv = [sys.executable, "-c", PROFILE_BOOTSTRAP, str(profile), *serve]
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            server = Server(HOST, port, process.pid, process, log_path)
            try:
                deadline = time.monotonic() + STARTUP_TIMEOUT_S
                while process.poll() is None and time.monotonic() < deadline:
                    # Clients that connect before the last worker accepts would all stay on
                    # the first ones (keep-alive): 24 of 32 on one of two workers, measured.
                    ready = server.log_text().count("Running on http") >= (wait_workers or workers)
                    if ready and _healthz_ok(HOST, port):
                        break
                    time.sleep(0.05)
                else:
                    if "address already in use" in server.log_tail() and attempt < 2:
                        continue
                    raise BenchError(f"the KBS did not start:\n{server.log_tail()}")
                yield server
                return
            finally:
                _stop(process)
    raise AssertionError("unreachable")  # pragma: no cover


def local_fs_config(template: str, workers: int, store: Path, redis_url: str | None) -> str:
    text = template
    if workers:
        text = text.replace(
            "insecure_http = true", f"insecure_http = true\nworker_count = {workers}"
        )
    backends = f'[storage_backend.backends.local_fs]\ndir_path = "{store}"\n'
    if redis_url is not None:
        backends += f'[storage_backend.backends.redis]\nurl = "{redis_url}"\n'
        text = 'session_storage_type = "Redis"\n' + text
    return text.replace('storage_type = "Memory"', f'storage_type = "LocalFs"\n{backends}')


@contextmanager
def throwaway_redis(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("--redis-sessions needs redis-server (Debian package redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1.0) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://{HOST}:{port}/0"
    finally:
        _stop(process)


async def seed(server: Server, token: str | None) -> None:
    conn = Connection(server.port, server.host, token)
    try:
        expect(
            await conn.request(
                conn.build(
                    "POST",
                    f"/kbs/v0/resource/{RESOURCE_PATH}",
                    SECRET,
                    "application/octet-stream",
                )
            ),
            "set resource (a KBS given by --url needs an open admin API or --admin-token-file)",
        )
        policy = compact_json({"policy": b64url_encode(ALLOW_ALL_RESOURCE_POLICY.encode())})
        expect(
            await conn.request(
                conn.build("POST", "/kbs/v0/resource-policy", policy.encode(), "application/json")
            ),
            "set resource policy",
        )
    finally:
        await conn.aclose()


# --------------------------------------------------------------------------------------------
# Main


async def bench(
    server: Server,
    levels: list[int],
    warmup: float,
    duration: float,
    profile: bool,
    token: str | None = None,
) -> None:
    await seed(server, token)
    guests = [Guest(server.port, server.host) for _ in range(max(levels))]
    check_attestation_body(guests[0].pubkey)
    log(
        f"KBS pid {server.pid or 'unknown'} on {server.host}:{server.port}; "
        f"load generator pid {os.getpid()}"
    )
    rss_idle = tree_rss_mib(server.pid)

    def profile_window(level: int) -> Callable[[bool], None] | None:
        if not profile or level != levels[-1] or server.process is None:
            return None
        process = server.process

        def toggle(on: bool) -> None:
            process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

        return toggle

    for level in levels:
        clients = guests[:level]
        pid = server.pid
        # The ceiling is measured right before and right after the flow phase and averaged,
        # so that drift during the run (heap growth, a noisy neighbour) affects both sides.
        before = await run_phase(clients, _healthz_unit, warmup, duration, pid)
        flows = await run_phase(clients, _flow_unit, warmup, duration, pid, profile_window(level))
        after = await run_phase(clients, _healthz_unit, warmup, duration, pid)
        ceilings = [len(phase.latencies) / duration for phase in (before, after)]
        ceiling_rps = sum(ceilings) / 2
        log(
            f"[{level:>3} clients] ceiling: {ceilings[0]:.1f} / {ceilings[1]:.1f} GET /healthz "
            f"per s before / after the flows (CPU: server {after.server_cpu:.0%}, "
            f"load generator {after.client_cpu:.0%}, other {after.other_cpu:.0%})"
        )
        noise = max(phase.other_cpu for phase in (before, flows, after))
        if noise > NOISY_CPU:
            log(
                f"[{level:>3} clients] warning: other processes used up to {noise:.0%} of a core "
                "during the measurement; the figures are disturbed"
            )
        checked = verify_samples(flows)
        lat = sorted(flows.latencies)
        flows_per_s = len(lat) / duration
        ratio = 3 * flows_per_s / ceiling_rps if ceiling_rps else math.nan
        log(
            f"[{level:>3} clients] flows: {len(lat)} in {duration:g} s = {flows_per_s:.1f}/s, "
            f"ratio {ratio:.3f} (CPU: server {flows.server_cpu:.0%}, load generator "
            f"{flows.client_cpu:.0%}, other {flows.other_cpu:.0%}); {checked} JWEs decrypted OK"
        )
        if process_died(server):
            raise BenchError(f"the KBS exited:\n{server.log_tail()}")
        line = {
            "clients": level,
            "flows_per_s": round(flows_per_s, 2),
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "ceiling_rps": round(ceiling_rps, 1),
            "ratio": round(ratio, 3),
            "server_cpu": round(flows.server_cpu, 2) if server.pid is not None else None,
            "rss_mib_before": rss_idle,
            "rss_mib_after": tree_rss_mib(server.pid),
        }
        print(json.dumps(line), flush=True)


def given_server(url: str, pid: int | None) -> Server:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url {url!r}: expected http://HOST:PORT (plain HTTP)")
    if parts.path not in ("", "/"):
        raise BenchError(f"--url {url!r}: give the KBS root, without a path")
    server = Server(parts.hostname, parts.port or 80, pid)
    if not _healthz_ok(server.host, server.port):
        raise BenchError(f"{url}/healthz does not answer 200")
    if pid is not None and not Path(f"/proc/{pid}").exists():
        raise BenchError(f"--server-pid {pid}: no such process")
    return server


def process_died(server: Server) -> bool:
    if server.process is not None:
        return server.process.poll() is not None
    return server.pid is not None and not Path(f"/proc/{server.pid}").exists()


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--clients wants integers like 1,32: {exc}") from exc
    if not levels or levels[0] < 1 or levels[-1] > MAX_CLIENTS:
        raise argparse.ArgumentTypeError(f"--clients must be between 1 and {MAX_CLIENTS}")
    return levels


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_DURATION_S:g}] seconds")
    return value


def print_profile(path: Path, limit: int = 40) -> None:
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--clients", type=_levels, default=[1, 32], help="concurrency levels (default 1,32)"
    )
    parser.add_argument(
        "--duration", type=_seconds, default=6.0, help="measuring window per phase, s (6)"
    )
    parser.add_argument("--warmup", type=_seconds, default=1.0, help="warm-up per phase, s (1)")
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="FILE",
        help="run the server under cProfile during the last flow window; write pstats to FILE",
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="measure this running KBS (plain HTTP, e.g. upstream's) instead of starting ours",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="with --url: the server's process, for its CPU and RSS (its children included)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        metavar="FILE",
        help="with --url: a Bearer token for seeding the resource and policy",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="our server's worker_count (default: the server's own, a worker per core)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="our server with Memory storage (one worker) instead of LocalFs",
    )
    parser.add_argument(
        "--redis-sessions",
        action="store_true",
        help="sessions in a throwaway redis-server instead of the sealed cookie",
    )
    args = parser.parse_args(argv)
    ours = (args.workers, args.profile_server, args.memory, args.redis_sessions)
    if args.url is not None and ours != (0, None, False, False):
        parser.error(
            "--workers, --memory, --redis-sessions and --profile-server apply to a server "
            "this bench starts"
        )
    if args.url is None and (args.server_pid is not None or args.admin_token_file is not None):
        parser.error("--server-pid and --admin-token-file need --url")
    if not 0 <= args.workers <= 64:
        parser.error("--workers must be from 0 (the server's default) to 64")
    if args.memory and (args.workers > 1 or args.redis_sessions):
        parser.error("--memory runs one worker with sessions sealed in the cookie")
    profile: Path | None = args.profile_server
    if profile is not None:
        profile = profile.resolve()

    def run() -> None:
        token = None
        if args.admin_token_file is not None:
            token = args.admin_token_file.read_text().strip()
        with ExitStack() as stack:
            if args.url is not None:
                server = given_server(args.url, args.server_pid)
            else:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="trustee-bench-"))
                server = stack.enter_context(
                    running_server(
                        Path(tmp),
                        profile,
                        workers=1 if args.memory else args.workers,
                        local_fs=not args.memory,
                        redis_sessions=args.redis_sessions,
                    )
                )
            trio.run(bench, server, args.clients, args.warmup, args.duration, bool(profile), token)

    code = exit_code(run)
    if code == 0 and profile is not None:
        print_profile(profile)
    return code


def exit_code(run: Callable[[], object]) -> int:
    """Run a bench; every failure ends it with one line per cause on stderr and exit code 1."""
    try:
        run()
    except OSError as exc:
        log(f"bench failed: {exc}")
        return 1
    except (BenchError, TransportError, ExceptionGroup) as exc:
        for leaf in _leaves(exc):
            log(f"bench failed: {type(leaf).__name__}: {leaf}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
