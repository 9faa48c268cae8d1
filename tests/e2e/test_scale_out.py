"""Replicas sharing Redis (sessions) and PostgreSQL (everything stored): one logical KBS.

Three real server processes on different ports; a guest authenticates on A, attests on B and
fetches its secret from C; a resource set through A is served by C; a policy change through B
applies on A at once; concurrent /attest of one session on two replicas issue one token; a Redis
outage fails requests cleanly and they succeed again once it is back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs, run_module
from tests.support.postgres_server import PostgresServer, why_unavailable
from tests.support.receivers import redis_server
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.kbs import PROTOCOL_0_4_0, Challenge, compact_json
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import jwe

pytestmark = [pytest.mark.needs_redis, pytest.mark.needs_postgres]

_MISSING = why_unavailable() or ("" if shutil.which("redis-server") else "no redis-server")
needs_stores = pytest.mark.skipif(
    bool(_MISSING), reason=f"needs redis-server and PostgreSQL binaries: {_MISSING}"
)

ALLOW_SAMPLE = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if input.submods.cpu0["ear.veraison.annotated-evidence"].sample\n'
)
DENY_ALL = "package policy\nimport rego.v1\ndefault allow := false\n"


@contextmanager
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


def config(redis_url: str, pg: PostgresServer) -> str:
    return (
        'session_storage_type = "Redis"\n'
        + DEV_CONFIG
        + f"""
