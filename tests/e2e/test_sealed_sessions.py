"""Sealed-cookie sessions across processes, with no session store anywhere.

Real server processes share a `session_key` file and a LocalFs directory, nothing else: a guest
authenticates on A, attests on B and fetches its secret from C. A replica holding another key
refuses the cookie with upstream's error and a reason; a replica that rotated to a new key still
opens what the old key sealed. One server with several workers serves flows on every worker.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs
from tests.e2e.test_scale_out import ALLOW_SAMPLE, Guest, admin, attest, auth, resource
from trustee.crypto.b64 import b64url_encode
from trustee.protocol import jwe


def config(storage: Path, *keys: Path, extra: str = "") -> str:
    listed = ", ".join(f'"{k}"' for k in keys)
    head = f"session_key = [{listed}]\n" if keys else ""
    return (
        head
        + DEV_CONFIG.replace("insecure_http = true", f"insecure_http = true\n{extra}")
        + f"""
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"
"""
    )


def key_file(path: Path, seed: int) -> Path:
    path.write_text(base64.b64encode(bytes([seed]) * 32).decode() + "\n")
    return path


@asynccontextmanager
async def servers(tmp_path: Path, texts: list[str]) -> AsyncIterator[list[RunningKbs]]:
    async with AsyncExitStack() as stack:
        started = []
        for i, text in enumerate(texts):
            started.append(await stack.enter_async_context(run_kbs(text, tmp_path, name=f"kbs{i}")))
        yield started


async def test_auth_on_a_attest_on_b_resource_on_c_with_no_session_store(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    old = key_file(tmp_path / "old.key", 1)
    new = key_file(tmp_path / "new.key", 2)
    other = key_file(tmp_path / "other.key", 3)
    texts = [
        config(storage, old, extra="worker_count = 1"),
        config(storage, old, extra="worker_count = 1"),
        config(storage, old, extra="worker_count = 1"),
        config(storage, new, old, extra="worker_count = 1"),  # rotated
        config(storage, other, extra="worker_count = 1"),  # another deployment
    ]
    async with servers(tmp_path, texts) as (a, b, c, rotated, foreign):
        await admin(a, "/kbs/v0/resource/default/sealed/one", content=b"shared secret")
        await admin(
            a, "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_SAMPLE.encode())}
        )
        guest = Guest()
        cookie, nonce = await auth(a)
        r = await attest(b, cookie, guest.attestation(nonce))
        assert r.status_code == 200, r.text
        attested = r.cookies["kbs-session-id"]
        assert attested != cookie
        for server in (c, rotated):
            r = await resource(server, attested, "default/sealed/one")
            assert r.status_code == 200, r.text
            assert jwe.decrypt(r.json(), guest.key) == b"shared secret"

        r = await resource(foreign, attested, "default/sealed/one")
        assert r.status_code == 401
        assert r.json()["type"].endswith("/TokenNotFound")
        assert "sealed with a key this server does not hold" in r.json()["reason"]
        r = await attest(foreign, cookie, guest.attestation(nonce))
        assert r.status_code == 401 and r.json()["type"].endswith("/AttestationError")

        # The rotated replica seals with the new key: A (old key only) cannot open that.
        cookie2, nonce2 = await auth(rotated)
        r = await attest(rotated, cookie2, Guest().attestation(nonce2))
        assert r.status_code == 200
        r = await resource(a, r.cookies["kbs-session-id"], "default/sealed/one")
        assert r.status_code == 401 and "does not hold" in r.json()["reason"]

        # A replica sealing for another replica is the point; no store was configured.
        for server in (a, b, c):
            assert "RCAR sessions sealed in the cookie" in server.log_text()
            assert "Redis" not in server.log_text()


async def test_workers_of_one_server_share_the_generated_key(tmp_path: Path) -> None:
    # No session_key: the parent makes one for all its workers. No worker_count: LocalFs is
    # shared between processes, so there is a worker per core.
    text = config(tmp_path / "storage")
    cores = len(os.sched_getaffinity(0))
    async with run_kbs(text, tmp_path) as kbs:
        if cores > 1:
            assert f"Starting {cores} workers" in kbs.log_text()
        await admin(kbs, "/kbs/v0/resource/default/sealed/one", content=b"w")
        await admin(
            kbs, "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_SAMPLE.encode())}
        )
        failures: list[str] = []

        async def flow() -> None:
            # Each request on a new connection: the kernel hands them to any worker.
            guest = Guest()
            cookie, nonce = await auth(kbs)
            r = await attest(kbs, cookie, guest.attestation(nonce))
            if r.status_code != 200:
                failures.append(r.text)
                return
            r = await resource(kbs, r.cookies["kbs-session-id"], "default/sealed/one")
            if r.status_code != 200 or jwe.decrypt(r.json(), guest.key) != b"w":
                failures.append(r.text)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(flow)
        assert failures == []
        log = kbs.log_text()
        if cores > 1:
            # Every worker logged the same sealing key id.
            ids = {
                line.rsplit("session key ", 1)[1].split(":")[0]
                for line in log.splitlines()
                if "RCAR sessions sealed in the cookie" in line
            }
            assert len(ids) == 1, log
            assert log.count("RCAR sessions sealed in the cookie") == cores
