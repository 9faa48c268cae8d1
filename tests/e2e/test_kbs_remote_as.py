"""A KBS on an Attestation Service in another process: `coco_as_restful` against `trustee as
serve`, `coco_as_grpc` against `trustee as serve --grpc`.

Guests of every protocol generation get their secret through it; attestation policies and
reference values set through the KBS's admin API land in the AS; an AS that hangs or dies
makes /attest answer upstream's error within the timeout and /readyz 503 naming the AS, and
the same AS restarted on its port heals the KBS without a restart. One AS serves three KBS
replicas with Redis sessions at once.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.as_process import KBS_TYPES, AsProcess, grpc_server_missing, running_as
from tests.e2e.harness import RunningKbs, run_kbs, run_module
from tests.e2e.pki import Pki, make_pki
from tests.support.receivers import redis_server
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.generations import GENERATIONS, Challenge
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jws import split_compact

PROTOCOLS = ("0.1.1", "0.2.0", "0.4.0")
SECRET = b"released through a remote attestation service"
PATH = "default/remote/secret"
TIMEOUT_MS = 1500
# What an /attest stuck on a hung AS is compared with: it would wait for the client's own
# timeout (30 s here) or forever.
HUNG_S = 20.0
ERROR_PREFIX = "https://github.com/confidential-containers/kbs/errors/"

# The secret goes to sample guests whose AS appraisal is affirming: the AS's shipped policy
# says contraindicated for sample evidence, AFFIRMING_POLICY (set through the KBS) does not.
RELEASE_IF_AFFIRMING = """package policy
import rego.v1
default allow := false
allow if {
	input.submods.cpu0["ear.veraison.annotated-evidence"].sample
	input.submods.cpu0["ear.status"] == "affirming"
}
"""
AFFIRMING_POLICY = """package policy
import rego.v1
default executables := 2
executables := 3 if input.sample.launch_digest in query_reference_value("launch_digest")
trust_claims := {"executables": executables, "hardware": 2, "configuration": 2}
"""


def needs(kind: str) -> Any:
    missing = grpc_server_missing() if kind == "grpc" else None
    return pytest.param(kind, marks=pytest.mark.skipif(missing is not None, reason=str(missing)))


KINDS = [needs("rest"), needs("grpc")]


def as_config(kind: str, tmp_path: Path, pki: Pki) -> Path | None:
    """A REST AS signs with an ephemeral key (the KBS trusts what it publishes); a gRPC AS
    with a certified key, which the KBS trusts through its CA as upstream's docs say."""
    if kind == "rest":
        return None
    path = tmp_path / "as-config.json"
    signer = {"key_path": str(pki.signer_key), "cert_path": str(pki.signer_chain)}
    path.write_text(json.dumps({"attestation_token_broker": {"signer": signer}}))
    return path


def kbs_config(service: AsProcess, pki: Pki, *, extra: str = "", top: str = "") -> str:
    key = "url" if service.kind == "rest" else "as_addr"
    trust = (
        ""
        if service.kind == "rest"
        else f'[attestation_token]\ntrusted_certs_paths = ["{pki.ca_cert}"]\n'
    )
    return f"""{top}
[http_server]
sockets = ["127.0.0.1:{{port}}"]
insecure_http = true

[admin]
authorization_mode = "InsecureAllowAll"

{trust}
[attestation_service]
type = "{KBS_TYPES[service.kind]}"
{key} = "{service.address}"
timeout_ms = {TIMEOUT_MS}

[[plugins]]
name = "resource"
{extra}"""


@asynccontextmanager
async def remote_setup(
    kind: str, tmp_path: Path, extra: str = ""
) -> AsyncIterator[tuple[AsProcess, RunningKbs]]:
    pki = make_pki(tmp_path / "pki")
    async with (
        running_as(kind, tmp_path / "as", as_config(kind, tmp_path, pki)) as service,
        run_kbs(kbs_config(service, pki, extra=extra), tmp_path) as kbs,
    ):
        yield service, kbs


async def admin(kbs: RunningKbs, path: str, **kwargs: Any) -> httpx.Response:
    async with kbs.client() as http:
        return await http.post(f"/kbs/v0/{path}", **kwargs)


async def prepare(kbs: RunningKbs) -> None:
    """The secret, the resource policy, and the attestation policy that makes sample guests
    affirming, this last one stored in the AS through the KBS."""
    assert (await admin(kbs, f"resource/{PATH}", content=SECRET)).status_code == 200
    policy = {"policy": b64url_encode(RELEASE_IF_AFFIRMING.encode())}
    assert (await admin(kbs, "resource-policy", json=policy)).status_code == 200
    body = {"policy_id": "default_cpu", "policy": b64url_encode(AFFIRMING_POLICY.encode())}
    r = await admin(kbs, "attestation-policy", json=body)
    assert r.status_code == 200, r.text


