"""Tokens of an Attestation Service in another process: the KBS trusts the keys it publishes
(fetched again when a token brings a new one), a sealed session keeps the token it cannot sign
again, and a repeated /attest answers that very token."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.unit.test_kbs_tokens import ALLOW, attest_reply, cookie_of, request
from tests.unit.test_sealed_sessions import KEY_A, fresh, sealer
from trustee.assemble import assemble
from trustee.attestation.backend import Appraised, AttestationBackend
from trustee.attestation.ear import Signer
from trustee.config import parse
from trustee.crypto.b64 import b64url_decode_nopad
from trustee.crypto.jwk import generate_tee_key
from trustee.crypto.jws import sign_compact
from trustee.kbs import Kbs
from trustee.plugins.base import PluginRequest
from trustee.policy.engine import CompiledPolicy
from trustee.protocol import jwe
from trustee.protocol.rcar import EvidenceRequest
from trustee.token.signer_keys import MIN_REFRESH_S, PublishedSignerKeys
from trustee.token.verifier import (
    AttestationTokenVerifier,
    TokenVerifierConfig,
    TokenVerifyError,
)

JWKS_URL = "http://as.example/.well-known/jwks.json"
CLAIMS = {"submods": {"cpu0": {"ear.status": "affirming"}}, "exp": 4_000_000_000}


def as_token(key: ec.EllipticCurvePrivateKey, claims: Mapping[str, Any] = CLAIMS) -> str:
    """A token as an AS signs it: its key in the header, no kid."""
    header = {"typ": "JWT", "alg": "ES256", "jwk": Signer(key).header_jwk()}
    return sign_compact(header, json.dumps(claims).encode(), key)


class PublishingAs:
    """What the AS serves at its JWKS URL; counts the fetches."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0
        self.down = False

    async def fetch(self) -> bytes:
        self.fetches += 1
        if self.down:
            raise OSError("connection refused")
        return json.dumps({"keys": [Signer(self.key).header_jwk()]}).encode()


def verifier(published: PublishedSignerKeys, **config: Any) -> AttestationTokenVerifier:
    return AttestationTokenVerifier(TokenVerifierConfig(**config), signer_keys=published)


async def test_a_published_key_is_trusted_and_a_new_one_fetched_again() -> None:
    service = PublishingAs()
    now = [0.0]
    published = PublishedSignerKeys(JWKS_URL, service.fetch, monotonic=lambda: now[0])
    assert await published.load() is None
    check = verifier(published)  # no other trust material is needed
    assert (await check.verify(as_token(service.key)))["submods"] == CLAIMS["submods"]
    assert service.fetches == 1
    # The AS restarted with a fresh ephemeral key: its next token brings the set again.
    service.key = ec.generate_private_key(ec.SECP256R1())
    now[0] += MIN_REFRESH_S
    await check.verify(as_token(service.key))
    assert service.fetches == 2


async def test_a_stranger_key_is_refused_naming_the_set_and_fetches_are_bounded() -> None:
    service = PublishingAs()
    now = [0.0]
    published = PublishedSignerKeys(JWKS_URL, service.fetch, monotonic=lambda: now[0])
    await published.load()
    check = verifier(published)
    stranger = ec.generate_private_key(ec.SECP256R1())
    for _ in range(5):
        with pytest.raises(TokenVerifyError) as info:
            await check.verify(as_token(stranger))
    assert info.value.reason.startswith(
        f"token header jwk is not a key the Attestation Service publishes at {JWKS_URL}; and "
    )
    assert service.fetches == 1  # forged keys do not make the KBS hammer the AS
    service.down = True
    now[0] += MIN_REFRESH_S
    with pytest.raises(TokenVerifyError, match=r"fetching .* failed: connection refused"):
        await check.verify(as_token(stranger))
    # With insecure_header_jwk the header key is taken anyway, as upstream's config does.
    lax = verifier(published, insecure_header_jwk=True)
    assert await lax.verify(as_token(stranger))


