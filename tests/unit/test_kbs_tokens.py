"""The resource path's token handling: cookie first, verification, caches that stay honest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.pki import make_pki
from trustee.assemble import assemble
from trustee.client.attesters import SampleAttester
from trustee.config import parse
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.kbs import Kbs, Reply, Request
from trustee.plugins.base import PluginRequest
from trustee.protocol import binding, jwe

ALLOW = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
BASE = """
[http_server]
insecure_http = true
[admin]
[attestation_service]
[[plugins]]
name = "resource"
"""


def request(method: str, path: str, body: bytes = b"", cookie: str | None = None,
            bearer: str | None = None) -> Request:  # fmt: skip
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    cookies = {"kbs-session-id": cookie} if cookie else {}
    return Request(method, path, {}, body, headers, cookies, f"/kbs/v0/{path}")


def cookie_of(reply: Reply) -> str:
    return dict(reply.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]


async def attest_reply(kbs: Kbs, key: Any) -> tuple[str, Reply]:
    """/auth then /attest with sample evidence: the /auth cookie and the /attest reply."""
    r = await kbs.handle(
        request("POST", "auth", b'{"version":"0.4.0","tee":"sample","extra-params":""}')
    )
    assert r.status == 200, r.body
    cookie = cookie_of(r)
    nonce = json.loads(r.body)["nonce"]
    jwk = tee_public_jwk(key)
    digest = binding.runtime_data_digest(binding.primary_runtime_data(jwk, nonce, ""))
    body = {
        "init-data": None,
        "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
        "tee-evidence": {
            "primary_evidence": SampleAttester().evidence(digest, None),
            "additional_evidence": "",
        },
    }
    return cookie, await kbs.handle(request("POST", "attest", json.dumps(body).encode(), cookie))


async def attested_session(kbs: Kbs, key: Any) -> tuple[str, str]:
    _, r = await attest_reply(kbs, key)
    assert r.status == 200, r.body
    # A sealed session's cookie changes at /attest; a stored session's stays the same.
    return cookie_of(r), json.loads(r.body)["token"]


async def prepared(config: str) -> Kbs:
    kbs = await assemble(parse(config))
    await kbs.resource_policy.set(ALLOW)
    await kbs.plugins["resource"].handle(PluginRequest("POST", ["r", "t", "k"], {}, b"secret"))
    return kbs


def error_type(reply: Reply) -> str:
    return str(json.loads(reply.body)["type"]).rsplit("/", 1)[1]


async def test_own_tokens_are_still_refused_when_the_verifier_does_not_trust_them(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)  # a CA that never signed this server's ephemeral signer
    kbs = await prepared(BASE + f'[attestation_token]\ntrusted_certs_paths = ["{pki.ca_cert}"]\n')
    key = generate_tee_key()
    cookie, _ = await attested_session(kbs, key)
    for _ in range(3):
        reply = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie))
        assert reply.status == 401 and error_type(reply) == "TokenVerifierError"


async def test_cookie_and_bearer_paths_release_and_expiry_is_rechecked() -> None:
    kbs = await prepared(
        'session_storage_type = "Memory"\n'
        + BASE
        + "[attestation_token]\ninsecure_header_jwk = true\n"
    )
    key = generate_tee_key()
    cookie, token = await attested_session(kbs, key)
    for _ in range(2):  # first verified, then served from what this process signed
        reply = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie))
        assert reply.status == 200
        assert jwe.decrypt(json.loads(reply.body), key) == b"secret"
    for _ in range(2):  # Bearer: verified once, then from the verified-token cache
        reply = await kbs.handle(request("GET", "resource/r/t/k", bearer=token))
        assert reply.status == 200

    # Both shortcuts still check the clock.
    session = await kbs.sessions.get(cookie)
    assert session is not None and session.attested_claims is not None
    session.attested_claims["exp"] = 1000
    reply = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie))
    assert reply.status == 401 and error_type(reply) == "TokenVerifierError"
    kbs.claims.verified_tokens[token]["exp"] = 1000
    reply = await kbs.handle(request("GET", "resource/r/t/k", bearer=token))
    assert reply.status == 401 and error_type(reply) == "TokenVerifierError"
