"""Admin tokens that are not valid yet (`nbf` or `iat` in the future) are refused on every admin
endpoint of a real server, and nothing they carried is stored; clock skew inside the leeway that
`exp` gets (60 s) is still tolerated."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.configs import integration_config
from tests.e2e.harness import run_kbs
from tests.e2e.pki import Pki, make_pki
from trustee.client.cli import ALLOW_ALL_POLICY, DENY_ALL_POLICY
from trustee.client.kbs import sample_reference_value_message

# An attestation policy must give trust claims to be accepted.
AS_POLICY = 'package policy\ndefault trust_claims := {"executables": 3}\n'

ERR = "https://github.com/confidential-containers/kbs/errors/"
REFUSED = "Cannot verify token with any of the issuers"


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    variant: str
    body: dict[str, Any] | bytes | None = None


# The hostile bodies would each change something if they were accepted.
ENDPOINTS = (
    Endpoint("POST", "resource/default/test/key", "AdminAuthInitialization", b"overwritten"),
    Endpoint("PUT", "resource/default/test/key", "AdminAuthInitialization", b"overwritten"),
    Endpoint("DELETE", "resource/default/test/key", "AdminAuthInitialization"),
    Endpoint("POST", "resource-policy", "AdminAuthAccess", {"policy": b64url(DENY_ALL_POLICY)}),
    Endpoint("GET", "resource-policy", "AdminAuthAccess"),
    Endpoint(
        "POST",
        "attestation-policy",
        "AdminAuthAccess",
        {"type": "rego", "policy_id": "default_cpu", "policy": b64url(DENY_ALL_POLICY)},
    ),
    Endpoint(
        "POST", "reference-value", "AdminAuthAccess", sample_reference_value_message("svn", 9)
    ),
    Endpoint("GET", "reference-value/svn", "AdminAuthAccess"),
    Endpoint("POST", "policy-explain", "AdminAuthAccess", {"kind": "resource", "input": {}}),
)


async def call(http: httpx.AsyncClient, ep: Endpoint, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if isinstance(ep.body, bytes):
        return await http.request(ep.method, f"/kbs/v0/{ep.path}", content=ep.body, headers=headers)
    if ep.body is not None:
        return await http.request(ep.method, f"/kbs/v0/{ep.path}", json=ep.body, headers=headers)
    return await http.request(ep.method, f"/kbs/v0/{ep.path}", headers=headers)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_tokens_not_yet_valid_are_refused_everywhere(tmp_path: Path, pki: Pki) -> None:
    store = tmp_path / "store"
    now = int(time.time())
    good = pki.admin_token(role="tester")
    early = {
        "nbf an hour ahead": pki.admin_token(role="tester", nbf=now + 3600, lifetime=7200),
        "iat an hour ahead": pki.admin_token(role="tester", iat=now + 3600, lifetime=7200),
        "nbf beyond the leeway": pki.admin_token(role="tester", nbf=now + 120),
        "iat beyond the leeway": pki.admin_token(role="tester", iat=now + 120),
        "nbf not a number": pki.admin_token(role="tester", nbf="soon"),
        "iat not a number": pki.admin_token(role="tester", iat="soon"),
    }
    async with run_kbs(integration_config(store, pki.admin_public), tmp_path) as kbs:
        async with kbs.client() as http:
            setup = (
                Endpoint("POST", "resource/default/test/key", "", b"original"),
                Endpoint("POST", "resource-policy", "", {"policy": b64url(ALLOW_ALL_POLICY)}),
                Endpoint(
                    "POST",
                    "attestation-policy",
                    "",
                    {
                        "type": "rego",
                        "policy_id": "default_cpu",
                        "policy": b64url(AS_POLICY),
                    },
                ),
                Endpoint("POST", "reference-value", "", sample_reference_value_message("svn", 1)),
            )
            for ep in setup:
                r = await call(http, ep, good)
                assert r.status_code == 200, (ep, r.text)
            before = snapshot(store)
            assert before

            for label, token in early.items():
                for ep in ENDPOINTS:
                    r = await call(http, ep, token)
                    context = (label, ep.method, ep.path, r.status_code, r.text)
                    assert r.status_code == 401, context
                    info = r.json()
                    assert info["type"] == ERR + ep.variant, context
                    assert REFUSED in info["detail"], context
            assert snapshot(store) == before
            r = await call(http, Endpoint("GET", "reference-value/svn", ""), good)
            assert r.status_code == 200 and json.loads(r.text) == 1, r.text

            # Skew inside the leeway is what every deployed clock pair has: still accepted.
            skewed = pki.admin_token(role="tester", nbf=now + 30, iat=now + 30)
            r = await call(http, ENDPOINTS[4], skewed)
            assert r.status_code == 200, r.text
        log = kbs.log_text()
        assert "not valid before" in log and "issued at" in log
        assert "Traceback" not in log
