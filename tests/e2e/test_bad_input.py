"""Bad input of every kind gets the right status and ErrorInformation; nothing stored is lost."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import RunningKbs, run_kbs
from tests.e2e.pki import Pki, make_pki
from trustee.attestation.ear import EarBroker, load_signer
from trustee.client.attesters import SampleAttester, detect_attesters
from trustee.client.kbs import KbsClient
from trustee.config.model import SignerConfig, TokenBrokerConfig
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import binding

ERR = "https://github.com/confidential-containers/kbs/errors/"
SECRET = b"still-here"
ALLOW = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)


def config(pki: Pki, storage: Path) -> str:
    return f"""
[http_server]
sockets = ["127.0.0.1:{{port}}"]
insecure_http = true
payload_request_size = 1

[admin]
authorization_mode = "AuthenticatedAuthorization"
[[admin.authentication.bearer_jwt.identity_providers]]
issuer = "issuer"
public_key_uri = "{pki.admin_public}"
[[admin.authorization.regex_acl.acls]]
role = "admin"
allowed_endpoints = "^/kbs/v0/.*$"

[attestation_token]
trusted_certs_paths = ["{pki.ca_cert}"]

[attestation_service]
type = "coco_as_builtin"
[attestation_service.attestation_token_broker.signer]
key_path = "{pki.signer_key}"
cert_path = "{pki.signer_chain}"