async def guest(kbs: RunningKbs, protocol: str = "0.4.0") -> tuple[int, str]:
    """`trustee-client get-resource` of PROTOCOL: (exit status, the secret or stderr)."""
    code, out, err = await run_module(
        "trustee.client.cli", "--protocol", protocol, "--url", kbs.url,
        "get-resource", "--path", PATH,
    )  # fmt: skip
    return code, base64.b64decode(out).decode() if code == 0 else err


async def attest(kbs: RunningKbs, protocol: str = "0.4.0") -> tuple[httpx.Response, float]:
    """/auth then /attest as a sample guest of PROTOCOL on one connection: the /attest answer
    and how long it took."""
    generation = GENERATIONS[protocol]
    attesters = AttesterSet(SampleAttester())
    jwk = generation.tee_public_jwk(generation.generate_tee_key())
    async with kbs.client() as http:
        r = await http.post("/kbs/v0/auth", json=generation.auth_request("sample"))
        assert r.status_code == 200, r.text
        body = generation.attestation(Challenge.parse(r.content), jwk, attesters, None)
        started = time.monotonic()
        answer = await http.post("/kbs/v0/attest", json=body)
        elapsed = time.monotonic() - started
        if answer.status_code == 200:
            # A repeated /attest on the session answers the AS's token itself.
            again = await http.post("/kbs/v0/attest", json=body)
            assert again.json()["token"] == answer.json()["token"]
        return answer, elapsed


async def readyz(kbs: RunningKbs) -> httpx.Response:
    async with kbs.client() as http:
        return await http.get("/readyz")


@pytest.mark.parametrize("kind", KINDS)
async def test_every_generation_gets_its_secret_through_the_remote_as(
    kind: str, tmp_path: Path
) -> None:
    async with remote_setup(kind, tmp_path) as (service, kbs):
        assert (await readyz(kbs)).status_code == 200
        assert (await admin(kbs, f"resource/{PATH}", content=SECRET)).status_code == 200
        policy = {"policy": b64url_encode(RELEASE_IF_AFFIRMING.encode())}
        assert (await admin(kbs, "resource-policy", json=policy)).status_code == 200
        # The AS's shipped policy: sample evidence is contraindicated, nothing is released.
        code, err = await guest(kbs)
        assert code != 0 and "PolicyDeny" in err, err
        body = {"policy_id": "default_cpu", "policy": b64url_encode(AFFIRMING_POLICY.encode())}
        r = await admin(kbs, "attestation-policy", json=body)
        assert r.status_code == 200, r.text
        for protocol in PROTOCOLS:
            code, out = await guest(kbs, protocol)
            assert code == 0, f"{protocol}: {out}\n{kbs.log_text()[-3000:]}"
            assert out == SECRET.decode(), protocol
        answer, _ = await attest(kbs)
        token = answer.json()["token"]
        claims = split_compact(token).claims()
        assert claims["submods"]["cpu0"]["ear.status"] == "affirming"
        await check_signer(kind, service, token)
        await check_reference_values(kind, kbs)
    assert "remote Attestation Service" in kbs.log_text()


async def check_signer(kind: str, service: AsProcess, token: str) -> None:
    """The token is the AS's: signed with the key it publishes (REST) or its certified key."""
    header = split_compact(token).header
    if kind == "rest":
        async with httpx.AsyncClient() as http:
            published = (await http.get(f"{service.address}/.well-known/jwks.json")).json()
        assert header["jwk"] in published["keys"]
    else:
        assert header["jwk"]["x5c"]


async def check_reference_values(kind: str, kbs: RunningKbs) -> None:
    """The gRPC AS serves its RVPS on the same address; upstream's REST AS has none."""
    message = {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(json.dumps({"launch_digest": ["abcde"]}).encode()).decode(),
    }
    r = await admin(kbs, "reference-value", json=message)
    if kind == "rest":
        assert r.status_code == 401
        assert r.json()["type"] == ERROR_PREFIX + "RvpsError"
        assert "has no reference value API" in r.json()["detail"]
        return
    assert r.status_code == 200, r.text
    async with kbs.client() as http:
        r = await http.get("/kbs/v0/reference-value/launch_digest")
    assert r.status_code == 200 and r.json() == ["abcde"]
    # The AS's policy sees the value registered through the KBS.
    answer, _ = await attest(kbs)
    vector = split_compact(answer.json()["token"]).claims()["submods"]["cpu0"]
    assert vector["ear.trustworthiness-vector"]["executables"] == 3