[storage_backend]
storage_type = "Postgres"
[storage_backend.backends.postgres]
host = "{pg.host}"
port = {pg.port}
username = "{pg.user}"
db = "{pg.db}"
[storage_backend.backends.redis]
url = "{redis_url}"
"""
    )


@asynccontextmanager
async def replicas(tmp_path: Path, text: str, n: int) -> AsyncIterator[list[RunningKbs]]:
    async with AsyncExitStack() as stack:
        started = []
        for i in range(n):
            started.append(await stack.enter_async_context(run_kbs(text, tmp_path, name=f"kbs{i}")))
        yield started


class Guest:
    def __init__(self) -> None:
        self.key = generate_tee_key()
        self.pubkey = tee_public_jwk(self.key)

    def attestation(self, nonce: str) -> bytes:
        body = PROTOCOL_0_4_0.attestation(
            Challenge(nonce=nonce, extra_params=""),
            self.pubkey,
            AttesterSet(SampleAttester()),
            None,
        )
        return compact_json(body).encode()


async def auth(kbs: RunningKbs) -> tuple[str, str]:
    async with kbs.client() as http:
        r = await http.post(
            "/kbs/v0/auth", json={"version": "0.4.0", "tee": "sample", "extra-params": ""}
        )
        assert r.status_code == 200, r.text
        return r.cookies["kbs-session-id"], r.json()["nonce"]


async def attest(kbs: RunningKbs, cookie: str, body: bytes) -> httpx.Response:
    async with kbs.client(cookies={"kbs-session-id": cookie}) as http:
        return await http.post(
            "/kbs/v0/attest", content=body, headers={"Content-Type": "application/json"}
        )


async def resource(kbs: RunningKbs, cookie: str, path: str) -> httpx.Response:
    async with kbs.client(cookies={"kbs-session-id": cookie}) as http:
        return await http.get(f"/kbs/v0/resource/{path}")


async def admin(kbs: RunningKbs, path: str, **kwargs: Any) -> None:
    async with kbs.client() as http:
        r = await http.post(path, **kwargs)
        assert r.status_code == 200, r.text


@needs_stores
async def test_one_logical_kbs_across_replicas(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis, postgres() as pg:
        async with replicas(tmp_path, config(redis.url(), pg), 3) as (a, b, c):
            await admin(a, "/kbs/v0/resource/default/scale/one", content=b"shared secret")
            await admin(
                b, "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_SAMPLE.encode())}
            )
            for x in (a, b, c):
                async with x.client() as http:
                    assert (await http.get("/readyz")).status_code == 200

            guest = Guest()
            cookie, nonce = await auth(a)
            r = await attest(b, cookie, guest.attestation(nonce))
            assert r.status_code == 200, r.text
            r = await resource(c, cookie, "default/scale/one")
            assert r.status_code == 200, r.text
            assert jwe.decrypt(r.json(), guest.key) == b"shared secret"

            # A policy change through B applies on A at once.
            await admin(
                b, "/kbs/v0/resource-policy", json={"policy": b64url_encode(DENY_ALL.encode())}
            )
            r = await resource(a, cookie, "default/scale/one")
            assert r.status_code == 401 and "PolicyDeny" in r.text

            # The same /attest sent to two replicas at once: one token, in both answers.
            cookie2, nonce2 = await auth(c)
            body = Guest().attestation(nonce2)
            answers: list[httpx.Response] = []

            async def send(kbs: RunningKbs) -> None:
                answers.append(await attest(kbs, cookie2, body))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, a)
                nursery.start_soon(send, b)
            assert [r.status_code for r in answers] == [200, 200]
            assert answers[0].json()["token"] == answers[1].json()["token"]

            # Redis goes away: requests fail fast with upstream's error shape; then recover.
            redis.stop()
            with trio.fail_after(10):
                async with a.client() as http:
                    r = await http.post(
                        "/kbs/v0/auth",
                        json={"version": "0.4.0", "tee": "sample", "extra-params": ""},
                    )
                    assert r.status_code == 401
                    assert r.json()["type"].endswith("/AttestationError")
                    ready = await http.get("/readyz")
                    assert ready.status_code == 503 and "redis" in ready.text.lower()
            redis.start()
            cookie3, nonce3 = await auth(a)
            guest3 = Guest()
            r = await attest(c, cookie3, guest3.attestation(nonce3))
            assert r.status_code == 200, r.text
            assert all(x.alive for x in (a, b, c))


@pytest.mark.parametrize(
    ("head", "storage", "expected"),
    [
        ("", "", "storage_backend Memory is per process"),
        (
            'session_storage_type = "Memory"\n',
            '[storage_backend]\nstorage_type = "LocalFs"\n',
            "cannot share sessions kept in one process's memory",
        ),
    ],
)
def test_many_workers_need_shared_storage_and_sessions(
    head: str, storage: str, expected: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    text = head + DEV_CONFIG.replace(
        "insecure_http = true", "insecure_http = true\nworker_count = 2"
    )
    text += storage.replace(
        '"LocalFs"\n', f'"LocalFs"\n[storage_backend.backends.local_fs]\ndir_path = "{tmp_path}"\n'
    )
    cfg = tmp_path / "kbs.toml"
    cfg.write_text(text.replace("{port}", "1"))
    env = {k: v for k, v in os.environ.items() if k != "KBS_CONFIG_FILE"}
    proc = subprocess.run(
        [sys.executable, "-m", "trustee.cli", "serve", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "worker_count" in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr


async def full_flow(entry: RunningKbs, attest_on: RunningKbs, fetch_on: RunningKbs) -> bytes:
    guest = Guest()
    cookie, nonce = await auth(entry)
    r = await attest(attest_on, cookie, guest.attestation(nonce))
    assert r.status_code == 200, r.text
    r = await resource(fetch_on, cookie, "default/scale/one")
    assert r.status_code == 200, r.text
    return jwe.decrypt(r.json(), guest.key)


@needs_stores
async def test_a_thousand_concurrent_flows_and_a_killed_replica(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis, postgres() as pg:
        text = config(redis.url(), pg)
        async with replicas(tmp_path, text, 3) as (a, b, c):
            await admin(a, "/kbs/v0/resource/default/scale/one", content=b"shared secret")
            await admin(
                b, "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_SAMPLE.encode())}
            )
            nodes = (a, b, c)
            failures: list[BaseException] = []
            limit = trio.CapacityLimiter(64)  # connections in flight; the flows are all queued

            async def one(i: int) -> None:
                async with limit:
                    try:
                        got = await full_flow(nodes[i % 3], nodes[(i + 1) % 3], nodes[(i + 2) % 3])
                        assert got == b"shared secret"
                    except (AssertionError, httpx.HTTPError) as exc:
                        failures.append(exc)

            async with trio.open_nursery() as nursery:
                for i in range(1000):
                    nursery.start_soon(one, i)
            assert failures == []

            # Kill -9 one replica while the others carry load: their flows all succeed.
            async def load(n: int) -> None:
                for _ in range(n):
                    assert await full_flow(a, b, a) == b"shared secret"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load, 40)
                nursery.start_soon(load, 40)
                await trio.sleep(0.2)
                c.process.kill()
            await c.process.wait()
        # Nothing stored is lost, and a restarted replica serves at once.
        async with run_kbs(text, tmp_path, name="restarted") as fresh:
            assert await full_flow(fresh, fresh, fresh) == b"shared secret"


@needs_stores
async def test_two_workers_in_one_server(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis, postgres() as pg:
        audit = tmp_path / "audit.jsonl"
        text = (
            config(redis.url(), pg).replace(
                "insecure_http = true", "insecure_http = true\nworker_count = 2"
            )
            + f'\n[[audit.sinks]]\ntype = "file"\npath = "{audit}"\n'
        )
        async with run_kbs(text, tmp_path) as kbs:
            await admin(kbs, "/kbs/v0/resource/default/scale/one", content=b"shared secret")
            await admin(
                kbs,
                "/kbs/v0/resource-policy",
                json={"policy": b64url_encode(ALLOW_SAMPLE.encode())},
            )
            # Separate connections land on either worker; every flow must work end to end.
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(full_flow, kbs, kbs, kbs)
            assert "Starting 2 workers" in kbs.log_text()
    # One hash chain per worker (a chain needs a single writer), each intact.
    for index in (0, 1):
        chain = tmp_path / f"audit.worker{index}.jsonl"
        code, _, err = await run_module("trustee.cli", "audit", "verify", str(chain))
        assert code == 0, err
    assert not audit.exists()
