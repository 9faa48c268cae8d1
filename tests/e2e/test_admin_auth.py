"""Upstream's admin.rs scenarios (and a few more token cases) against a real server process.

Each admin operation (set-resource-policy, set-attestation-policy, set-resource) is tried with a
valid token, a token from a foreign key, on a DenyAll server and on a server whose ACL only opens
`reference-value/<id>`. Failures must be 401 ErrorInformation with upstream's variant: the
built-in endpoints answer `AdminAuthAccess`, the resource plugin's admin path answers
`AdminAuthInitialization` (an upstream quirk kept on purpose).
"""

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
from trustee.client.attesters import detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY, DENY_ALL_POLICY
from trustee.client.kbs import AdminRequestError, KbsClient

ERROR_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
RESOURCE_PATH = "a/b/c"
POLICY_ID = "fake_policy_id"

# A trivial AS policy: every appraisal affirming, with a vector value nothing else produces.
AFFIRMING_AS_POLICY = """package policy
import rego.v1
trust_claims := {"executables": 3, "hardware": 2, "configuration": 3}
"""
CONTRAINDICATED_AS_POLICY = """package policy
import rego.v1
trust_claims := {"executables": 3, "hardware": 97, "configuration": 99}
"""


def b64url(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class Operation:
    name: str
    path: str  # after /kbs/v0/
    variant: str  # ErrorInformation type suffix when the admin check refuses
    denied_prefix: str  # how the detail starts when the admin check refuses

    def body(self, payload: str) -> tuple[bytes, str]:
        if self.name == "set-resource":
            return payload.encode(), "application/octet-stream"
        if self.name == "set-resource-policy":
            doc: dict[str, str] = {"policy": b64url(payload)}
        else:
            doc = {"type": "rego", "policy_id": POLICY_ID, "policy": b64url(payload)}
        return json.dumps(doc).encode(), "application/json"

    def default_payload(self) -> str:
        return {
            "set-resource": "resource-value-1",
            "set-resource-policy": ALLOW_ALL_POLICY,
            "set-attestation-policy": AFFIRMING_AS_POLICY,
        }[self.name]

    def hostile_payload(self) -> str:
        return {
            "set-resource": "overwritten-by-a-rejected-request",
            "set-resource-policy": DENY_ALL_POLICY,
            "set-attestation-policy": CONTRAINDICATED_AS_POLICY,
        }[self.name]


OPERATIONS = (
    Operation(
        "set-resource-policy",
        "resource-policy",
        "AdminAuthAccess",
        "admin access denied for endpoint resource-policy: Admin access denied: ",
    ),
    Operation(
        "set-attestation-policy",
        "attestation-policy",
        "AdminAuthAccess",
        "admin access denied for endpoint attestation-policy: Admin access denied: ",
    ),
    Operation(
        "set-resource",
        f"resource/{RESOURCE_PATH}",
        "AdminAuthInitialization",
        "failed to initialize [admin] configuration: Admin access denied: ",
    ),
)


async def send(
    http: httpx.AsyncClient,
    op: Operation,
    token: str | None,
    payload: str | None = None,
    *,
    authorization: str | None = None,
) -> httpx.Response:
    content, content_type = op.body(payload if payload is not None else op.default_payload())
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post(f"/kbs/v0/{op.path}", content=content, headers=headers)


def assert_denied(response: httpx.Response, op: Operation, fragment: str) -> dict[str, Any]:
    context = f"{op.name}: {response.status_code} {response.text}"
    assert response.status_code == 401, context
    info: dict[str, Any] = response.json()
    assert info["type"] == ERROR_PREFIX + op.variant, context
    assert info["detail"].startswith(op.denied_prefix), context
    assert fragment in info["detail"], context
    return info


async def kbs_client_call(url: str, token: str, op: Operation) -> None:
    """The same operation through the Python kbs-client, as upstream's tests drive it."""
    async with KbsClient(url, admin_token=token) as admin:
        if op.name == "set-resource":
            await admin.set_resource(RESOURCE_PATH, op.default_payload().encode())
        elif op.name == "set-resource-policy":
            await admin.set_resource_policy(op.default_payload())
        else:
            await admin.set_attestation_policy(op.default_payload(), policy_id=POLICY_ID)


def storage_snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def unsigned_token(**claims: Any) -> str:
    """An `alg: none` JWT with an empty signature, valid claims otherwise."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}))
    body = {"iss": "issuer", "aud": ["kbs"], "iat": now, "exp": now + 600, **claims}
    return f"{header}.{b64url(json.dumps(body))}."


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


async def test_authenticated_authorization(tmp_path: Path, pki: Pki) -> None:
    """Valid tokens succeed; foreign-key, expired, wrong-issuer, role-less, unsigned and absent
    tokens do not, and what they tried to write is not stored."""
    store = tmp_path / "store"
    good = pki.admin_token(role="tester", issuer="issuer")
    bad_tokens = {
        "foreign key": (
            pki.admin_token(role="tester", key=pki.other_admin_key),
            "Cannot verify token with any of the issuers",
        ),
        "expired": (
            pki.admin_token(role="tester", lifetime=-120),
            "Cannot verify token with any of the issuers",
        ),
        "wrong issuer": (
            pki.admin_token(role="tester", issuer="someone-else"),
            "Cannot verify token with any of the issuers",
        ),
        # `Pki.admin_token` drops claims whose value is None.
        "no role": (pki.admin_token(role=None), "role"),  # type: ignore[arg-type]
        "no exp": (
            pki.admin_token(role="tester", exp=None),
            "Cannot verify token with any of the issuers",
        ),
        "alg none": (unsigned_token(role="tester"), "Cannot verify token with any of the issuers"),
        "role without an ACL": (pki.admin_token(role="admin"), "Role admin not allowed"),
    }
    async with run_kbs(integration_config(store, pki.admin_public), tmp_path) as kbs:
        async with kbs.client() as http:
            # (1) valid token: 200 for every operation, raw and through the client.
            # Expired 30 s ago is still inside upstream's 60 s leeway.
            recently_expired = pki.admin_token(role="tester", lifetime=-30)
            for op in OPERATIONS:
                response = await send(http, op, good)
                assert response.status_code == 200, f"{op.name}: {response.text}"
                await kbs_client_call(kbs.url, good, op)
                response = await send(http, op, recently_expired)
                assert response.status_code == 200, f"{op.name}: {response.text}"
            # `default_cpu` (the id evaluation uses) gets the same policy, so its effect shows.
            async with KbsClient(kbs.url, admin_token=good) as admin:
                await admin.set_attestation_policy(AFFIRMING_AS_POLICY, policy_id="default_cpu")
            before = storage_snapshot(store)

            # (2) upstream's foreign-key token, and every other token that must not pass.
            for label, (token, fragment) in bad_tokens.items():
                for op in OPERATIONS:
                    response = await send(http, op, token, op.hostile_payload())
                    info = assert_denied(response, op, fragment)
                    if label == "no role":
                        assert "Missing required `role` claim" in info["detail"], info
                # The default_cpu policy is not overwritten either.
                ascpu = OPERATIONS[1]
                content, ctype = ascpu.body(CONTRAINDICATED_AS_POLICY)
                doc = json.loads(content) | {"policy_id": "default_cpu"}
                response = await http.post(
                    "/kbs/v0/attestation-policy",
                    content=json.dumps(doc).encode(),
                    headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"},
                )
                assert_denied(response, ascpu, fragment)

            # No Authorization header at all, and a header that is not a Bearer.
            for op in OPERATIONS:
                response = await send(http, op, None, op.hostile_payload())
                assert_denied(response, op, "Failed to parse HTTP Auth Bearer header")
                response = await send(
                    http, op, None, op.hostile_payload(), authorization=f"Basic {good}"
                )
                assert_denied(response, op, "Failed to parse HTTP Auth Bearer header")

            # The client reports the server's body, as kbs-client does.
            for op in OPERATIONS:
                with pytest.raises(AdminRequestError) as caught:
                    await kbs_client_call(
                        kbs.url, pki.admin_token(role="tester", key=pki.other_admin_key), op
                    )
                assert caught.value.status == 401
                assert "Cannot verify token with any of the issuers" in str(caught.value)

        # Nothing a rejected request sent reached the storage …
        assert storage_snapshot(store) == before
        # … and reading back through the allowed paths shows the accepted values.
        async with KbsClient(kbs.url, attesters=detect_attesters({}), retry_delay=0) as guest:
            # The resource policy is still allow-all (not the rejected deny-all) and the
            # resource still holds the value the valid token wrote.
            assert await guest.get_resource(RESOURCE_PATH) == b"resource-value-1"
            assert guest.token is not None
            claims = jwt_claims(guest.token.content)
        cpu0 = claims["submods"]["cpu0"]
        assert cpu0["ear.status"] == "affirming"
        vector = cpu0["ear.trustworthiness-vector"]
        assert (vector["executables"], vector["hardware"], vector["configuration"]) == (3, 2, 3)
        stored = store / "attestation_service_policy" / f"{POLICY_ID}.rego"
        assert stored.read_text() == AFFIRMING_AS_POLICY
        assert kbs.alive


async def test_deny_all(tmp_path: Path, pki: Pki) -> None:
    store = tmp_path / "store"
    good = pki.admin_token(role="tester", issuer="issuer")
    config = integration_config(store, pki.admin_public, mode="DenyAll")
    async with run_kbs(config, tmp_path) as kbs, kbs.client() as http:
        before = storage_snapshot(store)
        for op in OPERATIONS:
            response = await send(http, op, good)
            assert_denied(response, op, "DenyAll authorization_mode is enabled")
            # Without a token it is the same answer: DenyAll does not look at tokens.
            response = await send(http, op, None)
            assert_denied(response, op, "DenyAll authorization_mode is enabled")
            with pytest.raises(AdminRequestError, match="DenyAll authorization_mode is enabled"):
                await kbs_client_call(kbs.url, good, op)
        assert storage_snapshot(store) == before
        # The guest side is unaffected by the admin mode.
        response = await http.post(
            "/kbs/v0/auth",
            json={"version": "0.4.0", "tee": "sample", "extra-params": {}},
        )
        assert response.status_code == 200, response.text


async def test_acl_restricted_to_reference_values(tmp_path: Path, pki: Pki) -> None:
    store = tmp_path / "store"
    good = pki.admin_token(role="tester", issuer="issuer")
    config = integration_config(
        store, pki.admin_public, acl="^/kbs/v0/reference-value/[a-zA-Z0-9]+$"
    )
    async with run_kbs(config, tmp_path) as kbs, kbs.client() as http:
        before = storage_snapshot(store)
        for op in OPERATIONS:
            response = await send(http, op, good)
            info = assert_denied(response, op, "Role tester not allowed")
            assert info["detail"].endswith(f"Role tester not allowed for path /kbs/v0/{op.path}")
            with pytest.raises(AdminRequestError, match="Role tester not allowed"):
                await kbs_client_call(kbs.url, good, op)
        assert storage_snapshot(store) == before
        # Positive control: the one path the ACL opens passes the admin check (the RVPS then
        # answers for the unknown id) …
        response = await http.get(
            "/kbs/v0/reference-value/svn", headers={"Authorization": f"Bearer {good}"}
        )
        assert response.status_code == 401
        assert response.json()["type"] == ERROR_PREFIX + "RvpsError", response.text
        # … and the ACL is matched against the whole URI, so a query string falls outside it.
        response = await http.get(
            "/kbs/v0/reference-value/svn?x=1", headers={"Authorization": f"Bearer {good}"}
        )
        assert response.json()["type"] == ERROR_PREFIX + "AdminAuthAccess", response.text
        assert "Role tester not allowed" in response.json()["detail"]