[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"

[[plugins]]
name = "resource"
"""


def expect(r: httpx.Response, status: int, variant: str, detail: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    info = r.json()
    assert info["type"] == ERR + variant, info
    if detail is not None:
        assert detail in info["detail"], info


def auth_body(version: str = "0.4.0", tee: str = "sample") -> dict[str, Any]:
    return {"version": version, "tee": tee, "extra-params": ""}


async def attest_body(http: httpx.AsyncClient, nonce: str | None = None) -> dict[str, Any]:
    r = await http.post("/kbs/v0/auth", json=auth_body())
    assert r.status_code == 200
    challenge = r.json()
    jwk = tee_public_jwk(generate_tee_key())
    use_nonce = nonce or challenge["nonce"]
    digest = binding.runtime_data_digest(binding.primary_runtime_data(jwk, use_nonce, ""))
    return {
        "init-data": None,
        "runtime-data": {"nonce": use_nonce, "tee-pubkey": jwk},
        "tee-evidence": {
            "primary_evidence": SampleAttester().evidence(digest, None),
            "additional_evidence": "",
        },
    }


def tokens(pki: Pki, tmp: Path) -> tuple[str, str]:
    """(expired token from the trusted signer, fresh token from an untrusted signer)."""
    jwk = tee_public_jwk(generate_tee_key())
    submods = {
        "cpu0": {
            "ear.status": "affirming",
            "ear.veraison.annotated-evidence": {"runtime_data_claims": {"tee-pubkey": jwk}},
        }
    }
    trusted = TokenBrokerConfig(signer=SignerConfig(str(pki.signer_key), str(pki.signer_chain)))
    expired = EarBroker(trusted, load_signer(trusted)).issue(submods, now=time.time() - 3600)
    other = make_pki(tmp / "other")
    untrusted_cfg = TokenBrokerConfig(
        signer=SignerConfig(str(other.signer_key), str(other.signer_chain))
    )
    forged = EarBroker(untrusted_cfg, load_signer(untrusted_cfg)).issue(submods)
    return expired, forged


async def _healthy(kbs: RunningKbs, pki: Pki) -> None:
    """The server still serves a full flow and the stored secret and policy are intact."""
    assert kbs.alive
    async with KbsClient(kbs.url, attesters=detect_attesters({}), retry_delay=0) as guest:
        assert await guest.get_resource("default/test/secret") == SECRET


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_bad_input_is_answered_and_nothing_is_lost(tmp_path: Path, pki: Pki) -> None:
    admin_headers = {"Authorization": f"Bearer {pki.admin_token()}"}
    async with run_kbs(config(pki, tmp_path / "store"), tmp_path) as kbs:
        async with KbsClient(kbs.url, admin_token=pki.admin_token()) as admin:
            await admin.set_resource("default/test/secret", SECRET)
            await admin.set_resource_policy(ALLOW)
        await _healthy(kbs, pki)

        async with kbs.client() as http:
            # /auth
            for body in (b"not json", b'{"version":"0.4.0","tee":"sam'):
                r = await http.post("/kbs/v0/auth", content=body)
                expect(r, 401, "AttestationError", "deserialize Request")
            r = await http.post("/kbs/v0/auth", json=auth_body(tee="quantum"))
            expect(r, 401, "AttestationError", "deserialize Request")
            for version in ("0.3.0", "9.9.9"):
                r = await http.post("/kbs/v0/auth", json=auth_body(version=version))
                expect(r, 401, "AttestationError", "KBS Client Protocol Version Mismatch")
            r = await http.get("/kbs/v0/auth")
            expect(r, 404, "PluginNotFound", "Plugin auth not found")

            # /attest
            attest_failed = "Attestation error: RCAR handshake Attest failed"
            fresh = httpx.AsyncClient(base_url=kbs.url)
            async with fresh:
                r = await fresh.post("/kbs/v0/attest", json={})
                expect(r, 401, "AttestationError", attest_failed)  # attest without auth
            wrong = await attest_body(http, nonce=base64.b64encode(b"x" * 32).decode())
            r = await http.post("/kbs/v0/attest", json=wrong)
            expect(r, 401, "AttestationError", attest_failed)  # wrong nonce
            good = await attest_body(http)
            r = await http.post("/kbs/v0/attest", content=json.dumps(good)[:-7])
            expect(r, 401, "AttestationError", attest_failed)  # truncated
            forged_cookie = {"kbs-session-id": "0123456789abcdef0123456789abcdef"}
            async with httpx.AsyncClient(base_url=kbs.url, cookies=forged_cookie) as other:
                r = await other.post("/kbs/v0/attest", json=good)
                expect(r, 401, "AttestationError", attest_failed)  # forged cookie
            http.cookies.clear()
            r = await http.post("/kbs/v0/attest", json=good)
            expect(r, 401, "AttestationError", attest_failed)  # missing cookie

            # resources and tokens
            path = "/kbs/v0/resource/default/test/secret"
            expect(await http.get(path), 401, "TokenNotFound")
            expired, forged = tokens(pki, tmp_path)
            for token in (expired, forged, "not.a.jwt", "garbage"):
                r = await http.get(path, headers={"Authorization": f"Bearer {token}"})
                expect(r, 401, "TokenVerifierError")
            log = kbs.log_text()
            assert "expired" in log
            for bad in ("default/../secret", "default/test/secret/extra", "default/test/"):
                r = await http.post(f"/kbs/v0/resource/{bad}", content=b"x", headers=admin_headers)
                assert r.status_code in (401, 404), (bad, r.status_code)
                if r.status_code == 401:
                    expect(r, 401, "PluginInternalError")
            r = await http.post(
                "/kbs/v0/resource/.hidden/test/secret", content=b"x", headers=admin_headers
            )
            expect(r, 401, "PluginInternalError")
            r = await http.get("//kbs/v0/resource/default/test/secret")
            assert r.status_code == 404

            # body above payload_request_size (1 MiB)
            r = await http.post(
                "/kbs/v0/resource/default/test/big", content=b"x" * (1024 * 1024 + 1),
                headers=admin_headers,
            )  # fmt: skip
            assert r.status_code == 413

            # admin: invalid Rego, wrong role, wrong issuer
            bad_rego = base64.urlsafe_b64encode(b"package policy\nallow if {").decode().rstrip("=")
            r = await http.post(
                "/kbs/v0/resource-policy", json={"policy": bad_rego}, headers=admin_headers
            )
            expect(r, 401, "PolicyEngineError", "does not compile")
            r = await http.post(
                "/kbs/v0/attestation-policy",
                json={"type": "rego", "policy_id": "default_cpu", "policy": bad_rego},
                headers=admin_headers,
            )
            expect(r, 401, "AttestationError", "Set Attestation Policy failed")
            r = await http.post("/kbs/v0/resource-policy", content=b"{", headers=admin_headers)
            expect(r, 401, "ParsePolicyError")
            for token in (pki.admin_token(role="viewer"), pki.admin_token(issuer="mallory")):
                r = await http.post(
                    "/kbs/v0/resource/default/test/secret",
                    content=b"overwritten",
                    headers={"Authorization": f"Bearer {token}"},
                )
                expect(r, 401, "AdminAuthInitialization")
            r = await http.post(
                "/kbs/v0/resource-policy",
                json={"policy": base64.urlsafe_b64encode(b"package policy\n").decode()},
                headers={"Authorization": f"Bearer {pki.admin_token(role='viewer')}"},
            )
            expect(r, 401, "AdminAuthAccess", "Role viewer not allowed")

            # framework-level answers
            assert (await http.post("/metrics")).status_code in (404, 405)
            assert (await http.get("/elsewhere")).status_code == 404
            assert (await http.patch(path)).status_code == 405

        await _healthy(kbs, pki)
        assert "Traceback" not in kbs.log_text()
