"""Whose claims a resource request carries: the attested session in its cookie (sealed, or in a
session store), else an `Authorization: Bearer` token checked by the token verifier, with the
verdicts on tokens cached for the life of the process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trustee import jsonfast
from trustee.crypto.jws import JwsError, check_time_claims
from trustee.kbs.wire import Request, token_id
from trustee.protocol import errors, rcar
from trustee.protocol.generations import CURRENT, V0_1_1
from trustee.protocol.headers import bearer_token
from trustee.protocol.jwe import JweForm, form_for_protocol
from trustee.storage.sessions import CookieSessions, SessionRefused, Sessions
from trustee.token.verifier import LEEWAY_SECONDS, AttestationTokenVerifier, TokenVerifyError

VERIFIED_TOKEN_CACHE = 4096


@dataclass(frozen=True)
class Attested:
    claims: dict[str, Any]
    generation: str | None  # the session's protocol generation; None on the Bearer path
    claims_json: str | None  # the claims' JSON text, when it is at hand
    token_ref: str | None  # the token's audit id


class ClaimsSource:
    """The claims behind resource requests (see the module docstring)."""

    def __init__(
        self, sessions: Sessions, verifier: AttestationTokenVerifier, *, signer_fixed: bool = True
    ) -> None:
        self.sessions = sessions
        self.verifier = verifier
        self.verified_tokens: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Whether tokens this process signs passed the configured verifier once.
        self.own_tokens_trusted = False
        # A remote AS signs with a key of its own, which its restart may change: each of its
        # tokens meets the verifier, never a verdict on an earlier one.
        self.signer_fixed = signer_fixed

    async def own_token_refusal(self, token: str) -> str | None:
        """Why the configured token verifier refuses the tokens this process issues, if it
        does: a sealed session carries its claims, not the token, so the verifier's verdict
        on our signer is taken once and sealed with each session."""
        if self.own_tokens_trusted:
            return None
        try:
            await self.verifier.verify(token)
        except TokenVerifyError as exc:
            return exc.reason
        self.own_tokens_trusted = self.signer_fixed
        return None

    async def of(self, req: Request) -> Attested:
        token: str | None = None
        generation: str | None = None
        refused: str | None = None
        cookie = req.cookies.get(rcar.SESSION_COOKIE)
        if cookie and isinstance(self.sessions, CookieSessions):
            try:
                sealed = self.sessions.open(cookie)
            except SessionRefused as exc:
                refused = f"session cookie refused: {exc.reason}"
            else:
                if sealed.attested_claims_json is not None:
                    return self._sealed(sealed)
                refused = "the session cookie is not attested yet; call /attest first"
        elif cookie:
            session = await self.sessions.get(cookie)
            if session is not None and session.token is not None:
                token, generation = session.token, session.generation
                if self.own_tokens_trusted and session.attested_claims is not None:
                    # This process signed the token, and an earlier token of the same signer
                    # passed the configured verifier: the claims are known and trusted, only
                    # their lifetime is left to check.
                    check_lifetime(session.attested_claims)
                    return Attested(
                        session.attested_claims,
                        generation,
                        session.attested_claims_json,
                        token_id(token),
                    )
        if token is None:
            token = bearer_token(req.headers)
        if token is None:
            raise errors.token_not_found(refused)
        # A signature that verified once verifies again (the trust configuration is fixed for
        # the life of the process); only the clock moves, so a cached token is re-checked for
        # expiry and nothing else.
        claims = self.verified_tokens.get(token)
        if claims is not None:
            check_lifetime(claims)
            self.verified_tokens.move_to_end(token)
            return Attested(claims, generation, None, token_id(token))
        try:
            claims = await self.verifier.verify(token)
        except TokenVerifyError as exc:
            raise errors.token_verifier_error(exc.reason) from exc
        self.verified_tokens[token] = claims
        if len(self.verified_tokens) > VERIFIED_TOKEN_CACHE:
            self.verified_tokens.popitem(last=False)
        if generation is not None:
            # A session token is always one this process issued (or its AS, when remote).
            self.own_tokens_trusted = self.signer_fixed
        return Attested(claims, generation, None, token_id(token))

    @staticmethod
    def _sealed(session: rcar.Session) -> Attested:
        # The claims authenticated with our session key: a worker of this server issued them
        # and sealed its token verifier's verdict on its own tokens beside them.
        if session.verifier_refusal is not None:
            raise errors.token_verifier_error(session.verifier_refusal)
        claims_json = session.attested_claims_json
        assert claims_json is not None
        claims = jsonfast.loads_trusted(claims_json)
        if not isinstance(claims, dict):
            raise errors.token_verifier_error("the sealed session's claims are not an object")
        check_lifetime(claims)
        return Attested(claims, session.generation, claims_json, session.token_ref)


def check_lifetime(claims: Mapping[str, Any]) -> None:
    try:
        check_time_claims(claims, time.time(), LEEWAY_SECONDS)
    except JwsError as exc:
        raise errors.token_verifier_error(str(exc)) from exc


def jwe_form(generation: str | None, tee_pubkey: Mapping[str, Any]) -> JweForm:
    if generation is not None:
        return form_for_protocol(generation)
    # Bearer (passport) path, no session: only 0.1.x clients export RSA1_5 keys, and they can
    # read nothing but their own form.
    if tee_pubkey.get("kty") == "RSA" and tee_pubkey.get("alg") == "RSA1_5":
        return V0_1_1.jwe_form
    return CURRENT.jwe_form
