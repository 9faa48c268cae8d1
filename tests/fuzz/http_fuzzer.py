"""Raw-socket HTTP fuzzer against a running KBS (or one it starts itself).

    python -m tests.fuzz.http_fuzzer --duration 600 [--url http://127.0.0.1:PORT | --start]
        [--seed N] [--workers N] [--connections N] [--only KIND,...] [--replay KIND:SEED]

Many concurrent connections send a weighted mix of valid guest flows (auth → attest →
resource with the sample TEE, every protocol generation), abort sequences (a huge
Content-Length, a few bytes, then FIN or RST at random moments, also right as the answer
arrives), pipelined and malformed requests, broken chunked encodings, slow heads and bodies,
bodies around the payload limit, deeply nested and hostile JSON, random bytes and admin calls
with bad tokens. It counts answers by status, logs every 5xx with the request that caused it
and a replay command, and watches the server's process tree: a worker pid that disappears is a
death even if a supervisor replaces it. At the end /healthz must answer within 100 ms.

Exit status 0 only without 5xx (503 load shedding excepted), worker deaths, admin requests
accepted with a bad token, or a slow /healthz; the last line printed is a JSON summary.

`--workers N` (with --start) runs `worker_count = N` with Redis sessions and LocalFs storage
(needs redis-server); the default is one process with in-memory storage.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.e2e.configs import admin_section
from tests.fuzz import bodies
from tests.fuzz.bodies import FUZZ_GENERATIONS, dump, mutate, nested, random_value
from tests.fuzz.procwatch import Death, ProcessWatch, server_root
from tests.fuzz.wire import Answer, Closed, Conn, Garbled
from trustee.client.kbs import GENERATIONS

MIB = 1024 * 1024
CASE_TIMEOUT = 20.0  # no single case may take longer; it is counted as a timeout then
READ_TIMEOUT = 8.0  # how long an answer may take once the request is complete
HEALTHZ_BUDGET = 0.1
MAX_FAILURES_KEPT = 25
SECRET_PATH = "fuzz/guest/secret"
SECRET = b"fuzz-secret"


# ------------------------------------------------------------------------------ what we count


@dataclass
class Stats:
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    shed: int = 0
    not_implemented: int = 0  # 501 for a transfer coding the server does not implement
    server_errors: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    conn_errors: Counter[str] = field(default_factory=Counter)
    timeouts: Counter[str] = field(default_factory=Counter)
    flows: Counter[str] = field(default_factory=Counter)
    flow_failures: list[dict[str, Any]] = field(default_factory=list)
    admin_bypass: list[dict[str, Any]] = field(default_factory=list)
    fuzzer_errors: int = 0


def preview(data: bytes, limit: int = 400) -> str:
    text = repr(data[:limit])
    return text if len(data) <= limit else f"{text}…(+{len(data) - limit} bytes)"


def is_shed(answer: Answer) -> bool:
    """A 503 from a connection cap is load shedding, not a failure."""
    return answer.status == 503 and (answer.header("retry-after") is not None or not answer.body)


def unknown_transfer_coding(sent: bytes) -> bool:
    """Whether the request's Transfer-Encoding is anything but one plain `chunked`: RFC 9112
    §6.1 asks a server to answer such a request with 501, so that 501 is no failure."""
    head = sent.split(b"\r\n\r\n", 1)[0].lower()
    codings = [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")[1:]
        if line.startswith(b"transfer-encoding:")
    ]
    return bool(codings) and codings != [b"chunked"]


@dataclass
class Recorder:
    """Counts the answers of one case and keeps a repro for each that must not happen."""

    fuzzer: Fuzzer
    kind: str
    seed: int

    @property
    def replay(self) -> str:
        url, case = self.fuzzer.url, f"{self.kind}:{self.seed}"
        return f"python -m tests.fuzz.http_fuzzer --url {url} --replay {case}"

    def answer(self, sent: bytes, answer: Answer, *, admin_bad_token: bool = False) -> None:
        stats = self.fuzzer.stats
        stats.statuses[str(answer.status)] += 1
        if answer.status >= 500:
            if is_shed(answer):
                stats.shed += 1
                return
            if answer.status == 501 and unknown_transfer_coding(sent):
                stats.not_implemented += 1
                return
            stats.server_errors += 1
            self._keep(stats.failures, "5xx", sent, answer)
        elif admin_bad_token and answer.status < 300 and self.fuzzer.target.admin_enforced:
            self._keep(stats.admin_bypass, "admin request accepted with a bad token", sent, answer)

    def _keep(self, into: list[dict[str, Any]], what: str, sent: bytes, answer: Answer) -> None:
        repro = {
            "what": what,
            "case": self.kind,
            "seed": self.seed,
            "status": answer.status,
            "request": preview(sent),
            "request_bytes": len(sent),
            "answer": preview(answer.body, 200),
            "replay": self.replay,
        }
        self.fuzzer.say(f"FUZZ {what}: {json.dumps(repro)}")
        repro_dir = self.fuzzer.repro_dir
        if len(into) < MAX_FAILURES_KEPT:
            if repro_dir is not None:
                path = repro_dir / f"{self.kind}-{self.seed}-{answer.status}.bin"
                path.write_bytes(sent)
                repro["file"] = str(path)
            into.append(repro)

    def error(self, exc: BaseException, expected: bool = False) -> None:
        if not expected:
            self.fuzzer.stats.conn_errors[f"{self.kind}:{type(exc).__name__}"] += 1


# ------------------------------------------------------------------------------ raw requests


def http_request(
    method: str,
    target: str,
    body: bytes | None = None,
    headers: list[tuple[str, str]] | None = None,
    version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    lines = [f"{method} {target} {version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body is not None and content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + (body or b"")


def json_headers(cookie: str | None = None, token: str | None = None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/json")]
    if cookie:
        headers.append(("Cookie", f"kbs-session-id={cookie}"))
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return headers


def session_cookie(answer: Answer) -> str | None:
    for name, value in answer.headers:
        if name.lower() == "set-cookie" and value.startswith("kbs-session-id="):
            return value.split(";", 1)[0].split("=", 1)[1]
    return None


# ------------------------------------------------------------------------------ the fuzzer


@dataclass
class Target:
    host: str
    port: int
    parent_pid: int | None = None
    expected_workers: int = 0  # worker children of the parent; 0 when the parent serves
    mint_admin_token: Callable[..., str] | None = None  # signs admin JWTs the server trusts
    admin_token: str | None = None
    admin_enforced: bool = False  # whether a request with a bad token must be refused
    payload_limit: int = 2 * MIB
    log_path: Path | None = None


Case = Callable[[random.Random, Recorder], Awaitable[None]]


class Fuzzer:
    def __init__(
        self,
        target: Target,
        *,
        seed: int,
        connections: int = 16,
        only: list[str] | None = None,
        repro_dir: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.url = f"http://{target.host}:{target.port}"
        self.seed = seed
        self.connections = connections
        self.repro_dir = repro_dir
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.stats = Stats()
        self.in_flight: dict[int, str] = {}
        self.watch: ProcessWatch | None = None
        self._next_case_id = 0
        self.cases: dict[str, tuple[int, Case]] = {
            "valid_flow": (14, self.valid_flow),
            "abort": (12, self.abort),
            "abort_burst": (3, self.abort_burst),
            "pipelined": (8, self.pipelined),
            "malformed_head": (12, self.malformed_head),
            "chunked": (7, self.chunked),
            "slow": (4, self.slow),
            "huge_body": (3, self.huge_body),
            "deep_json": (5, self.deep_json),
            "random_bytes": (4, self.random_bytes),
            "random_json": (14, self.random_json),
            "admin_bad_token": (6, self.admin_bad_token),
            "plain_get": (2, self.plain_get),
        }
        if only:
            unknown = set(only) - set(self.cases)
            if unknown:
                raise ValueError(f"unknown case kinds: {', '.join(sorted(unknown))}")
            self.cases = {k: v for k, v in self.cases.items() if k in only}
        self._admin_token: str | None = target.admin_token
        self._bad_tokens: list[str] = []
        self._keys: dict[str, list[dict[str, Any]]] = {}

    # ---- set-up ------------------------------------------------------------------------------

    def prepare_keys(self) -> None:
        """TEE keys made once per generation (RSA generation is too slow to do per flow)."""
        for version in FUZZ_GENERATIONS:
            generation = GENERATIONS[version]
            self._keys[version] = [
                generation.tee_public_jwk(generation.generate_tee_key()) for _ in range(2)
            ]

    def prepare_tokens(self, lifetime: int) -> None:
        mint = self.target.mint_admin_token
        if mint is not None:
            self._admin_token = mint(lifetime=lifetime)
            good = self._admin_token
            middle = len(good) - 20  # inside the signature, away from its padding bits
            flipped = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
            self._bad_tokens = [
                mint(key=ed25519.Ed25519PrivateKey.generate()),
                mint(lifetime=-3600),
                mint(issuer="someone-else"),
                mint(role="nobody"),
                flipped,
            ]
        self._bad_tokens += [
            "",
            "x",
            "a.b.c",
            # alg "none", role admin, no signature
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJyb2xlIjoiYWRtaW4iLCJpc3MiOiJpc3N1ZXIifQ.",
            "A" * 200_000,
            "\u00e9\u00e9.\u00e9.\u00e9",
        ]

    async def prepare_server(self) -> None:
        """Store the secret the guest flows fetch and a policy that releases it."""
        headers = {"Authorization": f"Bearer {self._admin_token}"} if self._admin_token else {}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30) as http:
            r = await http.post(f"/kbs/v0/resource/{SECRET_PATH}", content=SECRET)
            if r.status_code != 200:
                self.say(f"FUZZ set-up: storing the secret answered {r.status_code}")
            r = await http.post("/kbs/v0/resource-policy", json=bodies.resource_policy_body())
            if r.status_code != 200:
                self.say(f"FUZZ set-up: setting the resource policy answered {r.status_code}")

    # ---- running -----------------------------------------------------------------------------

    async def run(self, duration: float) -> dict[str, Any]:
        started = time.monotonic()
        self.prepare_keys()
        self.prepare_tokens(int(duration) + 3600)
        await self.prepare_server()
        if self.target.parent_pid is not None:
            self.watch = ProcessWatch(self.target.parent_pid)
            self.watch.settle(self.target.expected_workers)
        master = random.Random(self.seed)
        kinds = list(self.cases)
        weights = [self.cases[k][0] for k in kinds]
        async with trio.open_nursery() as nursery:
            if self.watch is not None:
                nursery.start_soon(self.watch.run, self.in_flight, self._report_death)
            with trio.move_on_after(duration):
                async with trio.open_nursery() as loaders:
                    for _ in range(self.connections):
                        loaders.start_soon(
                            self._loader, random.Random(master.getrandbits(64)), kinds, weights
                        )
            # Let the watcher see what the last requests did before judging.
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        if self.watch is not None:
            self.watch.poll([])
        healthz = await self.check_healthz()
        return self.summary(time.monotonic() - started, healthz)

    async def _loader(self, rng: random.Random, kinds: list[str], weights: list[int]) -> None:
        # Bounded by the caller's deadline; each case is bounded by CASE_TIMEOUT.
        while self.watch is None or not self.watch.parent_dead:
            kind = rng.choices(kinds, weights)[0]
            await self.run_case(kind, rng.getrandbits(32))
            await trio.sleep(0)
        # The server is gone: nothing more to learn, and the verdict is already failed.

    async def run_case(self, kind: str, seed: int) -> None:
        self.stats.cases[kind] += 1
        case_id = self._next_case_id
        self._next_case_id += 1
        self.in_flight[case_id] = f"{kind}:{seed}"
        rec = Recorder(self, kind, seed)
        try:
            with trio.move_on_after(CASE_TIMEOUT) as scope:
                await self.cases[kind][1](random.Random(seed), rec)
            if scope.cancelled_caught:
                self.stats.timeouts[kind] += 1
        except (
            Closed,
            Garbled,
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as exc:
            rec.error(exc)
            if isinstance(exc, OSError):
                await trio.sleep(0.02)  # a refused connect must not turn into a busy loop
        except Exception:
            # A bug of the fuzzer itself: visible and failing the run, but not ending it.
            self.stats.fuzzer_errors += 1
            self.say(f"FUZZ internal error in {kind}:{seed}\n{traceback.format_exc()}")
        finally:
            del self.in_flight[case_id]

    def _report_death(self, death: Death) -> None:
        self.say(
            f"FUZZ {death.role} {death.pid} died after {death.at:.1f} s; cases in flight "
            f"(replay with --replay KIND:SEED): {', '.join(death.in_flight) or 'none'}"
        )

    async def check_healthz(self) -> dict[str, Any]:
        """Three probes on fresh connections; all must answer 200, the best within 100 ms
        (the best of three, because other work on a shared machine can delay any one)."""
        times: list[float] = []
        statuses: list[int | str] = []
        for _ in range(3):
            began = time.perf_counter()
            try:
                with trio.fail_after(5):
                    conn = await Conn.open(self.target.host, self.target.port)
                    await conn.send(http_request("GET", "/healthz"))
                    answer = await conn.read_answer()
                    await conn.close()
                statuses.append(answer.status)
            except (Closed, Garbled, OSError, trio.TooSlowError) as exc:
                statuses.append(type(exc).__name__)
            times.append(time.perf_counter() - began)
            await trio.sleep(0.05)
        ok = all(s == 200 for s in statuses) and min(times) <= HEALTHZ_BUDGET
        return {"ok": ok, "statuses": statuses, "ms": [round(t * 1000, 1) for t in times]}

    def guests_served(self) -> bool:
        """Whether valid guests still got their secret: a KBS that refuses every guest has
        been taken down as surely as one that crashed. Single failed flows are only reported:
        fuzzed admin writes (reference values, policies) may legitimately refuse one."""
        tried = sum(self.stats.flows.values())
        return tried == 0 or any(k.endswith(":ok") for k in self.stats.flows)

    def summary(self, elapsed: float, healthz: dict[str, Any]) -> dict[str, Any]:
        s = self.stats
        classes = Counter(f"{k[0]}xx" for k, n in s.statuses.items() for _ in range(n))
        deaths = [d.__dict__ for d in self.watch.deaths] if self.watch else []
        ok = s.server_errors == 0 and not deaths and healthz["ok"] and not s.admin_bypass
        return {
            "ok": ok,
            "seed": self.seed,
            "seconds": round(elapsed, 1),
            "cases": dict(s.cases),
            "answers": sum(s.statuses.values()),
            "status_classes": dict(classes),
            "statuses": dict(s.statuses),
            "shed_503": s.shed,
            "unknown_transfer_coding_501": s.not_implemented,
            "server_errors": s.server_errors,
            "failures": s.failures,
            "worker_deaths": deaths,
            "worker_restarts": self.watch.restarts if self.watch else 0,
            "admin_bypass": s.admin_bypass,
            "conn_errors": dict(s.conn_errors),
            "timeouts": dict(s.timeouts),
            "flows": dict(s.flows),
            "flow_failures": s.flow_failures,
            "healthz": healthz,
            "fuzzer_errors": s.fuzzer_errors,
        }

    # ---- helpers -------------------------------------------------------------------------------

    async def connect(self) -> Conn:
        return await Conn.open(self.target.host, self.target.port)

    async def exchange(
        self,
        rec: Recorder,
        data: bytes,
        conn: Conn | None = None,
        *,
        bodiless: bool = False,
        admin_bad_token: bool = False,
    ) -> Answer | None:
        """Send one request, read one answer, record it; None when the connection broke."""
        own = conn is None
        if conn is None:
            conn = await self.connect()
        try:
            await conn.send(data)
            with trio.fail_after(READ_TIMEOUT):
                answer = await conn.read_answer(bodiless)
        except trio.TooSlowError:
            self.stats.timeouts[rec.kind] += 1
            return None
        except (Closed, Garbled, OSError, trio.BrokenResourceError) as exc:
            rec.error(exc)
            return None
        finally:
            if own:
                await conn.close()
        rec.answer(data, answer, admin_bad_token=admin_bad_token)
        return answer

    async def read_all(self, rec: Recorder, conn: Conn, sent: bytes, limit: int) -> int:
        """Read up to `limit` answers until the server closes; how many arrived."""
        got = 0
        try:
            for _ in range(limit):
                with trio.fail_after(READ_TIMEOUT):
                    answer = await conn.read_answer()
                rec.answer(sent, answer)
                got += 1
                if answer.closes:
                    break
        except trio.TooSlowError:
            self.stats.timeouts[rec.kind] += 1
        except Closed:
            pass  # the server may close after an answer it could not follow with more
        except (Garbled, OSError, trio.BrokenResourceError) as exc:
            rec.error(exc)
        return got

    async def new_session(self, rec: Recorder, conn: Conn, version: str) -> tuple[str, str] | None:
        """(cookie, nonce) from a real /auth on `conn`."""
        body = dump(bodies.auth_body(version)).encode()
        answer = await self.exchange(
            rec, http_request("POST", "/kbs/v0/auth", body, json_headers()), conn
        )
        if answer is None or answer.status != 200:
            return None
        cookie = session_cookie(answer)
        try:
            nonce = json.loads(answer.body)["nonce"]
        except (ValueError, KeyError, TypeError):
            return None
        return (cookie, nonce) if cookie else None

    def admin_token(self) -> str | None:
        return self._admin_token

    def key(self, rng: random.Random, version: str) -> dict[str, Any]:
        return rng.choice(self._keys[version])

    # ---- cases ---------------------------------------------------------------------------------

    async def valid_flow(self, rng: random.Random, rec: Recorder) -> None:
        version = rng.choice(FUZZ_GENERATIONS)
        outcome: list[int | None] = []
        conn = await self.connect()
        try:
            session = await self.new_session(rec, conn, version)
            outcome.append(200 if session else None)
            if session is not None:
                cookie, nonce = session
                body = dump(bodies.attest_body(version, nonce, self.key(rng, version))).encode()
                sent = http_request("POST", "/kbs/v0/attest", body, json_headers(cookie))
                attested = await self.exchange(rec, sent, conn)
                outcome.append(attested.status if attested else None)
                # A client keeps the cookie of the last answer: a sealed session's changes
                # at /attest.
                cookie = (session_cookie(attested) if attested else None) or cookie
                sent = http_request(
                    "GET", f"/kbs/v0/resource/{SECRET_PATH}", None, json_headers(cookie)[1:]
                )
                fetched = await self.exchange(rec, sent, conn)
                outcome.append(fetched.status if fetched else None)
                if attested is not None and attested.status == 200 and rng.random() < 0.3:
                    token = json.loads(attested.body)["token"]
                    sent = http_request(
                        "GET",
                        f"/kbs/v0/resource/{SECRET_PATH}",
                        None,
                        [("Authorization", f"Bearer {token}")],
                    )
                    bearer = await self.exchange(rec, sent)
                    outcome.append(bearer.status if bearer else None)
        finally:
            await conn.close()
        if outcome and all(s == 200 for s in outcome) and len(outcome) >= 3:
            self.stats.flows[f"{version}:ok"] += 1
        else:
            self.stats.flows[f"{version}:failed"] += 1
            if len(self.stats.flow_failures) < MAX_FAILURES_KEPT:
                self.stats.flow_failures.append(
                    {"version": version, "statuses": outcome, "replay": rec.replay}
                )

    async def abort(self, rng: random.Random, rec: Recorder) -> None:
        announced = rng.choice([100 * MIB, self.target.payload_limit + 1, 10**12, 2**63 - 1])
        path = rng.choice(
            ["/kbs/v0/auth", "/kbs/v0/attest", f"/kbs/v0/resource/{SECRET_PATH}",
             "/kbs/v0/resource-policy", "/kbs/v0/policy-explain", "/elsewhere"]
        )  # fmt: skip
        headers = [("Content-Type", "application/json"), ("Content-Length", str(announced))]
        if rng.random() < 0.3:
            headers.append(("Expect", "100-continue"))
        if rng.random() < 0.3 and self._admin_token:
            headers.append(("Authorization", f"Bearer {self._admin_token}"))
        head = http_request("POST", path, None, headers)
        data = head + rng.randbytes(rng.choice([0, 1, 1, 3, 100, 5000]))
        moment = rng.choice(["partial_head", "now", "delay", "on_answer", "on_answer", "after"])
        if moment == "partial_head":
            data = head[: rng.randrange(1, len(head))]
        conn = await self.connect()
        try:
            await conn.send(data)
            if moment == "delay":
                await trio.sleep(rng.uniform(0, 0.3))
            elif moment == "on_answer":
                with trio.move_on_after(READ_TIMEOUT):
                    await conn.wait_first_byte()
            elif moment == "after":
                with trio.move_on_after(READ_TIMEOUT):
                    rec.answer(data, await conn.read_answer())
                    await conn.send(rng.randbytes(1000))
        except (Closed, Garbled, OSError, trio.BrokenResourceError) as exc:
            rec.error(exc, expected=True)
        finally:
            await self.hang_up(rng, conn)

    async def hang_up(self, rng: random.Random, conn: Conn) -> None:
        how = rng.choice(["close", "reset", "reset", "half"])
        if how == "half":
            await conn.shutdown_write()
            with trio.move_on_after(0.5):
                with suppress(Closed):
                    await conn.wait_first_byte()
        if how == "reset":
            await conn.reset()
        else:
            await conn.close()

    async def abort_burst(self, rng: random.Random, rec: Recorder) -> None:
        """The crash pattern: ten connections announce 100 MiB, send a byte, and hang up as
        the 413 arrives."""

        async def one(rng: random.Random) -> None:
            head = http_request("POST", "/kbs/v0/auth", None, [("Content-Length", str(100 * MIB))])
            try:
                conn = await self.connect()
            except OSError as exc:
                rec.error(exc)
                return
            try:
                await conn.send(head + b"{")
                with trio.move_on_after(READ_TIMEOUT):
                    await conn.wait_first_byte()
            except (Closed, OSError, trio.BrokenResourceError) as exc:
                rec.error(exc, expected=True)
            finally:
                if rng.random() < 0.5:
                    await conn.reset()
                else:
                    await conn.close()

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(one, random.Random(rng.getrandbits(32)))

    def some_request(self, rng: random.Random, malformed: bool) -> bytes:
        if not malformed:
            version = rng.choice(FUZZ_GENERATIONS)
            return rng.choice(
                [
                    http_request("GET", "/healthz"),
                    http_request("GET", f"/kbs/v0/resource/{SECRET_PATH}"),
                    http_request(
                        "POST", "/kbs/v0/auth", dump(bodies.auth_body(version)).encode(),
                        json_headers(),
                    ),
                    http_request("GET", "/kbs/v0/resource-policy"),
                    http_request("POST", "/kbs/v0/attest", b"{}", json_headers()),
                ]
            )  # fmt: skip
        return rng.choice(
            [
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}",
                b"BOGUS\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
                b"GET /healthz HTTP/9.9\r\n\r\n",
                b"\r\n\r\n\r\n",
                b"POST /kbs/v0/auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\n",
                self.malformed_bytes(rng),
            ]
        )

    async def pipelined(self, rng: random.Random, rec: Recorder) -> None:
        count = rng.randint(2, 8)
        parts = [self.some_request(rng, malformed=rng.random() < 0.3) for _ in range(count)]
        data = b"".join(parts)
        conn = await self.connect()
        try:
            if rng.random() < 0.3:
                await conn.send_slowly(data, rng.randint(2, 10), 0.01)
            else:
                await conn.send(data)
            await self.read_all(rec, conn, data, count)
        except (OSError, trio.BrokenResourceError) as exc:
            rec.error(exc, expected=True)  # the server may close on a malformed request
        finally:
            await conn.close()

    def malformed_bytes(self, rng: random.Random) -> bytes:
        """One request with one to three things wrong with its head."""
        method = "POST"
        target = rng.choice(
            ["/kbs/v0/auth", "/kbs/v0/attest", f"/kbs/v0/resource/{SECRET_PATH}",
             "/kbs/v0/resource-policy", "/healthz", "/metrics"]
        )  # fmt: skip
        version = "HTTP/1.1"
        body = dump(bodies.auth_body()).encode()
        headers = [("Content-Type", "application/json")]
        host = True
        content_length: str | None = str(len(body))
        for _ in range(rng.randint(1, 3)):
            what = rng.randrange(9)
            if what == 0:
                method = rng.choice(
                    ["GE T", "get", "G\x00T", "PATCH", "CONNECT", "TRACE", "OPTIONS", "HEAD",
                     "BREW", "X" * 5000, "", "PRI", "POST\t"]
                )  # fmt: skip
            elif what == 1:
                target = rng.choice(
                    ["*", "http://elsewhere/kbs/v0/auth", "/kbs/v0/../../etc/passwd",
                     "/kbs/v0/resource/%2e%2e/%2e%2e/x", "/kbs/v0/resource/a/b/c?x=%ff%fe&x",
                     "/kbs/v0/resource/" + "a/" * 3000, "/kbs/v0/\x00", "/kbs/v0/\xff\xfe",
                     "/kbs/v0/resource/" + "%" * 50, "/" + "x" * 100_000, "", "kbs/v0/auth",
                     "/kbs/v0/resource/a/b/c#frag", "/kbs/v0//auth",
                     "/kbs/v0/auth?" + "a=1&" * 5000]
                )  # fmt: skip
            elif what == 2:
                version = rng.choice(
                    ["HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1x", "HTTP/1", "HTTPS/1.1",
                     "http/1.1", "", "HTTP/1.1 extra", "HTTP/01.1"]
                )  # fmt: skip
            elif what == 3:
                headers.append(rng.choice(
                    [("X-Big", "v" * rng.choice([8000, 70_000, 300_000])),
                     ("Bad Header", "1"), ("X\x00Y", "1"), ("", "empty-name"),
                     ("X-Ctl", "a\x00b\x7fc"), ("X-Fold", "a\r\n folded"),
                     ("X-Request-Id", "a\r\nSet-Cookie: kbs-session-id=injected"),
                     ("X-Bare", "a\rb"), ("X-Request-Id", "\u00e9" * 200),
                     ("Cookie", "kbs-session-id=" + "z" * 10_000),
                     ("Cookie", "kbs-session-id=\"\\x\"; kbs-session-id=; ;;="),
                     ("Cookie", ";".join(f"c{i}=v" for i in range(2000))),
                     ("Authorization", "Bearer " + "A" * 200_000),
                     ("Authorization", "Bearer a.b.c"), ("Content-Type", "\x00/\x00"),
                     ("Expect", "100-continue"), ("Expect", "bogus"), ("Connection", "Upgrade"),
                     ("Upgrade", "h2c"), ("Upgrade", "websocket")]
                ))  # fmt: skip
            elif what == 4:
                headers += [(f"X-H{i}", "v") for i in range(rng.choice([200, 2000, 20_000]))]
            elif what == 5:
                content_length = rng.choice(
                    ["-1", "abc", "1e3", " 5", "+5", "0x10", "99999999999999999999999", "",
                     "5, 5", "5,6", str(len(body) + 10), "0"]
                )  # fmt: skip
            elif what == 6:
                host = rng.choice([False, True])
                headers.append(("Host", rng.choice(["a", "b:99999", "", "\x00"])))
            elif what == 7:
                body = rng.randbytes(rng.randint(0, 300))
            else:
                headers.append(("Content-Length", str(rng.randint(0, 50))))
        eol = "\n" if rng.random() < 0.1 else "\r\n"
        lines = [f"{method} {target} {version}".rstrip()]
        if host:
            lines.append("Host: 127.0.0.1")
        if content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        lines += [f"{k}: {v}" for k, v in headers]
        return (eol.join(lines) + eol + eol).encode("utf-8", "surrogateescape") + body

    async def one_shot(
        self, rng: random.Random, rec: Recorder, data: bytes, half_close: float = 0.5
    ) -> None:
        """Send `data` on a new connection, maybe half-close, read one answer, hang up."""
        conn = await self.connect()
        try:
            await conn.send(data)
            # A Content-Length or chunk that promises more than was sent leaves the server
            # waiting: half-close so it sees the end.
            if rng.random() < half_close:
                await conn.shutdown_write()
            with trio.fail_after(READ_TIMEOUT):
                rec.answer(data, await conn.read_answer(bodiless=data.startswith(b"HEAD ")))
        except trio.TooSlowError:
            self.stats.timeouts[rec.kind] += 1
        except (Closed, OSError, trio.BrokenResourceError) as exc:
            rec.error(exc, expected=True)  # closing on a malformed request is a fine answer
        finally:
            await self.hang_up(rng, conn)

    async def malformed_head(self, rng: random.Random, rec: Recorder) -> None:
        await self.one_shot(rng, rec, self.malformed_bytes(rng))

    async def chunked(self, rng: random.Random, rec: Recorder) -> None:
        body = dump(bodies.auth_body()).encode()
        good = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        chunks = rng.choice(
            [
                good,
                good.replace(b"\r\n0\r\n\r\n", b"\r\n0\r\nX-Trailer: 1\r\n\r\n"),
                f'{len(body):x};ext=1;e2="q"\r\n'.encode() + body + b"\r\n0\r\n\r\n",
                b"zz\r\n" + body + b"\r\n0\r\n\r\n",
                b"-1\r\n" + body + b"\r\n0\r\n\r\n",
                b"ffffffffffffffffffff\r\n" + body,
                b"7fffffff\r\n" + body,
                f"{len(body):x}\r\n".encode() + body + b"0\r\n\r\n",  # missing CRLF
                f"{len(body) + 5:x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
                f"{len(body):x}\r\n".encode() + body + b"\r\n",  # no last chunk
                b"0\r\n",
                b"1\r\n{\r\n" * 2000 + b"0\r\n\r\n",
                b"  5\r\n" + body[:5] + b"\r\n0\r\n\r\n",
                f"{len(body):X}\n".encode() + body + b"\n0\n\n",
            ]
        )
        te = rng.choice(
            ["chunked", "chunked", "Chunked", "chunked, identity", "gzip, chunked", "xchunked",
             " chunked", "chunked\x00", "identity"]
        )  # fmt: skip
        headers = [("Content-Type", "application/json"), ("Transfer-Encoding", te)]
        if rng.random() < 0.3:
            headers.append(("Content-Length", str(rng.choice([len(body), 3, 0, 10**9]))))
        if rng.random() < 0.15:
            headers.append(("Transfer-Encoding", "chunked"))
        path = rng.choice(["/kbs/v0/auth", "/kbs/v0/attest", "/kbs/v0/resource-policy"])
        await self.one_shot(rng, rec, http_request("POST", path, None, headers) + chunks)

    async def slow(self, rng: random.Random, rec: Recorder) -> None:
        version = rng.choice(FUZZ_GENERATIONS)
        body = dump(bodies.auth_body(version)).encode()
        data = http_request("POST", "/kbs/v0/auth", body, json_headers())
        head_len = data.index(b"\r\n\r\n") + 4
        conn = await self.connect()
        try:
            if rng.random() < 0.5:  # slow head
                await conn.send_slowly(data[:head_len], rng.randint(5, 40), rng.uniform(0.01, 0.08))
                await conn.send(data[head_len:])
            else:  # slow body
                await conn.send(data[:head_len])
                await conn.send_slowly(data[head_len:], rng.randint(5, 40), rng.uniform(0.01, 0.08))
            if rng.random() < 0.2:
                await self.hang_up(rng, conn)  # gave up before the answer
                return
            with trio.fail_after(READ_TIMEOUT):
                rec.answer(data, await conn.read_answer())
        except trio.TooSlowError:
            self.stats.timeouts[rec.kind] += 1
        finally:
            await conn.close()

    async def huge_body(self, rng: random.Random, rec: Recorder) -> None:
        limit = self.target.payload_limit
        size = rng.choice([limit - 1, limit, limit + 1, 2 * limit])
        version = rng.choice(FUZZ_GENERATIONS)
        shape = rng.randrange(3)
        if shape == 0:  # a valid /auth body padded with insignificant whitespace
            core = dump(bodies.auth_body(version)).encode()
            body = core[:-1] + b" " * max(0, size - len(core)) + b"}"
            path, token = "/kbs/v0/auth", None
        elif shape == 1:  # one long string member
            prefix = b'{"version":"0.4.0","tee":"sample","extra-params":"'
            body = prefix + b"A" * max(0, size - len(prefix) - 2) + b'"}'
            path, token = "/kbs/v0/auth", None
        else:  # a resource as large as allowed (admin)
            body = rng.randbytes(1024) * (size // 1024) + b"x" * (size % 1024)
            path, token = f"/kbs/v0/resource/fuzz/big/{rng.randrange(4)}", self._admin_token
        data = http_request("POST", path, body, json_headers(token=token))
        conn = await self.connect()
        try:
            # An early 413 and close breaks the send; its answer may still be in our buffer.
            with suppress(OSError, trio.BrokenResourceError):
                await conn.send(data)
            with trio.fail_after(READ_TIMEOUT * 2):
                rec.answer(data, await conn.read_answer())
        except trio.TooSlowError:
            self.stats.timeouts[rec.kind] += 1
        except (Closed, OSError, trio.BrokenResourceError) as exc:
            rec.error(exc, expected=len(body) > limit)
        finally:
            await conn.close()

    def endpoint_bodies(self, rng: random.Random) -> list[tuple[str, str, Any, bool]]:
        """(method, path, valid body, needs admin) for every endpoint but /attest."""
        return [
            ("POST", "/kbs/v0/auth", bodies.auth_body(rng.choice(FUZZ_GENERATIONS)), False),
            ("GET", f"/kbs/v0/resource/{SECRET_PATH}", None, False),
            ("POST", f"/kbs/v0/resource/fuzz/random/{rng.randrange(8)}", None, True),
            ("DELETE", f"/kbs/v0/resource/fuzz/random/{rng.randrange(8)}", None, True),
            ("POST", "/kbs/v0/resource-policy", bodies.resource_policy_body(), True),
            ("GET", "/kbs/v0/resource-policy", None, True),
            ("POST", "/kbs/v0/attestation-policy", bodies.attestation_policy_body(), True),
            ("POST", "/kbs/v0/reference-value", bodies.reference_value_body(), True),
            ("GET", "/kbs/v0/reference-value/fuzz-svn", None, True),
            ("POST", "/kbs/v0/policy-explain",
             bodies.explain_body(rng.choice(["resource", "attestation"])), True),
            ("POST", "/kbs/v0/no-such-plugin/x", {}, False),
        ]  # fmt: skip

    async def deep_json(self, rng: random.Random, rec: Recorder) -> None:
        depth = rng.choice([100, 1000, 5000, 50_000, 200_000, self.target.payload_limit // 2 - 8])
        _method, path, valid, admin = rng.choice(self.endpoint_bodies(rng))
        key = rng.choice(list(valid)) if isinstance(valid, dict) and valid else None
        embed, shape = key is not None and rng.random() < 0.7, rng.getrandbits(32)
        for _ in range(2):  # a second pass only trims the depth to fit the payload limit
            deep = nested(depth, random.Random(shape))
            doc = {**valid, key: deep} if embed else deep
            body = dump(doc).encode()
            if len(body) <= self.target.payload_limit:
                break
            depth -= (len(body) - self.target.payload_limit) // 2 + 8
        token = self._admin_token if admin else None
        await self.exchange(rec, http_request("POST", path, body, json_headers(token=token)))

    async def random_bytes(self, rng: random.Random, rec: Recorder) -> None:
        data = rng.randbytes(rng.randint(1, 8192))
        if rng.random() < 0.5:
            data = (
                rng.choice([b"GET / HTTP/1.1\r\n", b"POST /kbs/v0/auth HTTP/1.1\r\n", b"G"]) + data
            )
        await self.one_shot(rng, rec, data, half_close=1.0)

    async def random_json(self, rng: random.Random, rec: Recorder) -> None:
        if rng.random() < 0.3:
            await self.fuzz_attest(rng, rec)
            return
        method, path, valid, admin = rng.choice(self.endpoint_bodies(rng))
        if rng.random() < 0.15:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
        roll = rng.random()
        if valid is None or roll < 0.2:
            doc: Any = random_value(rng, 4)
        else:
            doc = mutate(valid, rng, rng.randint(1, 3))
        body = dump(doc).encode()
        if roll > 0.9:
            body = body[: rng.randrange(len(body) + 1)]
        token = self._admin_token if admin and rng.random() < 0.8 else None
        await self.exchange(rec, http_request(method, path, body, json_headers(token=token)))

    async def fuzz_attest(self, rng: random.Random, rec: Recorder) -> None:
        version = rng.choice(FUZZ_GENERATIONS)
        conn = await self.connect()
        try:
            session = await self.new_session(rec, conn, version)
            if session is None:
                return
            cookie, nonce = session
            # The body of this or another generation, so shape mismatches are tried too.
            shape = version if rng.random() < 0.8 else rng.choice(FUZZ_GENERATIONS)
            valid = bodies.attest_body(shape, nonce, self.key(rng, shape))
            body = dump(mutate(valid, rng, rng.randint(1, 3))).encode()
            sent = http_request("POST", "/kbs/v0/attest", body, json_headers(cookie))
            await self.exchange(rec, sent, conn)
        finally:
            await conn.close()

    async def admin_bad_token(self, rng: random.Random, rec: Recorder) -> None:
        admin = [e for e in self.endpoint_bodies(rng) if e[3]]
        method, path, valid, _ = rng.choice(admin)
        body = dump(valid).encode() if valid is not None else b"payload"
        scheme = rng.choice(["Bearer", "Bearer", "Bearer", "Basic", "Token", "Bearer  "])
        token = rng.choice(self._bad_tokens)
        headers = [("Content-Type", "application/json")]
        if rng.random() < 0.85:
            headers.append(("Authorization", f"{scheme} {token}".rstrip()))
        sent = http_request(method, path, body, headers)
        await self.exchange(rec, sent, admin_bad_token=True)

    async def plain_get(self, rng: random.Random, rec: Recorder) -> None:
        path = rng.choice(["/healthz", "/metrics", "/", "/kbs/v0/", "/kbs/v0"])
        await self.exchange(rec, http_request("GET", path))


# ------------------------------------------------------------------------------ a server to fuzz


def config_text(pki_admin_public: Path, storage: Path, workers: int, redis_url: str | None) -> str:
    top = 'session_storage_type = "Redis"\n' if redis_url else ""
    redis = f'[storage_backend.backends.redis]\nurl = "{redis_url}"\n' if redis_url else ""
    storage_table = (
        f'[storage_backend]\nstorage_type = "LocalFs"\n'
        f'[storage_backend.backends.local_fs]\ndir_path = "{storage}"\n{redis}'
        if workers > 1
        else ""
    )
    admin = admin_section(
        pki_admin_public,
        role="admin",
        acl="^/kbs/v0/.*$",
        mode="AuthenticatedAuthorization",
        audience=False,
    )
    return f"""{top}
