"""One simulated guest's flows against a KBS, every answer checked.

Background check: POST /kbs/v0/auth → POST /kbs/v0/attest (evidence for the chosen TEE and
protocol generation, built by the client library) → GET /kbs/v0/resource/<path> with the
session cookie. Passport: the guest attests once for a token (again when it expires), then every
flow is one resource GET with `Authorization: Bearer <token>`.

A failed flow raises `FlowFailure` whose `kind` is the results' error class; the checks that cost
CPU (token signature, JWE decryption) run after the latency is taken, so they do not inflate it.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustee.bench.http_conn import Answer, Connection, TransportError
from trustee.client.attesters import AttesterSet
from trustee.client.errors import KbsClientError
from trustee.client.generations import Challenge, Generation, Token, compact_json
from trustee.crypto.jwk import JwkError, PrivateKey, PublicKey, public_key_from_jwk
from trustee.crypto.jws import JwsError, split_compact, verify_signature

KBS = "/kbs/v0"


class FlowFailure(Exception):
    """A flow that did not end with the secret; `kind` is its error class, `stage` the step."""

    def __init__(self, kind: str, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.kind = kind
        self.stage = stage

    @property
    def secret_mismatch(self) -> bool:
        """A resource answer that did not decrypt to the expected secret."""
        return self.kind == "check" and self.stage == "resource"


@dataclass
class Checks:
    tokens_verified: int = 0
    tokens_unverified: int = 0
    secrets_decrypted: int = 0
    secret_mismatches: int = 0

    def add(self, other: Mapping[str, int]) -> None:
        for name in ("tokens_verified", "tokens_unverified", "secrets_decrypted"):
            setattr(self, name, getattr(self, name) + int(other.get(name, 0)))
        self.secret_mismatches += int(other.get("secret_mismatches", 0))


@dataclass
class FlowSpec:
    """What every guest of a run does; plain data, so it crosses to worker processes."""

    host: str
    port: int
    tls: bool
    cert_file: str | None
    protocol: str
    attester_env: dict[str, str]
    resource: str
    passport: bool = False
    secret: bytes | None = None
    decrypt_every: int = 16
    timeout_s: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


def error_class(answer: Answer) -> str:
    """`http_<status>/<last path segment of the ErrorInformation type, or "-">`."""
    kind = "-"
    try:
        doc = json.loads(answer.body)
        if isinstance(doc, dict) and isinstance(doc.get("type"), str) and doc["type"]:
            kind = doc["type"].rstrip("/").rsplit("/", 1)[-1] or "-"
    except (ValueError, UnicodeDecodeError):
        pass
    return f"http_{answer.status}/{kind}"


def _cookie(set_cookie: bytes | None) -> str | None:
    return None if set_cookie is None else set_cookie.split(b";", 1)[0].decode("latin-1")


class TokenChecker:
    """Verifies token signatures with the key the token's header carries (`jwk`), the key our
    KBS and upstream's (insecure_header_jwk) publish; parsed keys are cached by their JSON."""

    def __init__(self) -> None:
        self._keys: dict[str, PublicKey] = {}

    def check(self, token: str, checks: Checks) -> None:
        try:
            parsed = split_compact(token)
            parsed.claims()
            jwk = parsed.header.get("jwk")
            if not isinstance(jwk, dict):
                checks.tokens_unverified += 1
                return
            name = compact_json(jwk)
            key = self._keys.get(name)
            if key is None:
                key = self._keys[name] = public_key_from_jwk(jwk, exact_coordinates=False)
            verify_signature(
                str(parsed.header.get("alg")), key, parsed.signing_input, parsed.signature
            )
        except (JwsError, JwkError) as exc:
            raise FlowFailure("check", "attest", f"token: {exc}") from None
        checks.tokens_verified += 1


