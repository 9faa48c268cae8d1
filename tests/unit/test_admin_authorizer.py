"""Admin authorisation, `[admin] authorization_mode` of KBS v0.21."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustee.admin.auth import AdminAuthorizer, AdminConfigError, AdminDenied, AdminIdentity
from trustee.config.model import AclRule, AdminConfig, IdentityProvider
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import public_jwk
from trustee.crypto.jws import sign_compact

NOW = 1_760_000_000
RESOURCE = "/kbs/v0/resource/default/key/1"
CANNOT_VERIFY = r"^Cannot verify token with any of the issuers$"
BAD_HEADER = r"^Failed to parse HTTP Auth Bearer header$"

ADMIN_ACLS = [
    AclRule(role="admin", allowed_endpoints="^/kbs/v0/.+$"),
    AclRule(role="reader", allowed_endpoints="^/kbs/v0/reference-value/.+$"),
    AclRule(role="reader", allowed_endpoints=r"^/kbs/v0/resource/default/key/1\?version=2$"),
]


def eddsa_token(key: ed25519.Ed25519PrivateKey, **claims: Any) -> str:
    body = {"iss": "issuer", "role": "admin", "aud": ["kbs"], "iat": NOW, "exp": NOW + 600}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return sign_compact({"alg": "EdDSA", "typ": "JWT"}, json.dumps(body).encode(), key)


def es256_token(key: ec.EllipticCurvePrivateKey, kid: str | None, **claims: Any) -> str:
    body = {"iss": "https://idp.example", "role": "admin", "exp": NOW + 600}
    body.update(claims)
    header: dict[str, Any] = {"alg": "ES256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return sign_compact(header, json.dumps(body).encode(), key)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_public_pem(
    path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


async def authenticated(
    providers: list[IdentityProvider], acls: list[AclRule] | None = None
) -> AdminAuthorizer:
    authorizer = AdminAuthorizer(
        AdminConfig(
            mode="AuthenticatedAuthorization",
            identity_providers=providers,
            acls=ADMIN_ACLS if acls is None else acls,
        )
    )
    await authorizer.load()
    return authorizer


@pytest.fixture
def admin_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def pem_authorizer(tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey) -> AdminAuthorizer:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    return await authenticated(
        [IdentityProvider(issuer="issuer", audience="kbs", public_key_uri=str(pem))]
    )


# --- simple modes --------------------------------------------------------------------------


async def test_insecure_allow_all() -> None:
    authorizer = AdminAuthorizer(AdminConfig(mode="InsecureAllowAll"))
    await authorizer.load()
    for peer_is_loopback in (True, False):
        identity = authorizer.authorize({}, RESOURCE, peer_is_loopback)
        assert identity == AdminIdentity(role=None)
    # garbage credentials are not even looked at
    assert authorizer.authorize({"Authorization": "garbage"}, RESOURCE, False).role is None


async def test_insecure_allow_all_loopback_only() -> None:
    authorizer = AdminAuthorizer(AdminConfig(mode="InsecureAllowAll", loopback_only=True))
    await authorizer.load()
    assert authorizer.authorize({}, RESOURCE, peer_is_loopback=True).role is None
    with pytest.raises(AdminDenied) as info:
        authorizer.authorize({}, RESOURCE, peer_is_loopback=False)
    assert "loopback" in info.value.reason


async def test_deny_all(admin_key: ed25519.Ed25519PrivateKey) -> None:
    authorizer = AdminAuthorizer(AdminConfig(mode="DenyAll"))
    await authorizer.load()
    for headers in ({}, bearer(eddsa_token(admin_key))):
        for loopback in (True, False):
            with pytest.raises(AdminDenied) as info:
                authorizer.authorize(headers, RESOURCE, loopback, now=NOW)
            assert info.value.reason == (
                "Admin access denied as DenyAll authorization_mode is enabled"
            )
            assert str(info.value) == info.value.reason


# --- bearer JWT with a PEM identity provider -------------------------------------------------


async def test_valid_token(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    token = eddsa_token(admin_key, sub="alice")
    identity = pem_authorizer.authorize(bearer(token), RESOURCE, False, now=NOW)
    assert identity == AdminIdentity(role="admin", issuer="issuer", subject="alice")
    # header name is case-insensitive in HTTP; the lowercase form (ASGI) works too
    identity = pem_authorizer.authorize(
        {"authorization": f"Bearer {token}"}, RESOURCE, False, now=NOW
    )
    assert identity.role == "admin"


async def test_pem_file_uri(tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey) -> None:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    authorizer = await authenticated([IdentityProvider(public_key_uri=f"file://{pem}")])
    assert authorizer.authorize(bearer(eddsa_token(admin_key)), RESOURCE, False, now=NOW).role == (
        "admin"
    )


async def test_ec_pem_identity_provider(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = write_public_pem(tmp_path / "ec.pub", key)
    authorizer = await authenticated([IdentityProvider(public_key_uri=str(pem))])
    token = es256_token(key, None)
    assert authorizer.authorize(bearer(token), RESOURCE, False, now=NOW).role == "admin"


async def test_token_signed_by_another_key(pem_authorizer: AdminAuthorizer) -> None:
    token = eddsa_token(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        pem_authorizer.authorize(bearer(token), RESOURCE, False, now=NOW)


async def test_tampered_token(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    header, _, signature = eddsa_token(admin_key, role="reader").split(".")
    forged = b64url_encode(
        json.dumps({"iss": "issuer", "role": "admin", "aud": ["kbs"], "exp": NOW + 600}).encode()
    )
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        pem_authorizer.authorize(bearer(f"{header}.{forged}.{signature}"), RESOURCE, False, now=NOW)


async def test_unsigned_token_rejected(pem_authorizer: AdminAuthorizer) -> None:
    header = b64url_encode(b'{"alg":"none","typ":"JWT"}')
    body = b64url_encode(
        json.dumps({"iss": "issuer", "role": "admin", "aud": ["kbs"], "exp": NOW + 600}).encode()
    )
    with pytest.raises(AdminDenied):
        pem_authorizer.authorize(bearer(f"{header}.{body}."), RESOURCE, False, now=NOW)


@pytest.mark.parametrize(
    ("exp", "allowed"),
    [
        (NOW + 1, True),
        (NOW, True),
        (NOW - 59, True),
        (NOW - 60, True),
        (NOW - 61, False),
        (NOW - 3600, False),
    ],
)
async def test_expiry_with_60_second_leeway(
    pem_authorizer: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    exp: int,
    allowed: bool,
) -> None:
    headers = bearer(eddsa_token(admin_key, exp=exp))
    if allowed:
        assert pem_authorizer.authorize(headers, RESOURCE, False, now=NOW).role == "admin"
    else:
        with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
            pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)


async def test_exp_is_required(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        pem_authorizer.authorize(bearer(eddsa_token(admin_key, exp=None)), RESOURCE, False, now=NOW)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize(
    ("at", "allowed"),
    [
        (NOW - 3600, True),
        (NOW + 60, True),
        (NOW + 61, False),
        (NOW + 3600, False),
        ("soon", False),
    ],
)
async def test_nbf_and_iat_get_the_leeway_exp_gets(
    pem_authorizer: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    claim: str,
    at: Any,
    allowed: bool,
) -> None:
    headers = bearer(eddsa_token(admin_key, exp=NOW + 7200, **{claim: at}))
    if allowed:
        assert pem_authorizer.authorize(headers, RESOURCE, False, now=NOW).role == "admin"
    else:
        with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
            pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)


@pytest.mark.parametrize("claim", ["nbf", "iat", "exp"])
async def test_nan_time_claims_are_not_json(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey, claim: str
) -> None:
    headers = bearer(eddsa_token(admin_key, **{claim: float("nan")}))
    with pytest.raises(AdminDenied, match="Failed to parse admin token: JWS payload is not JSON"):
        pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)


async def test_wrong_issuer(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    for iss in ("other", None, "issuer2", "Issuer"):
        with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
            pem_authorizer.authorize(
                bearer(eddsa_token(admin_key, iss=iss)), RESOURCE, False, now=NOW
            )


async def test_issuer_and_audience_unchecked_when_not_configured(
    tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    authorizer = await authenticated([IdentityProvider(public_key_uri=str(pem))])
    token = eddsa_token(admin_key, iss="anyone", aud=None)
    assert authorizer.authorize(bearer(token), RESOURCE, False, now=NOW).role == "admin"


@pytest.mark.parametrize(
    ("aud", "allowed"),
    [
        ("kbs", True),
        (["kbs"], True),
        (["other", "kbs"], True),
        (["other"], False),
        ("kbs2", False),
        ("k", False),
        ([], False),
        (None, False),
    ],
)
async def test_audience_string_or_list(
    pem_authorizer: AdminAuthorizer,
    admin_key: ed25519.Ed25519PrivateKey,
    aud: Any,
    allowed: bool,
) -> None:
    headers = bearer(eddsa_token(admin_key, aud=aud))
    if allowed:
        assert pem_authorizer.authorize(headers, RESOURCE, False, now=NOW).role == "admin"
    else:
        with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
            pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)


@pytest.mark.parametrize("role", [None, ["admin"], 1, {"name": "admin"}])
async def test_role_claim_required(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey, role: Any
) -> None:
    with pytest.raises(AdminDenied) as info:
        pem_authorizer.authorize(
            bearer(eddsa_token(admin_key, role=role)), RESOURCE, False, now=NOW
        )
    assert info.value.reason.startswith("Failed to parse claims from token")
    assert "Missing required `role` claim in JWT" in info.value.reason


async def test_role_not_allowed_for_path(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    headers = bearer(eddsa_token(admin_key, role="tester"))
    with pytest.raises(AdminDenied) as info:
        pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)
    assert info.value.reason == f"Role tester not allowed for path {RESOURCE}"

    reader = bearer(eddsa_token(admin_key, role="reader"))
    assert (
        pem_authorizer.authorize(reader, "/kbs/v0/reference-value/svn", False, now=NOW).role
        == "reader"
    )
    with pytest.raises(AdminDenied, match=r"^Role reader not allowed for path /kbs/v0/resource-"):
        pem_authorizer.authorize(reader, "/kbs/v0/resource-policy", False, now=NOW)


async def test_acl_is_matched_against_uri_with_query(
    pem_authorizer: AdminAuthorizer, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    reader = bearer(eddsa_token(admin_key, role="reader"))
    # the third ACL names the query string explicitly
    with_query = f"{RESOURCE}?version=2"
    assert pem_authorizer.authorize(reader, with_query, False, now=NOW).role == "reader"
    with pytest.raises(AdminDenied) as info:
        pem_authorizer.authorize(reader, RESOURCE, False, now=NOW)
    assert info.value.reason == f"Role reader not allowed for path {RESOURCE}"
    with pytest.raises(AdminDenied) as info:
        pem_authorizer.authorize(reader, f"{RESOURCE}?version=3", False, now=NOW)
    assert info.value.reason == f"Role reader not allowed for path {RESOURCE}?version=3"


async def test_acl_regex_must_match_the_whole_uri(
    tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    authorizer = await authenticated(
        [IdentityProvider(public_key_uri=str(pem))],
        acls=[AclRule(role="admin", allowed_endpoints="^/kbs/v0/resource-policy$")],
    )
    headers = bearer(eddsa_token(admin_key))
    assert authorizer.authorize(headers, "/kbs/v0/resource-policy", False, now=NOW)
    for uri in ("/kbs/v0/resource-policy?x=1", "/kbs/v0/resource-policy/extra"):
        with pytest.raises(AdminDenied) as info:
            authorizer.authorize(headers, uri, False, now=NOW)
        assert info.value.reason == f"Role admin not allowed for path {uri}"


async def test_no_acls_denies_every_role(
    tmp_path: Path, admin_key: ed25519.Ed25519PrivateKey
) -> None:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    authorizer = await authenticated([IdentityProvider(public_key_uri=str(pem))], acls=[])
    with pytest.raises(AdminDenied, match=r"^Role admin not allowed"):
        authorizer.authorize(bearer(eddsa_token(admin_key)), RESOURCE, False, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer    "},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Token abc.def.ghi"},
        {"Authorization": "abc.def.ghi"},
        {"X-Authorization": "Bearer abc.def.ghi"},
    ],
)
async def test_garbled_authorization_header(
    pem_authorizer: AdminAuthorizer, headers: dict[str, str]
) -> None:
    with pytest.raises(AdminDenied, match=BAD_HEADER):
        pem_authorizer.authorize(headers, RESOURCE, False, now=NOW)


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "a.b.c.d.e", "!!!.###.$$$"])
async def test_malformed_token_denied(pem_authorizer: AdminAuthorizer, token: str) -> None:
    with pytest.raises(AdminDenied):
        pem_authorizer.authorize(bearer(token), RESOURCE, False, now=NOW)


# --- JWKS identity provider ------------------------------------------------------------------


@pytest.fixture
def jwks_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {
        "k1": ec.generate_private_key(ec.SECP256R1()),
        "k2": ec.generate_private_key(ec.SECP256R1()),
    }


def write_jwks(path: Path, keys: dict[str, ec.EllipticCurvePrivateKey]) -> Path:
    doc = {
        "keys": [
            {**public_jwk(key, alg="ES256"), "kid": kid, "use": "sig"} for kid, key in keys.items()
        ]
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
async def jwks_authorizer(
    tmp_path: Path, jwks_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> AdminAuthorizer:
    path = write_jwks(tmp_path / "jwks.json", jwks_keys)
    return await authenticated(
        [IdentityProvider(issuer="https://idp.example", jwk_set_uri=f"file://{path}")]
    )


async def test_jwks_kid_selects_the_key(
    jwks_authorizer: AdminAuthorizer, jwks_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    for kid, key in jwks_keys.items():
        token = es256_token(key, kid, sub=kid)
        identity = jwks_authorizer.authorize(bearer(token), RESOURCE, False, now=NOW)
        assert identity == AdminIdentity(role="admin", issuer="https://idp.example", subject=kid)


async def test_jwks_kid_mismatch_or_unknown(
    jwks_authorizer: AdminAuthorizer, jwks_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    # signed with k2's key but claims to be k1
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        jwks_authorizer.authorize(
            bearer(es256_token(jwks_keys["k2"], "k1")), RESOURCE, False, now=NOW
        )
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        jwks_authorizer.authorize(
            bearer(es256_token(jwks_keys["k2"], "k3")), RESOURCE, False, now=NOW
        )
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        jwks_authorizer.authorize(bearer(es256_token(stranger, "k1")), RESOURCE, False, now=NOW)


async def test_jwks_checks_expiry_issuer_and_role(
    jwks_authorizer: AdminAuthorizer, jwks_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    key = jwks_keys["k1"]
    assert jwks_authorizer.authorize(
        bearer(es256_token(key, "k1", exp=NOW - 30)), RESOURCE, False, now=NOW
    )
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        jwks_authorizer.authorize(
            bearer(es256_token(key, "k1", exp=NOW - 61)), RESOURCE, False, now=NOW
        )
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        jwks_authorizer.authorize(
            bearer(es256_token(key, "k1", iss="https://evil.example")), RESOURCE, False, now=NOW
        )
    with pytest.raises(AdminDenied, match="Missing required `role` claim"):
        jwks_authorizer.authorize(
            bearer(es256_token(key, "k1", role=None)), RESOURCE, False, now=NOW
        )
    with pytest.raises(AdminDenied, match=f"^Role guest not allowed for path {RESOURCE}$"):
        jwks_authorizer.authorize(
            bearer(es256_token(key, "k1", role="guest")), RESOURCE, False, now=NOW
        )


async def test_first_matching_identity_provider_wins(
    tmp_path: Path,
    admin_key: ed25519.Ed25519PrivateKey,
    jwks_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> None:
    pem = write_public_pem(tmp_path / "admin.pub", admin_key)
    jwks = write_jwks(tmp_path / "jwks.json", jwks_keys)
    authorizer = await authenticated(
        [
            IdentityProvider(issuer="https://idp.example", jwk_set_uri=str(jwks)),
            IdentityProvider(issuer="issuer", audience="kbs", public_key_uri=str(pem)),
        ]
    )
    assert authorizer.authorize(bearer(eddsa_token(admin_key)), RESOURCE, False, now=NOW)
    assert authorizer.authorize(
        bearer(es256_token(jwks_keys["k2"], "k2")), RESOURCE, False, now=NOW
    )
    # right key, but the issuer of the other provider
    with pytest.raises(AdminDenied, match=CANNOT_VERIFY):
        authorizer.authorize(
            bearer(eddsa_token(admin_key, iss="https://idp.example")), RESOURCE, False, now=NOW
        )


# --- loading --------------------------------------------------------------------------------


async def test_load_errors(tmp_path: Path) -> None:
    missing = AdminAuthorizer(
        AdminConfig(
            mode="AuthenticatedAuthorization",
            identity_providers=[IdentityProvider(public_key_uri=str(tmp_path / "absent.pem"))],
        )
    )
    with pytest.raises(AdminConfigError, match=r"absent\.pem"):
        await missing.load()

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    bad_pem = AdminAuthorizer(
        AdminConfig(
            mode="AuthenticatedAuthorization",
            identity_providers=[IdentityProvider(public_key_uri=str(garbage))],
        )
    )
    with pytest.raises(AdminConfigError, match=r"garbage\.pem"):
        await bad_pem.load()

    for content in ("not json", '{"no": "keys"}', "[]"):
        jwks = tmp_path / "jwks.json"
        jwks.write_text(content)
        bad_jwks = AdminAuthorizer(
            AdminConfig(
                mode="AuthenticatedAuthorization",
                identity_providers=[IdentityProvider(jwk_set_uri=str(jwks))],
            )
        )
        with pytest.raises(AdminConfigError, match=r"jwks\.json"):
            await bad_jwks.load()

    remote = AdminAuthorizer(
        AdminConfig(
            mode="AuthenticatedAuthorization",
            identity_providers=[IdentityProvider(jwk_set_uri="https://idp.example/jwks")],
        )
    )
    with pytest.raises(AdminConfigError):
        await remote.load()  # no fetcher given


async def test_jwks_fetched_over_https_via_openid_configuration(
    jwks_keys: dict[str, ec.EllipticCurvePrivateKey],
) -> None:
    jwks = {"keys": [{**public_jwk(jwks_keys["k1"], alg="ES256"), "kid": "k1"}]}
    served = {
        "https://idp.example/.well-known/openid-configuration": json.dumps(
            {"issuer": "https://idp.example", "jwks_uri": "https://idp.example/keys"}
        ).encode(),
        "https://idp.example/keys": json.dumps(jwks).encode(),
    }
    fetched: list[str] = []

    async def fetch(uri: str) -> bytes:
        fetched.append(uri)
        return served[uri]

    authorizer = AdminAuthorizer(
        AdminConfig(
            mode="AuthenticatedAuthorization",
            identity_providers=[
                IdentityProvider(
                    issuer="https://idp.example",
                    jwk_set_uri="https://idp.example/.well-known/openid-configuration",
                )
            ],
            acls=ADMIN_ACLS,
        )
    )
    await authorizer.load(fetch)
    assert fetched[-1] == "https://idp.example/keys"
    token = es256_token(jwks_keys["k1"], "k1")
    assert authorizer.authorize(bearer(token), RESOURCE, False, now=NOW).role == "admin"