[http_server]
sockets = ["127.0.0.1:{{port}}"]
insecure_http = true
worker_count = {workers}

{admin}
[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

{storage_table}
[[plugins]]
name = "resource"
"""


@asynccontextmanager
async def started_server(workdir: Path, workers: int = 1) -> AsyncIterator[Target]:
    """A real KBS (the harness's `run_kbs`) with an admin API that checks tokens; more than
    one worker brings a throwaway redis-server for the shared sessions."""
    from tests.e2e.harness import run_kbs
    from tests.e2e.pki import make_pki
    from tests.support.receivers import REDIS_SERVER, RedisServer

    pki = make_pki(workdir / "pki")
    async with AsyncExitStack() as stack:
        redis_url = None
        if workers > 1:
            if REDIS_SERVER is None:
                raise RuntimeError("--workers > 1 needs redis-server (Debian package redis-server)")
            redis = RedisServer(workdir)
            await trio.to_thread.run_sync(redis.start)
            stack.callback(redis.stop)
            redis_url = redis.url()
        text = config_text(pki.admin_public, workdir / "storage", workers, redis_url)
        kbs = await stack.enter_async_context(run_kbs(text, workdir, name="fuzz-kbs"))
        yield Target(
            host="127.0.0.1",
            port=kbs.port,
            parent_pid=kbs.process.pid,
            expected_workers=workers if workers > 1 else 0,
            mint_admin_token=pki.admin_token,
            admin_enforced=True,
            log_path=kbs.log_path,
        )


def server_log_findings(log_path: Path | None) -> dict[str, int]:
    """Tracebacks and internal errors the server logged, for the summary."""
    if log_path is None or not log_path.exists():
        return {}
    text = log_path.read_text(errors="replace")
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "internal_errors": text.count("internal error while serving"),
    }


async def fuzz_target(
    target: Target,
    duration: float,
    seed: int,
    connections: int,
    only: list[str] | None = None,
    repro_dir: Path | None = None,
) -> dict[str, Any]:
    fuzzer = Fuzzer(target, seed=seed, connections=connections, only=only, repro_dir=repro_dir)
    summary = await fuzzer.run(duration)
    summary["server_log"] = server_log_findings(target.log_path)
    return summary


async def replay(target: Target, spec: str) -> dict[str, Any]:
    kind, _, seed = spec.partition(":")
    fuzzer = Fuzzer(target, seed=0, only=[kind])
    fuzzer.prepare_keys()
    fuzzer.prepare_tokens(3600)
    await fuzzer.prepare_server()
    if target.parent_pid is not None:
        fuzzer.watch = ProcessWatch(target.parent_pid)
        fuzzer.watch.settle(target.expected_workers)
    await fuzzer.run_case(kind, int(seed))
    await trio.sleep(0.5)
    if fuzzer.watch is not None:
        fuzzer.watch.poll([f"{kind}:{seed}"])
    return fuzzer.summary(0.0, await fuzzer.check_healthz())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.fuzz.http_fuzzer", description=__doc__.split("\n\n")[0]
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help="fuzz this running KBS (plain HTTP, loopback only)")
    where.add_argument("--start", action="store_true", help="start a KBS to fuzz (the default)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of fuzzing")
    p.add_argument("--seed", type=int, default=None, help="master seed (default: random)")
    p.add_argument("--workers", type=int, default=1, help="worker_count of the started KBS")
    p.add_argument("--connections", type=int, default=16, help="concurrent fuzzing connections")
    p.add_argument("--only", help="comma-separated case kinds to run")
    p.add_argument("--replay", metavar="KIND:SEED", help="run one logged case once")
    p.add_argument(
        "--pid", type=int, help="the server's parent pid (--url; default: found by port)"
    )
    p.add_argument("--admin-token-file", type=Path, help="admin token of the KBS (--url)")
    p.add_argument("--repro-dir", type=Path, help="save the raw bytes of each failing request")
    return p


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    only = args.only.split(",") if args.only else None
    if args.repro_dir is not None:
        args.repro_dir.mkdir(parents=True, exist_ok=True)
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("--url must be a plain-HTTP loopback address")
        port = parts.port or 80
        parent = args.pid or server_root(port)
        token = args.admin_token_file.read_text().strip() if args.admin_token_file else None
        target = Target(
            host=parts.hostname or "127.0.0.1",
            port=port,
            parent_pid=parent,
            expected_workers=0,
            admin_token=token,
            admin_enforced=token is not None,
        )
        if parent is not None:
            from tests.fuzz.procwatch import children, is_worker

            target.expected_workers = sum(1 for c in children(parent) if is_worker(c))
        if args.replay:
            return await replay(target, args.replay)
        return await fuzz_target(
            target, args.duration, seed, args.connections, only, args.repro_dir
        )
    with tempfile.TemporaryDirectory(prefix="trustee-fuzz-") as tmp:
        async with started_server(Path(tmp), args.workers) as target:
            print(f"FUZZ server at http://127.0.0.1:{target.port}, seed {seed}", file=sys.stderr)
            if args.replay:
                return await replay(target, args.replay)
            summary = await fuzz_target(
                target, args.duration, seed, args.connections, only, args.repro_dir
            )
            if not summary["ok"] and target.log_path is not None:
                kept = Path(tempfile.gettempdir()) / f"trustee-fuzz-{seed}.log"
                kept.write_bytes(target.log_path.read_bytes())
                summary["server_log"]["kept"] = str(kept)
            return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TRUSTEE_LOG", "info")
    summary = trio.run(_main, args)
    print(json.dumps(summary, default=str), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
