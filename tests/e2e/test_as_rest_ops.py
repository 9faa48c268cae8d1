"""Running the standalone REST Attestation Service: audit events to its own sinks, metrics and
probes, several workers over shared storage, `restful-as` with upstream's flags and config
over HTTPS, start-up refusals in one line, and `trustee-client as attest` against it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.e2e.as_requests import attest, body, verified_claims
from tests.e2e.harness import run_as, run_module, server_env
from tests.e2e.pki import make_pki
from tests.e2e.simulated import simulate
from trustee.client.as_client import Binding
from trustee.client.attesters import SampleAttester
from trustee.crypto.b64 import b64url_encode

LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\dT")


async def test_audit_sink_gets_the_attestation_events(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    config = {"audit": {"sinks": [{"type": "file", "path": str(log)}]}}
    async with run_as(json.dumps(config), tmp_path) as service, service.client() as http:
        good = body(SampleAttester())
        r = await http.post(
            "/attestation",
            content=json.dumps(good),
            headers={"Content-Type": "application/json", "X-Request-Id": "req-ok"},
        )
        assert r.status_code == 200, r.text
        bad = json.loads(json.dumps(good))
        bad["verification_requests"][0]["runtime_data"] = {"structured": {"nonce": "other"}}
        r = await http.post(
            "/attestation",
            content=json.dumps(bad),
            headers={"Content-Type": "application/json", "X-Request-Id": "req-bad"},
        )
        assert r.status_code == 500
        rego = b"package policy\ntrust_claims := {}\n"
        upload = {"policy_id": "p_cpu", "policy": b64url_encode(rego)}
        assert (await http.post("/policy", json=upload)).status_code == 200
    # The server flushed its sinks on the way out.
    events = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = [(e["type"].removeprefix("org.trustee-py."), e.get("requestid")) for e in events]
    assert kinds[:3] == [
        ("attestation.verified", "req-ok"),
        ("token.issued", "req-ok"),
        ("attestation.failed", "req-bad"),
    ]
    assert kinds[3][0] == "policy.changed"
    assert {e["source"] for e in events} == {"trustee-py/as"}
    verified, _, failed, changed = (e["data"] for e in events)
    assert verified["tee"] == "sample" and verified["verifier"] == "cpu0:sample"
    assert verified["policy_id"] == "default" and verified["generation"] is None
    assert failed["reason"].startswith("attestation report evaluate: evidence[0] (sample)")
    assert changed["policy_id"] == "p_cpu"
    code, _, err = await run_module("trustee.cli", "audit", "verify", str(log))
    assert code == 0, err


def _sample(metrics: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
    assert match, name
    return float(match.group(1))


async def test_metrics_and_probes(tmp_path: Path) -> None:
    async with run_as(None, tmp_path) as service, service.client() as http:
        assert (await attest(http, body(SampleAttester()))).status_code == 200
        doc = body(SampleAttester())
        doc["verification_requests"][0]["runtime_data"] = {"structured": {"nonce": "x"}}
        assert (await attest(http, doc)).status_code == 500
        text = (await http.get("/metrics")).text
        assert _sample(text, 'kbs_attestation_successes_total{tee_type="sample"}') == 1
        assert _sample(text, 'kbs_attestation_failures_total{tee_type="sample"}') == 1
        assert _sample(text, "kbs_attestation_requests_total") == 2
        assert _sample(text, 'trustee_verifier_duration_seconds_count{tee="sample"}') == 1
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


async def test_workers_share_policies_and_one_token_key(tmp_path: Path) -> None:
    config = {"work_dir": str(tmp_path / "as")}
    args = ("--workers", "2")
    async with run_as(json.dumps(config), tmp_path, args=args) as service:
        async with service.client() as http:
            jwks = (await http.get("/.well-known/jwks.json")).json()
            rego = b'package policy\ntrust_claims := {"hardware": 2}\n'
            upload = {"policy_id": "shared_cpu", "policy": b64url_encode(rego)}
            assert (await http.post("/policy", json=upload)).status_code == 200
        # Fresh connections land on either worker (SO_REUSEPORT): every one knows the policy,
        # and every token verifies with the one JWKS.
        for _ in range(12):
            async with service.client() as http:
                assert (await http.get("/.well-known/jwks.json")).json() == jwks
                r = await attest(http, body(SampleAttester(), policy_ids=("shared",)))
                assert r.status_code == 200, r.text
                claims = await verified_claims(http, r.text)
                assert claims["submods"]["cpu0"]["ear.appraisal-policy-id"] == "shared"
    assert "Starting 2 workers" in service.log_text()


# Upstream's attestation-service/config.json, as it ships (its work_dir under our tmp dir).
UPSTREAM_CONFIG = """{
    "work_dir": "%s",
    "rvps_config": {
        "type": "BuiltIn",
        "storage_type": "LocalFs"
    },
    "attestation_token_broker": {
        "duration_min": 5
    }
}"""


async def test_restful_as_with_upstreams_flags_config_and_https(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = ("-t", str(pki.https_cert), "-k", str(pki.https_key), "-r", "http://localhost:3000")
    config = UPSTREAM_CONFIG % (tmp_path / "as")
    async with (
        run_as(config, tmp_path, args=tls, https=True, ca=pki.ca_cert, upstream_cli=True) as svc,
        svc.client() as http,
    ):
        r = await attest(http, body(SampleAttester(), Binding(runtime_data={"n": 1})))
        assert r.status_code == 200, r.text
        claims = await verified_claims(http, r.text)
        assert claims["exp"] - claims["iat"] == 300
    assert "CORS is not supported" in svc.log_text()


def _as_serve(*args: str, prog: tuple[str, ...] = ("trustee.cli", "as", "serve")) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", *prog, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if not LOG_RECORD.match(line)]


async def test_start_up_refusals_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "as.json"
    bad.write_text('{"attestation_token_broker": {"duration_min": "five"}}')
    lines = await trio.to_thread.run_sync(
        lambda: _as_serve("--config", str(bad), "--socket", "127.0.0.1:1")
    )
    assert len(lines) == 1 and lines[0].startswith(f"trustee as serve: {bad}: ")
    assert "attestation_token_broker.duration_min" in lines[0]
    upstream = ("trustee.as_server.cli",)
    lines = await trio.to_thread.run_sync(
        lambda: _as_serve("-c", str(bad), "-s", "127.0.0.1:1", prog=upstream)
    )
    assert len(lines) == 1 and lines[0].startswith(f"restful-as: {bad}: ")
    lines = await trio.to_thread.run_sync(
        lambda: _as_serve("-s", "127.0.0.1:1", "-t", str(tmp_path / "cert.pem"))
    )
    assert lines == ["trustee as serve: -t: HTTPS needs both -t and -k; -k is missing"]
    lines = await trio.to_thread.run_sync(lambda: _as_serve("-s", "127.0.0.1:1", "--workers", "2"))
    assert len(lines) == 1 and lines[0].startswith("trustee as serve: --workers: 2 workers")
    async with run_as(None, tmp_path, name="running") as running:
        lines = await trio.to_thread.run_sync(
            lambda: _as_serve("--socket", f"127.0.0.1:{running.port}")
        )
        assert lines == [
            f"trustee as serve: cannot listen on 127.0.0.1:{running.port}: address already in use"
        ]


async def test_trustee_client_as_attest(tmp_path: Path) -> None:
    sim = tmp_path / "tdx"
    await simulate("tdx", sim)
    config = {
        "verifier_config": {
            "insecure_test_roots": [str(sim / "tdx-test-root.pem")],
            "collateral": str(sim / "tdx-collateral.json"),
        }
    }
    init = tmp_path / "init.toml"
    init.write_text('version = "0.1.0"\nalgorithm = "sha384"\n[data]\n"aa.toml" = "x = 1"\n')
    async with run_as(json.dumps(config), tmp_path) as service:
        client = ("trustee.client.cli", "as", "attest", "--url", service.url)
        code, token, err = await run_module(*client)
        assert code == 0, err
        async with service.client() as http:
            await verified_claims(http, token.strip())
        env = {"TRUSTEE_SIMULATED_PKI": str(sim / "pki")}
        code, out, err = await run_module(
            *client, "--tee", "tdx", "--init-data", str(init), "--claims", env=env
        )
        assert code == 0, err
        evidence = json.loads(out)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
        assert evidence["init_data_claims"] == {"aa.toml": {"x": 1}}
        assert "tdx" in evidence
        code, out, err = await run_module(*client, "--policy-id", "absent")
        assert (code, out) == (1, "")
        assert err == (
            f"trustee-client: the Attestation Service answered HTTP 500 to POST "
            f"{service.url}/attestation: attestation report evaluate: evidence[0] (sample) → "
            "cpu0: Policy `absent_cpu.rego` not found\n"
        )
    code, _, err = await run_module(*client)
    assert code == 1
    assert err.startswith("trustee-client: cannot connect to ")
    assert "is the Attestation Service running there?" in err


async def test_an_unknown_route_and_method(tmp_path: Path) -> None:
    async with run_as(None, tmp_path) as service, service.client() as http:
        r = await http.delete("/policy")
        assert (r.status_code, r.text) == (405, "")
        r = await http.post("/policy/x", json={})
        assert r.status_code == 405
        r = await http.get("/kbs/v0/auth")
        assert (r.status_code, r.text) == (404, "")
        assert isinstance(http, httpx.AsyncClient)
