"""Audit events from a real server: file (hash chain), webhook and Redis Streams sinks.

A sample guest attests and fetches a secret, a request without a token is denied, and an admin
changes a policy; every decision must reach every sink with the request id the client saw, the
file must verify with `trustee audit verify`, and a tampered copy must fail at the right line.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, run_kbs, run_module
from tests.support.receivers import HttpReceiver, redis_server
from trustee.crypto.b64 import b64url_encode

pytestmark = pytest.mark.needs_redis

ALLOW_SAMPLE = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if input.submods.cpu0["ear.veraison.annotated-evidence"].sample\n'
)
EXPECTED_TYPES = {
    "org.trustee-py.session.created",
    "org.trustee-py.attestation.verified",
    "org.trustee-py.token.issued",
    "org.trustee-py.resource.released",
    "org.trustee-py.resource.denied",
    "org.trustee-py.admin.changed",
    "org.trustee-py.policy.changed",
}


def config(log: Path, webhook: str, redis: str | None) -> str:
    text = (
        DEV_CONFIG
        + f"""
[[audit.sinks]]
type = "file"
path = "{log}"

[[audit.sinks]]
type = "webhook"
url = "{webhook}"
"""
    )
    if redis:
        text += f'\n[[audit.sinks]]\ntype = "redis-stream"\nurl = "{redis}"\nstream = "kbs"\n'
    return text


async def trustee(*argv: str) -> tuple[int, str, str]:
    return await run_module(*argv)


async def test_every_decision_reaches_every_sink(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    has_redis = shutil.which("redis-server") is not None
    (tmp_path / "redis").mkdir()
    receiver = HttpReceiver()
    with redis_server(tmp_path / "redis") if has_redis else _nothing() as redis:
        async with trio.open_nursery() as nursery:
            await receiver.start(nursery)
            url = redis.url() if redis is not None else None
            async with run_kbs(config(log, receiver.url, url), tmp_path) as kbs:
                async with kbs.client() as http:
                    r = await http.post(
                        "/kbs/v0/resource-policy",
                        json={"policy": b64url_encode(ALLOW_SAMPLE.encode())},
                        headers={"X-Request-Id": "admin-1"},
                    )
                    assert r.status_code == 200
                    r = await http.post("/kbs/v0/resource/default/audit/one", content=b"s3cret")
                    assert r.status_code == 200
                    denied = await http.get("/kbs/v0/resource/default/audit/one")
                    assert denied.status_code == 401
                code, out, err = await trustee(
                    "trustee.client.cli", "--url", kbs.url,
                    "get-resource", "--path", "default/audit/one",
                )  # fmt: skip
                assert code == 0, err
                assert base64.b64decode(out) == b"s3cret"
            # The server has stopped (SIGINT): every sink was flushed before it exited.
            receiver.stop()
            nursery.cancel_scope.cancel()

        lines = log.read_text().splitlines()
        events = [json.loads(line) for line in lines]
        types = {e["type"] for e in events}
        assert types >= EXPECTED_TYPES, types
        assert all(e["specversion"] == "1.0" and e["requestid"] for e in events)
        assert (
            "s3cret" not in log.read_text()
            and base64.b64encode(b"s3cret").decode() not in log.read_text()
        )
        policy = [e for e in events if e["type"] == "org.trustee-py.policy.changed"]
        assert policy and policy[0]["requestid"] == "admin-1"
        released = [e for e in events if e["type"] == "org.trustee-py.resource.released"]
        assert released[0]["data"]["path"] == "resource/default/audit/one"
        assert released[0]["data"]["jti"] and released[0]["data"]["policy_digest"]
        ids = [e["id"] for e in events]
        assert {e["id"] for e in receiver.events} == set(ids)
        if redis is not None:
            streamed = [json.loads(fields["event"])["id"] for _, fields in redis.xrange("kbs")]
            assert streamed == ids

    code, out, err = await trustee("trustee.cli", "audit", "verify", str(log))
    assert code == 0, err
    assert str(len(lines)) in out
    # Any edit is caught at the line where the chain breaks.
    tampered = tmp_path / "tampered.jsonl"
    edited = lines.copy()
    edited[2] = edited[2].replace('"type":"org.trustee-py', '"type":"org.trustee-pz', 1)
    tampered.write_text("\n".join(edited) + "\n")
    code, out, err = await trustee("trustee.cli", "audit", "verify", str(tampered))
    assert code == 1
    assert "line 3" in out + err or "line 4" in out + err
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    code, _, _ = await trustee("trustee.cli", "audit", "verify", str(swapped))
    assert code == 1


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("required", [False, True])
async def test_a_dead_webhook_fails_requests_only_when_required(
    tmp_path: Path, required: bool
) -> None:
    text = (
        DEV_CONFIG
        + f"""
[[audit.sinks]]
type = "webhook"
url = "http://127.0.0.1:9/nowhere"
timeout = 0.2
required = {"true" if required else "false"}
queue_size = 2
block_timeout = 0.3
"""
    )
    async with run_kbs(text, tmp_path) as kbs, kbs.client() as http:
        body = {"version": "0.4.0", "tee": "sample", "extra-params": ""}
        codes = [(await http.post("/kbs/v0/auth", json=body)).status_code for _ in range(6)]
        if required:
            assert 401 in codes and codes[0] == 200
            failed = [c for c in codes if c != 200]
            assert failed, codes
        else:
            assert codes == [200] * 6
        r = await http.get("/metrics")
        assert "trustee_audit_events_total" in r.text