async def refused_while_down(service: AsProcess, kbs: RunningKbs, audit: Path) -> None:
    """/attest answers upstream's error in time; /readyz says which AS is not there."""
    answer, elapsed = await attest(kbs)
    assert elapsed < HUNG_S, elapsed
    assert answer.status_code == 401
    assert answer.json() == {
        "type": ERROR_PREFIX + "AttestationError",
        "detail": "Attestation error: RCAR handshake Attest failed",
        "reason": "the Attestation Service is unavailable (details in the server log)",
    }
    # Readiness answers from a probe at most PROBE_CACHE_S old.
    with trio.fail_after(10):
        while (ready := await readyz(kbs)).status_code == 200:
            await trio.sleep(0.2)
    assert ready.status_code == 503
    assert service.address in ready.json()["reason"]
    assert f"Attestation Service at {service.address}: attestation " in kbs.log_text()
    with trio.fail_after(10):
        while not (reasons := failed_reasons(audit)):
            await trio.sleep(0.05)
    assert service.address in reasons[-1]


def failed_reasons(audit: Path) -> list[str]:
    if not audit.exists():
        return []
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    return [e["data"]["reason"] for e in events if e["type"].endswith("attestation.failed")]


async def until_ready(kbs: RunningKbs) -> None:
    with trio.fail_after(30):
        while (await readyz(kbs)).status_code != 200:
            await trio.sleep(0.2)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_as_outage_fails_cleanly_and_its_restart_heals(kind: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    sink = f'\n[[audit.sinks]]\ntype = "file"\npath = "{audit}"\n'
    async with remote_setup(kind, tmp_path, extra=sink) as (service, kbs):
        await prepare(kbs)
        assert await guest(kbs) == (0, SECRET.decode())
        pid = kbs.process.pid
        # Slower than the timeout: the AS accepts connections and answers nothing.
        service.pause()
        await refused_while_down(service, kbs, audit)
        assert f"got no answer within {TIMEOUT_MS} ms" in kbs.log_text()
        service.resume()
        await until_ready(kbs)
        # Gone: killed as a crash would, then started again on the same port.
        await service.stop(signal.SIGKILL)
        audit.write_text("")
        await refused_while_down(service, kbs, audit)
        await service.start()
        await until_ready(kbs)
        # The AS lost what it kept in memory: the policy again, through the KBS.
        await prepare(kbs)
        assert await guest(kbs) == (0, SECRET.decode())
        assert kbs.alive and kbs.process.pid == pid


REDIS_MISSING = None if shutil.which("redis-server") else "no redis-server"


@pytest.mark.needs_redis
@pytest.mark.skipif(REDIS_MISSING is not None, reason=f"needs {REDIS_MISSING}")
@pytest.mark.parametrize("kind", KINDS)
async def test_one_as_serves_three_replicas_with_redis_sessions(kind: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    (tmp_path / "redis").mkdir()
    shared = (
        '[storage_backend]\nstorage_type = "LocalFs"\n'
        f'[storage_backend.backends.local_fs]\ndir_path = "{tmp_path / "store"}"\n'
    )
    with redis_server(tmp_path / "redis") as redis:
        shared += f'[storage_backend.backends.redis]\nurl = "{redis.url()}"\n'
        async with (
            running_as(kind, tmp_path / "as", as_config(kind, tmp_path, pki)) as service,
            AsyncExitStack() as stack,
        ):
            text = kbs_config(service, pki, extra=shared, top='session_storage_type = "Redis"')
            replicas = [
                await stack.enter_async_context(run_kbs(text, tmp_path, name=f"kbs{i}"))
                for i in range(3)
            ]
            await prepare(replicas[0])
            results: list[tuple[str, bytes]] = []
            async with trio.open_nursery() as nursery:
                for i in range(9):
                    nursery.start_soon(across_replicas, replicas, i, PROTOCOLS[i % 3], results)
    assert sorted(results) == sorted((p, SECRET) for p in PROTOCOLS * 3)


async def across_replicas(
    replicas: list[RunningKbs], i: int, protocol: str, results: list[tuple[str, bytes]]
) -> None:
    """One guest: /auth on one replica, /attest on the next, the resource from the third."""
    generation = GENERATIONS[protocol]
    key = generation.generate_tee_key()
    jwk = generation.tee_public_jwk(key)
    first, second, third = (replicas[(i + k) % 3] for k in range(3))
    async with first.client() as http:
        r = await http.post("/kbs/v0/auth", json=generation.auth_request("sample"))
        assert r.status_code == 200, r.text
        cookie = r.cookies["kbs-session-id"]
        body = generation.attestation(
            Challenge.parse(r.content), jwk, AttesterSet(SampleAttester()), None
        )
    async with second.client(cookies={"kbs-session-id": cookie}) as http:
        r = await http.post("/kbs/v0/attest", json=body)
        assert r.status_code == 200, r.text
        token = r.json()["token"]
    assert "jwk" in split_compact(token).header  # the AS's token, kept as it issued it
    async with third.client(cookies={"kbs-session-id": cookie}) as http:
        r = await http.get(f"/kbs/v0/resource/{PATH}")
        assert r.status_code == 200, r.text
    results.append((protocol, generation.decrypt(r.json(), key)))