class Guest:
    """One simulated client: a keep-alive connection, a TEE key, its evidence producer."""

    def __init__(
        self,
        spec: FlowSpec,
        generation: Generation,
        attesters: AttesterSet,
        key: PrivateKey,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.spec = spec
        self.generation = generation
        self.attesters = attesters
        self.key = key
        self.pubkey = generation.tee_public_jwk(key)
        self.conn = Connection(spec.port, spec.host, ssl_context=ssl_context)
        body = compact_json(generation.auth_request(attesters.primary.tee)).encode()
        self.auth_request = self.conn.build("POST", f"{KBS}/auth", body, "application/json")
        self.token: Token | None = None
        self.flows = 0
        self.answered = 0.0  # time.monotonic() of the last flow's last answer

    async def _call(self, stage: str, raw: bytes) -> Answer:
        try:
            answer = await self.conn.request(raw)
        except TransportError as exc:
            raise FlowFailure(exc.kind, stage, str(exc)) from None
        if answer.status != 200:
            text = answer.body[:300].decode(errors="replace").replace("\n", " ")
            raise FlowFailure(error_class(answer), stage, text)
        return answer

    async def handshake(self) -> tuple[str, str | None]:
        """auth + attest: (token, session cookie)."""
        auth = await self._call("auth", self.auth_request)
        cookie = _cookie(auth.set_cookie)
        if cookie is None:
            raise FlowFailure("protocol", "auth", "no session cookie")
        try:
            challenge = Challenge.parse(auth.body)
            doc = self.generation.attestation(challenge, self.pubkey, self.attesters, None)
        except KbsClientError as exc:
            raise FlowFailure("protocol", "auth", str(exc)) from None
        body = compact_json(doc).encode()
        raw = self.conn.build("POST", f"{KBS}/attest", body, "application/json", cookie)
        attest = await self._call("attest", raw)
        cookie = _cookie(attest.set_cookie) or cookie
        try:
            token = json.loads(attest.body)["token"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            token = None
        if not isinstance(token, str):
            raise FlowFailure("protocol", "attest", "the answer has no string `token`")
        return token, cookie

    async def flow(self) -> tuple[str | None, bytes]:
        """One flow: (the token it got, None when it reused one; the resource JWE)."""
        self.flows += 1
        target = f"{KBS}/resource/{self.spec.resource}"
        if self.spec.passport:
            fresh = None
            if self.token is None or not self.token.is_valid():
                fresh, _ = await self.handshake()
                try:
                    self.token = Token.parse(fresh)
                except KbsClientError as exc:
                    raise FlowFailure("protocol", "attest", str(exc)) from None
            bearer = f"Bearer {self.token.content}"
            raw = self.conn.build("GET", target, authorization=bearer)
            answer = await self._call("resource", raw)
            self.answered = time.monotonic()
            return fresh, answer.body
        token, cookie = await self.handshake()
        answer = await self._call("resource", self.conn.build("GET", target, cookie=cookie))
        self.answered = time.monotonic()
        return token, answer.body

    def check(self, token: str | None, sealed: bytes, tokens: TokenChecker, checks: Checks) -> None:
        """The checks outside the timed part: the token's signature, a sample of the JWEs."""
        if token is not None:
            tokens.check(token, checks)
        try:
            doc = json.loads(sealed)
        except (ValueError, UnicodeDecodeError):
            raise FlowFailure("protocol", "resource", "the answer is not JSON") from None
        if not isinstance(doc, dict) or "ciphertext" not in doc:
            raise FlowFailure("protocol", "resource", "the answer is not a JWE")
        if (self.flows - 1) % max(1, self.spec.decrypt_every):
            return
        try:
            plain = self.generation.decrypt(doc, self.key)
        except KbsClientError as exc:
            raise FlowFailure("check", "resource", f"JWE does not decrypt: {exc}") from None
        if self.spec.secret is not None and plain != self.spec.secret:
            raise FlowFailure("check", "resource", "the secret differs from the stored one")
        checks.secrets_decrypted += 1

    async def aclose(self) -> None:
        await self.conn.aclose()
