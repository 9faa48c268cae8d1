"""The load of one generator process: closed loop (N guests, each sending its next flow when the
last one ends) or open loop (flows sent on a fixed schedule, whatever is still in flight).

Open loop measures a flow from the time it was *meant* to start. Each scheduled flow gets its own
task and an idle guest (a new one when all are busy), so a server stall delays the answers, not
the sending, and the stall shows in the latencies instead of hiding in a smaller flow count
(coordinated omission).

`run_worker` reports once per second through a callback (the progress line, the timeline) and
returns its totals as plain data (histograms encoded), so worker processes can be merged.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from hdrh.histogram import HdrHistogram

from trustee.bench import histogram
from trustee.bench.flows import Checks, FlowFailure, FlowSpec, Guest, TokenChecker
from trustee.bench.http_conn import tls_context
from trustee.client.attesters import detect_attesters
from trustee.client.generations import GENERATIONS

KEY_POOL = 8  # TEE keys a process makes; guests share them (an RSA key takes a while to make)
MAX_MESSAGES = 1  # error messages kept per class


@dataclass
class WorkerSpec:
    flow: FlowSpec
    mode: str  # "closed" or "open"
    clients: int
    rate: float
    warmup: float
    duration: float
    start_at: float = 0.0  # time.monotonic() (system-wide) when the warm-up begins


@dataclass
class Tally:
    """What one process counted in the measuring window."""

    hist: HdrHistogram = field(default_factory=histogram.new)
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    checks: Checks = field(default_factory=Checks)
    seconds: dict[int, tuple[HdrHistogram, list[int]]] = field(default_factory=dict)

    def _second(self, index: int) -> tuple[HdrHistogram, list[int]]:
        if index not in self.seconds:
            self.seconds[index] = (histogram.new(), [0, 0])
        return self.seconds[index]

    def success(self, second: int, latency: float, checks: Checks) -> None:
        self.ok += 1
        self.checks.add(vars(checks))
        histogram.record(self.hist, latency)
        hist, counts = self._second(second)
        histogram.record(hist, latency)
        counts[0] += 1

    def failure(self, second: int, failure: FlowFailure) -> None:
        self.errors[failure.kind] = self.errors.get(failure.kind, 0) + 1
        self.checks.secret_mismatches += failure.secret_mismatch
        self.messages.setdefault(failure.kind, str(failure)[:300])
        self._second(second)[1][1] += 1

    def export(self) -> dict[str, Any]:
        return {
            "hist": histogram.encode(self.hist),
            "ok": self.ok,
            "errors": dict(self.errors),
            "messages": dict(self.messages),
            "checks": vars(self.checks).copy(),
            "seconds": {
                k: (histogram.encode(h), c[0], c[1]) for k, (h, c) in sorted(self.seconds.items())
            },
        }


class Guests:
    """The process's guests: made up front for a closed loop, on demand for an open one."""

    def __init__(self, spec: FlowSpec, keys: int = KEY_POOL) -> None:
        self.spec = spec
        self.generation = GENERATIONS[spec.protocol]
        self.attesters = detect_attesters(spec.attester_env)
        self.ssl = tls_context(spec.cert_file) if spec.tls else None
        # Made up front: an RSA key (protocol 0.1.x) takes long enough to delay a flow.
        self.keys = [self.generation.generate_tee_key() for _ in range(max(1, min(KEY_POOL, keys)))]
        self.idle: list[Guest] = []
        self.made: list[Guest] = []
        self.tokens = TokenChecker()

    def take(self) -> Guest:
        """An idle guest, or a new one when every guest is busy."""
        return self.idle.pop() if self.idle else self.new()

    def new(self) -> Guest:
        key = self.keys[len(self.made) % len(self.keys)]
        guest = Guest(self.spec, self.generation, self.attesters, key, self.ssl)
        self.made.append(guest)
        return guest

    async def aclose(self) -> None:
        for guest in self.made:
            await guest.aclose()


