"""Every network input costs bounded work on a real server: oversized /auth bodies do not grow its
memory, too-deeply nested JSON or TOML anywhere gets 400 InputLimitExceeded (never a 500 or a
RecursionError), and nothing already stored changes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.configs import integration_config
from tests.e2e.harness import RunningKbs, run_kbs
from tests.e2e.pki import Pki, make_pki
from trustee.client.attesters import SampleAttester, detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY
from trustee.client.kbs import KbsClient
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import binding

ERR = "https://github.com/confidential-containers/kbs/errors/"
SECRET = b"still-here"
# What 20 amplifying /auth calls may add to the server's resident memory; before the bound
# each call kept about 47 MiB.
RSS_GROWTH_BOUND_MIB = 32


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its descendants (a server may run worker processes)."""
    total_kib = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status").read_text()
        total_kib += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        for task in Path(f"/proc/{current}/task").iterdir():
            pending.extend(int(c) for c in (task / "children").read_text().split())
    return total_kib / 1024


def expect_limit(r: httpx.Response, fragment: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    info = r.json()
    assert info["type"] == ERR + "InputLimitExceeded", info
    assert fragment in info["reason"] and fragment in info["detail"], info


def auth_json(extra_params: str) -> bytes:
    return ('{"version":"0.4.0","tee":"sample","extra-params":' + extra_params + "}").encode()


async def attest_body(http: httpx.AsyncClient, **tee_evidence: Any) -> dict[str, Any]:
    """A correctly bound sample attestation for a fresh session; `tee_evidence` and an
    `init_data` TOML replace parts of it."""
    r = await http.post("/kbs/v0/auth", content=auth_json('""'))
    assert r.status_code == 200, r.text
    nonce = r.json()["nonce"]
    jwk = tee_public_jwk(generate_tee_key())
    additional = tee_evidence.get("additional_evidence", "")
    digest = binding.runtime_data_digest(binding.primary_runtime_data(jwk, nonce, additional))
    init = tee_evidence.get("init_data")
    return {
        "init-data": None if init is None else {"format": "toml", "body": init},
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {
            "primary_evidence": SampleAttester().evidence(digest, None),
            "additional_evidence": additional,
        },
    }


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def deep_token(header: bytes, payload: bytes) -> str:
    return f"{b64url_encode(header)}.{b64url_encode(payload)}.AAAA"


async def healthy(kbs: RunningKbs) -> None:
    assert kbs.alive
    async with KbsClient(kbs.url, attesters=detect_attesters({}), retry_delay=0) as guest:
        assert await guest.get_resource("default/test/secret") == SECRET
    log = kbs.log_text()
    assert "Traceback" not in log and "RecursionError" not in log


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_auth_amplification_is_bounded(tmp_path: Path, pki: Pki) -> None:
    store = tmp_path / "store"
    async with run_kbs(integration_config(store, pki.admin_public), tmp_path) as kbs:
        async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as admin:
            await admin.set_resource("default/test/secret", SECRET)
            await admin.set_resource_policy(ALLOW_ALL_POLICY)
        await healthy(kbs)
        # Just under the default 2 MiB body limit: 700 000 empty lists to build and keep.
        amplifier = auth_json("[" + "[]," * 699_000 + "[]]")
        assert len(amplifier) < 2 * 1024 * 1024
        async with kbs.client() as http:
            baseline = rss_mib(kbs.process.pid)
            for call in range(20):
                r = await http.post("/kbs/v0/auth", content=amplifier)
                grown = rss_mib(kbs.process.pid) - baseline
                assert grown < RSS_GROWTH_BOUND_MIB, (call, grown, r.status_code)
                expect_limit(r, "/auth body of")

            # An /auth that is small but deep is refused for its depth.
            expect_limit(await http.post("/kbs/v0/auth", content=auth_json("[" * 10_000)), "64")
            # serde_json refuses NaN and infinities; so does the server, as malformed input.
            for value in ("NaN", "Infinity", "-Infinity", "[1e999]"):
                r = await http.post("/kbs/v0/auth", content=auth_json(value))
                assert r.status_code == 401, (value, r.text)
                assert "deserialize Request" in r.json()["detail"], r.text
            # The largest extra-params a real client sends still works.
            extra = json.dumps({"supported-hash-algorithms": ["sha256", "sha384", "sha512"]})
            assert (await http.post("/kbs/v0/auth", content=auth_json(extra))).status_code == 200
        await healthy(kbs)


async def test_deep_nesting_gets_400_everywhere(tmp_path: Path, pki: Pki) -> None:
    store = tmp_path / "store"
    admin = {"Authorization": f"Bearer {pki.admin_token(role='tester')}"}
    deep = b"[" * 100_000
    async with run_kbs(integration_config(store, pki.admin_public), tmp_path) as kbs:
        async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as client:
            await client.set_resource("default/test/secret", SECRET)
            await client.set_resource_policy(ALLOW_ALL_POLICY)
            await client.set_sample_reference_value("svn", 1)
        await healthy(kbs)
        before = snapshot(store)
        async with kbs.client() as http:
            # RCAR: the body, the device evidence string, init-data TOML (inline and dotted).
            expect_limit(await http.post("/kbs/v0/auth", content=deep), "/auth body of")
            await http.post("/kbs/v0/auth", content=auth_json('""'))
            expect_limit(await http.post("/kbs/v0/attest", content=deep), "body nests deeper")
            cases = {
                "additional_evidence nests deeper": {
                    "additional_evidence": "[" * 5000 + "]" * 5000
                },
                "init-data nests deeper": {
                    "init_data": 'version = "0.1.0"\nalgorithm = "sha384"\nx = ' + "[" * 900
                },
                "init-data nests deeper than 32": {
                    "init_data": 'version = "0.1.0"\nalgorithm = "sha384"\n'
                    + ".".join(["k"] * 900)
                    + " = 1"
                },
                "init-data cdh.toml nests deeper": {
                    "init_data": 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'
                    '"cdh.toml" = "x = ' + "[" * 500 + "]" * 500 + '"'
                },
            }
            for fragment, parts in cases.items():
                body = await attest_body(http, **parts)
                expect_limit(await http.post("/kbs/v0/attest", json=body), fragment)

            # Admin endpoints, including what a reference-value message carries inside.
            for path in ("resource-policy", "attestation-policy", "policy-explain"):
                r = await http.post(f"/kbs/v0/{path}", content=deep, headers=admin)
                expect_limit(r, f"{path} body nests deeper")
            r = await http.post("/kbs/v0/reference-value", content=deep, headers=admin)
            expect_limit(r, "reference value message nests deeper")
            payload = base64.b64encode(b'{"svn": ' + b"[" * 3000 + b"]" * 3000 + b"}").decode()
            message = {"version": "0.1.0", "type": "sample", "payload": payload}
            r = await http.post("/kbs/v0/reference-value", json=message, headers=admin)
            expect_limit(r, "sample payload nests deeper")
            explain = {"kind": "resource", "input": json.loads("[" * 60 + "]" * 60)}
            r = await http.post("/kbs/v0/policy-explain", json=explain, headers=admin)
            assert r.status_code == 200, r.text  # deep, but within the bound

            # Bearer tokens: a JWS header that nests too deeply, wherever a token is read.
            resource = "/kbs/v0/resource/default/test/secret"
            bearer = {"Authorization": f"Bearer {deep_token(b'[' * 50_000, b'{}')}"}
            for method, path in (("GET", resource), ("POST", resource)):
                r = await http.request(method, path, content=b"overwritten", headers=bearer)
                expect_limit(r, "JWS header nests deeper")
            r = await http.post("/kbs/v0/resource-policy", content=b"{}", headers=bearer)
            expect_limit(r, "JWS header nests deeper")
            # A deep payload: admin tokens read their claims before the signature check; the
            # resource path refuses the token for its header before reading the payload.
            bearer = {"Authorization": f"Bearer {deep_token(b'{}', b'[' * 50_000)}"}
            r = await http.post("/kbs/v0/resource-policy", content=b"{}", headers=bearer)
            expect_limit(r, "JWS payload nests deeper")
            r = await http.get(resource, headers=bearer)
            assert r.status_code == 401 and r.json()["type"] == ERR + "TokenVerifierError"

        assert snapshot(store) == before
        async with KbsClient(kbs.url, admin_token=pki.admin_token(role="tester")) as client:
            assert json.loads(await client.get_reference_value("svn")) == 1
        await healthy(kbs)