async def test_an_as_down_at_start_is_fetched_later() -> None:
    service = PublishingAs()
    service.down = True
    published = PublishedSignerKeys(JWKS_URL, service.fetch)
    assert await published.load() == f"fetching {JWKS_URL} failed: connection refused"
    service.down = False
    # load() at start counted as a fetch a moment ago; a real clock moves on before a guest
    # attests, this one is pushed.
    published._fetched_at = -MIN_REFRESH_S
    assert await verifier(published).verify(as_token(service.key))


# -- sealed sessions -------------------------------------------------------------------------


@pytest.mark.parametrize("canonical", [True, False])
async def test_a_sealed_session_keeps_a_token_it_cannot_sign_again(canonical: bool) -> None:
    store = sealer(KEY_A)
    session = fresh()
    await store.insert(session)
    key = ec.generate_private_key(ec.SECP256R1())
    token = as_token(key)
    claims_json = json.dumps(CLAIMS)
    if not canonical:  # a payload the claims text does not re-encode to: kept whole
        claims_json += " "
    attested = store.attested(session, claims_json, "jti", None, token=token)
    reopened = store.open(attested.cookie_value)
    assert reopened.token == token
    assert reopened.attested_claims_json == claims_json
    # Without a token, the claims are kept alone (the built-in AS re-signs them).
    bare = store.open(store.attested(session, claims_json, "jti", None).cookie_value)
    assert bare.token is None


class ForeignSigner:
    """The built-in AS's appraisals under a key this KBS does not hold, as a remote AS gives
    them: what the seam says of a remote AS, with the KBS's own machinery behind it."""

    signer_fixed = False
    where = "Attestation Service at http://as.example"

    def __init__(self, inner: AttestationBackend) -> None:
        self.inner = inner
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.calls = 0

    async def evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> Appraised:
        self.calls += 1
        own = await self.inner.evaluate(requests, policy_ids)
        token = as_token(self.key, own.claims)
        payload = b64url_decode_nopad(token.split(".")[1]).decode()
        return Appraised(token, own.claims, payload)

    def reissue(self, claims_json: str) -> str | None:
        return None

    async def set_policy(self, policy_id: str, text: str) -> None: ...

    async def register_reference_value(self, message: bytes) -> None: ...

    async def query_reference_value(self, rv_id: str) -> Any | None: ...

    async def stored_policy(self, policy_id: str) -> CompiledPolicy | None:
        return None

    async def reference_values(self) -> Mapping[str, str] | None:
        return None

    async def unready(self) -> str | None:
        return None


async def remote_kbs() -> tuple[Kbs, ForeignSigner]:
    text = (
        "[http_server]\ninsecure_http = true\n[admin]\n[attestation_token]\n"
        'insecure_header_jwk = true\n[attestation_service]\n[[plugins]]\nname = "resource"\n'
    )
    kbs = await assemble(parse(text))
    assert kbs.attestation is not None
    foreign = ForeignSigner(kbs.attestation)
    kbs.attestation = foreign
    kbs.claims.signer_fixed = foreign.signer_fixed
    await kbs.resource_policy.set(ALLOW)
    await kbs.plugins["resource"].handle(PluginRequest("POST", ["r", "t", "k"], {}, b"secret"))
    return kbs, foreign


async def test_repeated_attest_answers_the_remote_token_itself() -> None:
    kbs, foreign = await remote_kbs()
    key = generate_tee_key()
    _, first = await attest_reply(kbs, key)
    assert first.status == 200, first.body
    cookie = cookie_of(first)
    again = await kbs.handle(request("POST", "attest", b"ignored", cookie))
    assert again.status == 200 and cookie_of(again) == cookie
    assert json.loads(again.body)["token"] == json.loads(first.body)["token"]
    assert foreign.calls == 1  # not evaluated again
    r = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie))
    assert r.status == 200 and jwe.decrypt(json.loads(r.body), key) == b"secret"
    # Each token of a remote AS meets the verifier: no verdict on an earlier one stands in.
    assert not kbs.claims.own_tokens_trusted
