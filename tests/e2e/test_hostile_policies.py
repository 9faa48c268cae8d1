"""Hostile Rego policies against a real server: recursion is refused at upload and the policy in
force stays; a policy that runs too long or allocates too much denies the guest with a reason
naming the limit, while the server keeps answering `/healthz` promptly, during the
evaluation and after it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs
from trustee.client.attesters import detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY
from trustee.client.kbs import KbsClient, KbsClientError
from trustee.crypto.b64 import b64url_encode

SECRET_PATH = "default/test/secret"
SECRET = b"still here"
TIMEOUT_MS = 1000
MEMORY_MIB = 32
CONFIG = (
    DEV_CONFIG
    + f"\n[policy_engine]\nevaluation_timeout_ms = {TIMEOUT_MS}\n"
    + f"evaluation_memory_mib = {MEMORY_MIB}\n"
)
# An evaluation that held the event loop would hold `/healthz` for the whole time limit (1 s);
# the budget leaves room for a loaded CI machine and still catches that.
HEALTHZ_BUDGET_S = 0.35

# The same bodies serve as resource policy (`allow`) and attestation policy (`trust_claims`).
RECURSIVE = {
    "v0 function": "package policy\nf(x) { f(x) }\n{rule} = {value} { f(1) }\n",
    "v1 function": "package policy\nimport rego.v1\nf(x) if f(x)\n{rule} := {value} if f(1)\n",
    "rule through function": (
        "package policy\nimport rego.v1\ng(x) if {rule}\n{rule} := {value} if g(1)\n"
    ),
}
# ~2.5e7 iterations: seconds of work, stopped at the time limit.
SLOW = (
    "package policy\nimport rego.v1\n"
    "n := count([x | some x in numbers.range(1, 5000); some y in numbers.range(1, 5000); x == y])\n"
    "{rule} := {value} if n > 0\n"
)
HUGE = {
    "range": (
        "package policy\nimport rego.v1\n{rule} := {value} if count(numbers.range(1, 1e9)) > 0\n"
    ),
    "string doubling": (
        'package policy\nimport rego.v1\ns0 := "ab"\n'
        + "".join(f's{i} := concat("", [s{i - 1}, s{i - 1}])\n' for i in range(1, 40))
        + "{rule} := {value} if count(s39) > 0\n"
    ),
    "empty pattern": (
        "package policy\nimport rego.v1\n"
        's := concat("", ["x" | some _ in numbers.range(1, 100000)])\n'
        '{rule} := {value} if count(replace(s, "", s)) > 0\n'
    ),
}
RESOURCE = {"rule": "allow", "value": "true"}
ATTESTATION = {"rule": "trust_claims", "value": '{"hardware": 2, "executables": 3}'}


def fill(template: str, kind: dict[str, str]) -> str:
    return template.replace("{rule}", kind["rule"]).replace("{value}", kind["value"])


async def fetch(kbs: RunningKbs) -> bytes:
    async with KbsClient(kbs.url, attesters=detect_attesters({}), retry_delay=0) as guest:
        return await guest.get_resource(SECRET_PATH)


async def while_watching_healthz(kbs: RunningKbs, work: Callable[[], Awaitable[None]]) -> float:
    """Runs `work` while polling `/healthz`; the slowest answer seen, in seconds."""
    slowest = 0.0
    done = trio.Event()
    async with httpx.AsyncClient(base_url=kbs.url, timeout=5) as http:

        async def poll() -> None:
            nonlocal slowest
            while not done.is_set():
                started = time.monotonic()
                r = await http.get("/healthz")
                assert r.status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                await trio.sleep(0.02)

        async def run() -> None:
            try:
                await work()
            finally:
                done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            nursery.start_soon(run)
    return slowest


async def expect_denied(kbs: RunningKbs, *needles: str) -> None:
    reason = ""

    async def work() -> None:
        nonlocal reason
        with pytest.raises(KbsClientError) as caught:
            await fetch(kbs)
        reason = caught.value.message

    slowest = await while_watching_healthz(kbs, work)
    for needle in needles:
        assert needle in reason or needle in kbs.log_text(), (needle, reason)
    assert slowest < HEALTHZ_BUDGET_S, f"/healthz took {slowest * 1000:.0f} ms"
    assert kbs.alive
    async with httpx.AsyncClient(base_url=kbs.url, timeout=5) as http:
        started = time.monotonic()
        assert (await http.get("/healthz")).status_code == 200
        assert time.monotonic() - started < HEALTHZ_BUDGET_S


async def hostile_round(
    kbs: RunningKbs, set_policy: Callable[[str], Awaitable[None]], kind: dict[str, str], who: str
) -> None:
    """Recursion refused at upload (the policy in force stays), then time and memory limits."""
    for name, template in RECURSIVE.items():
        with pytest.raises(KbsClientError, match="recursion is not allowed"):
            await set_policy(fill(template, kind))
        assert await fetch(kbs) == SECRET, name
    await set_policy(fill(SLOW, kind))
    await expect_denied(kbs, f"time limit of {TIMEOUT_MS} ms", who)
    for template in HUGE.values():
        await set_policy(fill(template, kind))
        await expect_denied(kbs, f"memory limit of {MEMORY_MIB} MiB", who)


async def test_hostile_resource_policies(tmp_path: Path) -> None:
    async with run_kbs(CONFIG, tmp_path) as kbs, KbsClient(kbs.url) as admin:
        await admin.set_resource(SECRET_PATH, SECRET)
        await admin.set_resource_policy(ALLOW_ALL_POLICY)
        await hostile_round(kbs, admin.set_resource_policy, RESOURCE, "resource policy ")
        await admin.set_resource_policy(ALLOW_ALL_POLICY)
        assert await fetch(kbs) == SECRET


async def test_hostile_attestation_policies(tmp_path: Path) -> None:
    async with run_kbs(CONFIG, tmp_path) as kbs, KbsClient(kbs.url) as admin:
        await admin.set_resource(SECRET_PATH, SECRET)
        await admin.set_resource_policy(ALLOW_ALL_POLICY)

        async def set_cpu_policy(text: str) -> None:
            await admin.set_attestation_policy(text, policy_id="default_cpu")

        await hostile_round(kbs, set_cpu_policy, ATTESTATION, "default_cpu")


async def test_hostile_policy_explain_keeps_the_server_answering(tmp_path: Path) -> None:
    """The admin's try-before-you-set endpoint runs the candidate under the same limits, off the
    event loop."""
    async with run_kbs(CONFIG, tmp_path) as kbs:
        answers: list[httpx.Response] = []

        async def explain(policy: str) -> None:
            body = {"kind": "resource", "policy": b64url_encode(policy.encode()), "input": {}}
            async with httpx.AsyncClient(base_url=kbs.url, timeout=30) as http:
                answers.append(await http.post("/kbs/v0/policy-explain", json=body))

        for template, needle in [
            (SLOW, f"time limit of {TIMEOUT_MS} ms"),
            (HUGE["string doubling"], f"memory limit of {MEMORY_MIB} MiB"),
        ]:
            slowest = await while_watching_healthz(kbs, partial(explain, fill(template, RESOURCE)))
            assert slowest < HEALTHZ_BUDGET_S, f"/healthz took {slowest * 1000:.0f} ms"
            assert answers[-1].status_code == 401, answers[-1].text
            assert needle in answers[-1].json()["detail"]
        assert kbs.alive
