"""Explainable decisions: a resource deny names the failing expression, identically in the error
the client gets, the server log and the audit event; the admin explain endpoint evaluates a
candidate policy without releasing anything."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import DEV_CONFIG, run_kbs, run_module
from trustee.crypto.b64 import b64url_encode

SVN_POLICY = (
    "package policy\nimport rego.v1\ndefault allow := false\n"
    "allow if {\n"
    '    input.submods.cpu0["ear.veraison.annotated-evidence"].sample\n'
    '    input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn == "9"\n'
    "}\n"
)


def config(log: Path) -> str:
    return DEV_CONFIG + f'\n[[audit.sinks]]\ntype = "file"\npath = "{log}"\n'


async def client(*args: str) -> tuple[int, str, str]:
    return await run_module("trustee.client.cli", *args)


async def test_deny_carries_one_reason_path_everywhere(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    async with run_kbs(config(log), tmp_path) as kbs:
        async with kbs.client() as http:
            r = await http.post("/kbs/v0/resource/default/x/y", content=b"v")
            assert r.status_code == 200
            r = await http.post(
                "/kbs/v0/resource-policy", json={"policy": b64url_encode(SVN_POLICY.encode())}
            )
            assert r.status_code == 200
        code, _, err = await client("--url", kbs.url, "get-resource", "--path", "default/x/y")
        assert code != 0 and "PolicyDeny" in err
        server_log = kbs.log_text()
    denied = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if '"org.trustee-py.resource.denied"' in line
    ]
    reason = denied[-1]["data"]["reason"]
    assert "failed at line 6" in reason and 'svn == "9"' in reason, reason
    assert reason in server_log


async def test_explain_endpoint_evaluates_a_candidate_policy(tmp_path: Path) -> None:
    claims = {"submods": {"cpu0": {"ear.veraison.annotated-evidence": {"sample": {"svn": "1"}}}}}
    async with run_kbs(config(tmp_path / "audit.jsonl"), tmp_path) as kbs, kbs.client() as http:
        body = {
            "kind": "resource",
            "policy": b64url_encode(SVN_POLICY.encode()),
            "input": claims,
            "resource_path": "default/x/y",
        }
        r = await http.post("/kbs/v0/policy-explain", json=body)
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["decision"]["data.policy.allow"] is False
        assert "failed at line 6" in result["reason"]
        claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]["svn"] = "9"
        r = await http.post("/kbs/v0/policy-explain", json=body)
        assert r.json()["decision"]["data.policy.allow"] is True
        # The attestation policy in force, with the sample claims the AS would produce.
        r = await http.post(
            "/kbs/v0/policy-explain",
            json={
                "kind": "attestation",
                "policy_id": "default_cpu",
                "input": {"sample": {"svn": "1"}},
            },
        )
        assert r.status_code == 200, r.text
        assert "data.policy.trust_claims" in r.json()["decision"]
        # A broken candidate is refused with the Rego error; nothing is stored.
        bad = dict(body, policy=b64url_encode(b"package policy\nallow if {"))
        r = await http.post("/kbs/v0/policy-explain", json=bad)
        assert r.status_code == 401 and "PolicyEngineError" in r.text
        r = await http.get("/kbs/v0/resource-policy")
        assert r.status_code == 200
