"""Legacy admin authorisation.

≤v0.15 `[admin] insecure_api`/`auth_public_key`: an Ed25519 key, EdDSA tokens as kbs-client
mints them (`{iat, exp: iat+7200, nbf}`), jwt-simple's 15-minute tolerance, no required claims.
v0.16–v0.20 `type = "Simple"`: personas (the matching persona id is the role) with an optional
roles ACL; `InsecureAllowAll` / `DenyAll`. Configs go through the real loader.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustee.admin.auth import AdminAuthorizer, AdminConfigError, AdminDenied, AdminIdentity
from trustee.config import parse
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jws import sign_compact

NOW = 1_736_512_345
MIN = 60
RESOURCE = "/kbs/v0/resource/default/kbsres1/key1"
POLICY = "/kbs/v0/resource-policy"
BASE = "[http_server]\ninsecure_http = true\n[admin]\n"
BAD_HEADER = r"^Failed to parse HTTP Auth Bearer header$"
VERIFY_FAILED = r"^Admin Token verification failed"


def write_public_pem(
    path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
) -> str:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def kbs_client_token(key: ed25519.Ed25519PrivateKey, now: int = NOW, **claims: Any) -> str:
    """What kbs-client ≤v0.17 sends: jwt-simple `Claims::create(2 h)` signed with EdDSA."""
    body: dict[str, Any] = {"iat": now, "exp": now + 7200, "nbf": now}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return sign_compact({"alg": "EdDSA", "typ": "JWT"}, json.dumps(body).encode(), key)


def forged_alg_token(key: ed25519.Ed25519PrivateKey, alg: str) -> str:
    """A valid Ed25519 signature under a header that claims another algorithm."""
    header = b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url_encode(json.dumps({"iat": NOW, "exp": NOW + 7200, "nbf": NOW}).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def authorizer_for(admin_toml: str) -> AdminAuthorizer:
    config = parse(BASE + admin_toml)
    authorizer = AdminAuthorizer(config.admin)
    await authorizer.load()
    return authorizer


@pytest.fixture
def admin_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def legacy(tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey) -> AdminAuthorizer:
    pem = write_public_pem(tmp_path / "publicKey", admin_key)
    return await authorizer_for(f'insecure_api = false\nauth_public_key = "{pem}"\n')


# --- insecure_api = false + auth_public_key ---------------------------------------------------


async def test_kbs_client_token_is_accepted(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    assert legacy.config.mode == "LegacyPublicKey"
    identity = legacy.authorize(bearer(kbs_client_token(admin_key)), RESOURCE, False, now=NOW)
    assert identity == AdminIdentity(role=None)
    # Every admin endpoint; remote peers are fine (this mode is not the loopback dev default).
    legacy.authorize(bearer(kbs_client_token(admin_key)), POLICY, False, now=NOW)
    legacy.authorize(
        bearer(kbs_client_token(admin_key)), "/kbs/v0/attestation-policy", False, now=NOW
    )


async def test_no_claims_are_required(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    # No role, iss, aud, nor even exp/nbf/iat: jwt-simple's defaults require none of them.
    bare = kbs_client_token(admin_key, iat=None, exp=None, nbf=None)
    assert legacy.authorize(bearer(bare), RESOURCE, False, now=NOW).role is None
    # v0.18–v0.20 clients send {iat, exp} without nbf.
    legacy.authorize(bearer(kbs_client_token(admin_key, nbf=None)), RESOURCE, False, now=NOW)
    # A role claim is tolerated and does not change anything.
    with_role = kbs_client_token(admin_key, role="whatever")
    assert legacy.authorize(bearer(with_role), RESOURCE, False, now=NOW).role is None


async def test_token_from_another_key_is_rejected_with_a_reason(legacy: AdminAuthorizer) -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(AdminDenied, match=VERIFY_FAILED) as info:
        legacy.authorize(bearer(kbs_client_token(other)), RESOURCE, False, now=NOW)
    assert "signature" in info.value.reason


@pytest.mark.parametrize(
    ("exp_offset", "accepted"),
    [(-10 * MIN, True), (-14 * MIN, True), (-16 * MIN, False), (-20 * MIN, False)],
)
async def test_exp_has_fifteen_minutes_tolerance(
    legacy: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    exp_offset: int,
    accepted: bool,
) -> None:
    token = kbs_client_token(admin_key, now=NOW - 7200 + exp_offset)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"] == (
        NOW + exp_offset
    )
    if accepted:
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)
    else:
        with pytest.raises(AdminDenied, match=VERIFY_FAILED) as info:
            legacy.authorize(bearer(token), RESOURCE, False, now=NOW)
        assert "expired" in info.value.reason


@pytest.mark.parametrize(
    ("nbf_offset", "accepted"),
    [(10 * MIN, True), (14 * MIN, True), (16 * MIN, False), (20 * MIN, False)],
)
async def test_nbf_has_fifteen_minutes_tolerance(
    legacy: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    nbf_offset: int,
    accepted: bool,
) -> None:
    # A client whose clock runs ahead: only nbf is in the future (iat kept at now).
    token = kbs_client_token(admin_key, nbf=NOW + nbf_offset)
    if accepted:
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)
    else:
        with pytest.raises(AdminDenied, match=VERIFY_FAILED) as info:
            legacy.authorize(bearer(token), RESOURCE, False, now=NOW)
        assert "not valid yet" in info.value.reason


@pytest.mark.parametrize(("iat_offset", "accepted"), [(10 * MIN, True), (20 * MIN, False)])
async def test_iat_in_the_future_has_fifteen_minutes_tolerance(
    legacy: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    iat_offset: int,
    accepted: bool,
) -> None:
    # The whole client clock ahead: iat = nbf = now + offset, exp two hours later.
    token = kbs_client_token(admin_key, now=NOW + iat_offset)
    if accepted:
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)
    else:
        with pytest.raises(AdminDenied, match=VERIFY_FAILED):
            legacy.authorize(bearer(token), RESOURCE, False, now=NOW)


@pytest.mark.parametrize("claim", ["iat", "nbf", "exp"])
async def test_non_numeric_time_claims_are_rejected(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey, claim: str
) -> None:
    claims: dict[str, Any] = {claim: "soon"}
    token = kbs_client_token(admin_key, **claims)
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)


@pytest.mark.parametrize("alg", ["ES256", "RS256", "HS256", "none", "eddsa", "Ed25519"])
async def test_non_eddsa_alg_is_rejected(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey, alg: str
) -> None:
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(forged_alg_token(admin_key, alg)), RESOURCE, False, now=NOW)
    # The same signature under the right header verifies: only the alg made the difference.
    legacy.authorize(bearer(forged_alg_token(admin_key, "EdDSA")), RESOURCE, False, now=NOW)


async def test_es256_token_is_rejected(legacy: AdminAuthorizer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = sign_compact({"alg": "ES256"}, json.dumps({"iat": NOW}).encode(), ec_key)
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"X-Authorization": "Bearer abc"},
    ],
)
async def test_missing_or_malformed_header(
    legacy: AdminAuthorizer, headers: dict[str, str]
) -> None:
    with pytest.raises(AdminDenied, match=BAD_HEADER):
        legacy.authorize(headers, RESOURCE, False, now=NOW)


async def test_lowercase_header_and_scheme_are_accepted(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    token = kbs_client_token(admin_key)
    legacy.authorize({"authorization": f"bearer {token}"}, RESOURCE, False, now=NOW)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "a.b.c.d.e", "e30.e30.AAAA"])
async def test_garbage_tokens_are_verification_failures(
    legacy: AdminAuthorizer, token: str
) -> None:
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(token), RESOURCE, False, now=NOW)


async def test_tampered_payload_is_rejected(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    header, _, signature = kbs_client_token(admin_key).split(".")
    payload = b64url_encode(json.dumps({"iat": NOW, "exp": NOW + 10**9}).encode())
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(f"{header}.{payload}.{signature}"), RESOURCE, False, now=NOW)


async def test_uses_the_clock_when_now_is_not_given(
    legacy: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    legacy.authorize(bearer(kbs_client_token(admin_key, now=int(time.time()))), RESOURCE, False)
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        legacy.authorize(bearer(kbs_client_token(admin_key)), RESOURCE, False)  # 2025: expired


async def test_auth_public_key_must_be_an_ed25519_pem(tmp_path: Path) -> None:
    ec_pem = write_public_pem(tmp_path / "ec.pub", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AdminConfigError, match="Ed25519"):
        await authorizer_for(f'auth_public_key = "{ec_pem}"\n')
    with pytest.raises(AdminConfigError, match=r"missing\.pub"):
        await authorizer_for(f'auth_public_key = "{tmp_path / "missing.pub"}"\n')
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key")
    with pytest.raises(AdminConfigError, match=r"junk\.pub"):
        await authorizer_for(f'auth_public_key = "{junk}"\n')


# --- insecure_api = true ------------------------------------------------------------------------


async def test_insecure_api_allows_anyone_and_never_reads_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The seed's form: auth_public_key names a file that does not exist here; it is not read.
    caplog.set_level(logging.WARNING, logger="trustee.admin.auth")
    authorizer = await authorizer_for(
        'insecure_api = true\nauth_public_key = "/nonexistent/auth-secret/publicKey"\n'
    )
    assert "insecure admin APIs are enabled" in caplog.messages
    for headers in ({}, bearer("garbage"), {"Authorization": "Basic x"}):
        assert authorizer.authorize(headers, POLICY, False, now=NOW) == AdminIdentity(role=None)


# --- type = "Simple" and friends ------------------------------------------------------------


@pytest.fixture
def personas(tmp_path: Path) -> dict[str, ed25519.Ed25519PrivateKey]:
    keys = {name: ed25519.Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol")}
    for name, key in keys.items():
        write_public_pem(tmp_path / f"{name}.pub", key)
    return keys


def persona_toml(tmp_path: Path, names: list[str]) -> str:
    return "".join(
        f'[[admin.personas]]\nid = "{n}"\npublic_key_path = "{tmp_path / f"{n}.pub"}"\n'
        for n in names
    )


ROLES = (
    '[[admin.roles]]\nid = "alice"\nallowed_endpoints = "^/kbs/v0/resource/.+$"\n'
    '[[admin.roles]]\nid = "bob"\nallowed_endpoints = "^/kbs/v0/resource-policy$"\n'
    '[[admin.roles]]\nid = "bob"\nallowed_endpoints = "^/kbs/v0/attestation-policy$"\n'
)


async def test_simple_persona_id_becomes_the_role(
    tmp_path: Path, personas: dict[str, ed25519.Ed25519PrivateKey]
) -> None:
    authorizer = await authorizer_for(
        'type = "Simple"\n' + persona_toml(tmp_path, ["alice", "bob"])
    )
    for name in ("alice", "bob"):
        token = kbs_client_token(personas[name])
        # No roles configured: any persona may use every admin endpoint.
        for uri in (RESOURCE, POLICY):
            assert authorizer.authorize(bearer(token), uri, False, now=NOW).role == name
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        authorizer.authorize(bearer(kbs_client_token(personas["carol"])), RESOURCE, False, now=NOW)


async def test_simple_roles_acl_applies(
    tmp_path: Path, personas: dict[str, ed25519.Ed25519PrivateKey]
) -> None:
    authorizer = await authorizer_for(
        'type = "Simple"\n' + persona_toml(tmp_path, ["alice", "bob", "carol"]) + ROLES
    )
    alice = bearer(kbs_client_token(personas["alice"]))
    bob = bearer(kbs_client_token(personas["bob"]))
    carol = bearer(kbs_client_token(personas["carol"]))

    assert authorizer.authorize(alice, RESOURCE, False, now=NOW).role == "alice"
    with pytest.raises(AdminDenied, match=rf"^Role alice not allowed for path {POLICY}$"):
        authorizer.authorize(alice, POLICY, False, now=NOW)
    # The regex must match the whole URI.
    with pytest.raises(AdminDenied, match="Role alice not allowed"):
        authorizer.authorize(alice, "/kbs/v0/resource-policy/x", False, now=NOW)

    assert authorizer.authorize(bob, POLICY, False, now=NOW).role == "bob"
    assert authorizer.authorize(bob, "/kbs/v0/attestation-policy", False, now=NOW).role == "bob"
    with pytest.raises(AdminDenied, match="Role bob not allowed"):
        authorizer.authorize(bob, RESOURCE, False, now=NOW)
    with pytest.raises(AdminDenied, match="Role bob not allowed"):
        authorizer.authorize(bob, POLICY + "x", False, now=NOW)

    # Roles are configured, carol has none: she may do nothing.
    for uri in (RESOURCE, POLICY):
        with pytest.raises(AdminDenied, match="Role carol not allowed"):
            authorizer.authorize(carol, uri, False, now=NOW)


async def test_simple_tokens_get_the_same_time_tolerance(
    tmp_path: Path, personas: dict[str, ed25519.Ed25519PrivateKey]
) -> None:
    authorizer = await authorizer_for('type = "Simple"\n' + persona_toml(tmp_path, ["alice"]))
    late = kbs_client_token(personas["alice"], now=NOW - 7200 - 10 * MIN)
    assert authorizer.authorize(bearer(late), RESOURCE, False, now=NOW).role == "alice"
    too_late = kbs_client_token(personas["alice"], now=NOW - 7200 - 20 * MIN)
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        authorizer.authorize(bearer(too_late), RESOURCE, False, now=NOW)
    with pytest.raises(AdminDenied, match=VERIFY_FAILED):
        authorizer.authorize(
            bearer(forged_alg_token(personas["alice"], "ES256")), RESOURCE, False, now=NOW
        )


async def test_simple_without_personas_denies_everything(
    personas: dict[str, ed25519.Ed25519PrivateKey],
) -> None:
    authorizer = await authorizer_for('type = "Simple"\n')
    for key in personas.values():
        with pytest.raises(AdminDenied):
            authorizer.authorize(bearer(kbs_client_token(key)), RESOURCE, True, now=NOW)
    with pytest.raises(AdminDenied, match=BAD_HEADER):
        authorizer.authorize({}, RESOURCE, True, now=NOW)


async def test_simple_persona_key_must_be_ed25519(tmp_path: Path) -> None:
    write_public_pem(tmp_path / "ec.pub", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AdminConfigError, match="Ed25519"):
        await authorizer_for('type = "Simple"\n' + persona_toml(tmp_path, ["ec"]))


async def test_type_insecure_allow_all_admits_remote_clients(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trustee.admin.auth")
    authorizer = await authorizer_for('type = "InsecureAllowAll"\n')
    assert (
        "The Allow All admin backend is being used. Admin endpoints will be accessible to anyone."
        in caplog.messages
    )
    assert authorizer.authorize({}, RESOURCE, False, now=NOW) == AdminIdentity(role=None)


async def test_type_deny_all_denies_even_valid_looking_requests(
    admin_key: ed25519.Ed25519PrivateKey,
) -> None:
    authorizer = await authorizer_for('type = "DenyAll"\n')
    for headers in ({}, bearer(kbs_client_token(admin_key))):
        with pytest.raises(AdminDenied, match="DenyAll"):
            authorizer.authorize(headers, RESOURCE, True, now=NOW)