async def one_flow(guests: Guests, guest: Guest) -> tuple[float, Checks]:
    """Run and check one flow: its latency (without the checks) and what was checked; or
    FlowFailure."""
    checks = Checks()
    started = time.monotonic()
    try:
        with trio.fail_after(guests.spec.timeout_s):
            token, sealed = await guest.flow()
    except trio.TooSlowError:
        raise FlowFailure(
            "timeout", "flow", f"no answer within {guests.spec.timeout_s:g} s"
        ) from None
    latency = guest.answered - started
    guest.check(token, sealed, guests.tokens, checks)
    return latency, checks


async def preflight(spec: FlowSpec) -> None:
    """One full flow before any load: FlowFailure says what is wrong with the target."""
    guests = Guests(spec, keys=1)
    try:
        await one_flow(guests, guests.take())
    finally:
        await guests.aclose()


def make_guests(spec: WorkerSpec) -> Guests:
    """A worker's guests and keys, made before the start time is set (key generation is slow)."""
    guests = Guests(spec.flow, keys=spec.clients if spec.mode == "closed" else KEY_POOL)
    # One guest (and connection) per closed-loop client: `take` would hand back the idle one.
    guests.idle.extend(guests.new() for _ in range(spec.clients if spec.mode == "closed" else 0))
    return guests


async def run_worker(
    spec: WorkerSpec, report: Callable[[dict[str, Any]], None], guests: Guests | None = None
) -> dict[str, Any]:
    guests = make_guests(spec) if guests is None else guests
    tally = Tally()
    window = spec.start_at + spec.warmup
    end = window + spec.duration
    await trio.sleep_until(_trio_time(spec.start_at))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ticker, tally, spec.start_at, window, report)
            if spec.mode == "closed":
                async with trio.open_nursery() as clients:
                    for guest in list(guests.idle):
                        clients.start_soon(_closed_client, guests, guest, tally, window, end)
            else:
                await _open_schedule(guests, spec, tally, window, end)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await guests.aclose()
    return tally.export()


def _trio_time(monotonic: float) -> float:
    return trio.current_time() + (monotonic - time.monotonic())


async def _ticker(
    tally: Tally, start: float, window: float, report: Callable[[dict[str, Any]], None]
) -> None:
    """Once a second: elapsed (negative in the warm-up), counts, the last second's latencies."""
    for tick in itertools.count(1):
        await trio.sleep_until(_trio_time(start + tick))
        now = time.monotonic()
        last = tally.seconds.get(int(now - window) - 1)
        report(
            {
                "elapsed": now - window,
                "ok": tally.ok,
                "errors": sum(tally.errors.values()),
                "last": histogram.encode(last[0]) if last is not None else b"",
            }
        )


async def _closed_client(
    guests: Guests, guest: Guest, tally: Tally, window: float, end: float
) -> None:
    while time.monotonic() < end:
        try:
            latency, checks = await one_flow(guests, guest)
            finished = time.monotonic()
            if window <= finished <= end:
                tally.success(int(finished - window), latency, checks)
        except FlowFailure as failure:
            finished = time.monotonic()
            if window <= finished <= end:
                tally.failure(int(finished - window), failure)


async def _open_schedule(
    guests: Guests, spec: WorkerSpec, tally: Tally, window: float, end: float
) -> None:
    interval = 1.0 / spec.rate
    async with trio.open_nursery() as flows:
        for index in itertools.count():
            intended = spec.start_at + index * interval
            if intended >= end:
                break
            await trio.sleep_until(_trio_time(intended))
            flows.start_soon(_open_flow, guests, tally, intended, window)


async def _open_flow(guests: Guests, tally: Tally, intended: float, window: float) -> None:
    guest = guests.take()
    counted = intended >= window
    try:
        _, checks = await one_flow(guests, guest)
        if counted:
            # From the intended start, not the actual one: a late send is part of the latency.
            # (The checks ran after the answer; their time is left out.)
            tally.success(int(intended - window), guest.answered - intended, checks)
    except FlowFailure as failure:
        if counted:
            tally.failure(int(intended - window), failure)
    finally:
        guests.idle.append(guest)
