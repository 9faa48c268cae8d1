"""Prometheus /metrics with upstream's names, and the X-Request-Id every KBS answer carries."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs, run_module
from trustee.crypto.b64 import b64url_encode

CONFIG = DEV_CONFIG
ALLOW_SAMPLE = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    'allow if input.submods.cpu0["ear.veraison.annotated-evidence"].sample\n'
)


async def client(*args: str) -> tuple[int, str, str]:
    return await run_module("trustee.client.cli", *args)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def setup(kbs: RunningKbs) -> None:
    async with kbs.client() as http:
        r = await http.post("/kbs/v0/resource/default/obs/one", content=b"secret")
        assert r.status_code == 200
        r = await http.post(
            "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_SAMPLE.encode())}
        )
        assert r.status_code == 200


async def test_metrics_count_the_flow_with_upstreams_names(tmp_path: Path) -> None:
    async with run_kbs(CONFIG, tmp_path) as kbs:
        await setup(kbs)
        code, out, err = await client("--url", kbs.url, "get-resource", "--path", "default/obs/one")
        assert code == 0, err
        assert base64.b64decode(out) == b"secret"
        async with kbs.client() as http:
            denied = await http.get("/kbs/v0/resource/default/obs/one")  # no token
            assert denied.status_code == 401
            r = await http.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        got = samples(r.text)
        assert got[("kbs_auth_requests_total", ())] >= 1
        assert got[("kbs_auth_successes_total", ())] >= 1
        assert got[("kbs_attestation_successes_total", (("tee_type", "sample"),))] == 1
        assert got[("kbs_resource_reads_total", (("resource_path", "default/obs/one"),))] == 1
        assert got[("kbs_resource_writes_total", (("resource_path", "default/obs/one"),))] == 1
        assert got[("kbs_policy_approvals_total", ())] == 1
        assert got[("kbs_http_requests_total", ())] >= 5
        assert (
            got[
                (
                    "kbs_build_info",
                    (("build_date", "unknown"), ("git_hash", "unknown"), ("version", "0.1.0")),
                )
            ]
            == 1
        )
        assert got[("trustee_verifier_duration_seconds_count", (("tee", "sample"),))] == 1
        # /metrics and /healthz are not measured.
        async with kbs.client() as http:
            await http.get("/healthz")
            again = samples((await http.get("/metrics")).text)
        assert again[("kbs_http_requests_total", ())] == got[("kbs_http_requests_total", ())]


async def test_every_kbs_answer_carries_a_request_id(tmp_path: Path) -> None:
    async with run_kbs(CONFIG, tmp_path) as kbs, kbs.client() as http:
        r = await http.post("/kbs/v0/auth", content=b"not json")
        assert r.status_code == 401  # upstream's status for a bad /auth body
        generated = r.headers["x-request-id"]
        assert len(generated) == 32
        body = {"version": "0.4.0", "tee": "sample", "extra-params": ""}
        r = await http.post("/kbs/v0/auth", json=body, headers={"X-Request-Id": "trace-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
        r = await http.post("/kbs/v0/auth", json=body, headers={"X-Request-Id": "bad id\x7f"})
        assert r.headers["x-request-id"] != "bad id\x7f"
        assert json.loads(r.text)["nonce"]
