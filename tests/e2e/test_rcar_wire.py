"""RCAR on the wire: cookie form, challenge shape, re-attest, token layout, JWE for each key."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import run_kbs
from trustee.client.attesters import SampleAttester
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import binding, jwe

CONFIG = """
[http_server]
sockets = ["127.0.0.1:{port}"]
insecure_http = true
[admin]
authorization_mode = "InsecureAllowAll"
[attestation_token]
insecure_header_jwk = true
[attestation_service]
timeout = 3
[[plugins]]
name = "resource"
"""
ALLOW = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)


def _payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


async def _attest(http: httpx.AsyncClient, key: Any) -> tuple[httpx.Response, dict[str, Any]]:
    r = await http.post(
        "/kbs/v0/auth",
        json={
            "version": "0.4.0",
            "tee": "sample",
            "extra-params": {"supported-hash-algorithms": ["sha384"]},
        },
    )
    assert r.status_code == 200
    challenge = r.json()
    jwk = tee_public_jwk(key)
    digest = binding.runtime_data_digest(binding.primary_runtime_data(jwk, challenge["nonce"], ""))
    body = {
        "init-data": None,
        "runtime-data": {"nonce": challenge["nonce"], "tee-pubkey": jwk},
        "tee-evidence": {
            "primary_evidence": SampleAttester().evidence(digest, None),
            "additional_evidence": "",
        },
    }
    return r, body


EXPIRES = r"Expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"


@pytest.mark.parametrize("sessions", ["sealed", "Memory"])
async def test_wire_forms(sessions: str, tmp_path: Path) -> None:
    # Stored sessions reproduce upstream's cookie exactly (a UUID, unchanged by /attest);
    # sealed sessions carry their state in a base64url cookie that /attest replaces.
    config = CONFIG if sessions == "sealed" else 'session_storage_type = "Memory"\n' + CONFIG
    value = r"[0-9a-f]{32}" if sessions == "Memory" else r"[A-Za-z0-9_-]{60,4096}"
    async with run_kbs(config, tmp_path) as kbs:
        async with kbs.client() as admin:
            assert (
                await admin.post("/kbs/v0/resource/r/t/k", content=b"s3cret")
            ).status_code == 200
            policy = base64.urlsafe_b64encode(ALLOW.encode()).decode().rstrip("=")
            r = await admin.post("/kbs/v0/resource-policy", json={"policy": policy})
            assert r.status_code == 200
            r = await admin.get("/kbs/v0/resource-policy")
            assert r.json() == ["resource-policy"]

        for kind in ("ec-p256", "ec-p521", "rsa"):
            key = generate_tee_key(kind)
            async with kbs.client() as http:
                # The client's first probe has no session: 401 with ErrorInformation JSON.
                probe = await http.get("/kbs/v0/resource/r/t/k")
                assert probe.status_code == 401
                assert probe.json()["type"].endswith("/TokenNotFound")

                auth, body = await _attest(http, key)
                challenge = auth.json()
                assert list(challenge) == ["nonce", "extra-params"]
                assert challenge["extra-params"] == "" and len(challenge["nonce"]) == 44
                cookie = auth.headers["set-cookie"]
                assert re.fullmatch(f"kbs-session-id={value}; {EXPIRES}", cookie), cookie

                first = await http.post("/kbs/v0/attest", json=body)
                assert first.status_code == 200, first.text
                assert first.headers["content-type"] == "application/json"
                attested_cookie = first.headers["set-cookie"]
                if sessions == "Memory":
                    assert attested_cookie == cookie
                else:
                    assert attested_cookie != cookie
                    assert attested_cookie.split("; ")[1] == cookie.split("; ")[1]
                    assert re.fullmatch(f"kbs-session-id={value}; {EXPIRES}", attested_cookie)
                token = first.json()["token"]
                header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
                assert list(header) == ["typ", "alg", "jwk"] and header["alg"] == "ES256"
                claims = _payload(token)
                assert list(claims) == [
                    "eat_profile", "iat", "ear.verifier-id", "submods", "exp", "iss",
                ]  # fmt: skip
                assert claims["exp"] - claims["iat"] == 300
                cpu0 = claims["submods"]["cpu0"]
                evidence = cpu0["ear.veraison.annotated-evidence"]
                assert evidence["runtime_data_claims"]["tee-pubkey"] == tee_public_jwk(key)
                assert evidence["sample"]["launch_digest"] == "abcde"
                assert "report_data" not in evidence["sample"]

                # Re-attesting the same session returns the same token (a sealed session:
                # the same claims, signed again) without re-verifying.
                again = await http.post("/kbs/v0/attest", content=b"not even json")
                assert again.status_code == 200
                if sessions == "Memory":
                    assert again.json()["token"] == token
                else:
                    assert _payload(again.json()["token"]) == claims
                    assert again.headers["set-cookie"] == attested_cookie

                r = await http.get("/kbs/v0/resource/r/t/k")
                assert r.status_code == 200
                sealed = r.json()
                assert list(sealed) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
                assert all("=" not in v for v in sealed.values())
                protected = json.loads(base64.urlsafe_b64decode(sealed["protected"] + "=="))
                assert list(protected)[:2] == ["alg", "enc"]
                assert jwe.decrypt(sealed, key) == b"s3cret"

                # Missing resource with a valid token: 401 PluginInternalError (not 404).
                r = await http.get("/kbs/v0/resource/r/t/absent")
                assert r.status_code == 401
                assert r.json()["type"].endswith("/PluginInternalError")
