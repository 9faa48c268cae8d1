"""Stateless RCAR sessions: the session is the `kbs-session-id` cookie, sealed by the native core.

After /auth the cookie holds the session's id, TEE, protocol generation and nonce; after /attest
it holds what the resource path needs instead of the nonce: the attested claims (the EAR token's
payload, as issued) and whether this process's token verifier accepted our own tokens. Nothing
is stored, so any worker of any replica holding the session key serves any request, and memory
does not grow with the number of sessions.

What a stateless session cannot do: answer a repeated /attest with the very same token string
(it is re-signed from the sealed claims: same claims, fresh signature) or stop two concurrent
/attest calls of one session from each getting a token. A remote Attestation Service's token
cannot be re-signed here: its header and signature are sealed beside the claims (its payload),
and the repeated /attest answers that very token. `session_storage_type = "Redis"` keeps
those guarantees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from trustee import _core, jsonfast
from trustee.crypto.b64 import b64url_encode
from trustee.protocol.generations import CURRENT
from trustee.protocol.rcar import Session
from trustee.storage.sessions import CookieSessions, SessionRefused, SessionTooLarge

FORMAT = 1
# The sealed header and the claims text are joined by a newline: compact JSON has none.
_SEPARATOR = b"\n"
# Beyond this a cookie no longer fits the request-header budgets of common proxies and of our
# own front end; such a session is refused at /attest with a reason rather than handed to a
# client that will fail later.
MAX_COOKIE_CHARS = 96 * 1024


def encode(session: Session) -> bytes:
    head: dict[str, Any] = {"f": FORMAT, "i": session.id, "t": session.tee}
    if session.generation != CURRENT.version:
        head["g"] = session.generation
    if session.attested_claims_json is None:
        head["n"] = session.nonce
        return jsonfast.dumps(head)
    if session.token_ref is not None:
        head["j"] = session.token_ref
    if session.verifier_refusal is not None:
        head["r"] = session.verifier_refusal
    if session.token is not None:
        _keep_token(head, session.token, session.attested_claims_json)
    return jsonfast.dumps(head) + _SEPARATOR + session.attested_claims_json.encode()


def _keep_token(head: dict[str, Any], token: str, claims_json: str) -> None:
    header, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if payload == b64url_encode(claims_json.encode()):
        head["w"] = [header, signature]  # the payload is the claims sealed beside
    else:
        head["k"] = token


def _kept_token(head: dict[str, Any], claims_json: str | None) -> str | None:
    if "k" in head:
        return str(head["k"])
    if "w" in head and claims_json is not None:
        header, signature = head["w"]
        return f"{header}.{b64url_encode(claims_json.encode())}.{signature}"
    return None


def decode(payload: bytes, expires_at: float, cookie: str) -> Session:
    """The session a payload this server sealed describes (trusted input: it authenticated)."""
    head_text, _, claims_text = payload.partition(_SEPARATOR)
    head = jsonfast.loads_trusted(head_text)
    if not isinstance(head, dict) or head.get("f") != FORMAT:
        raise SessionRefused("malformed", "the session cookie has an unknown layout")
    claims_json = claims_text.decode() if claims_text else None
    return Session(
        id=str(head["i"]),
        version="",
        tee=str(head["t"]),
        nonce=str(head.get("n", "")),
        expires_at=expires_at,
        generation=str(head.get("g", CURRENT.version)),
        attested_claims=None,
        attested_claims_json=claims_json,
        cookie=cookie,
        verifier_refusal=head.get("r"),
        token_ref=head.get("j"),
        token=_kept_token(head, claims_json),
    )


class SealedSessions(CookieSessions):
    """Sessions without a store (see the module docstring): /auth seals with `insert`,
    /attest with `attested`, every request opens with `open`."""

    def __init__(self, keys: list[bytes], clock: Callable[[], float] = time.time) -> None:
        self._sealer = _core.SessionSealer(keys)
        self._now = clock

    @property
    def key_id(self) -> str:
        return self._sealer.key_id

    def _seal(self, session: Session) -> str:
        # Whole seconds, as the cookie's Expires attribute has them.
        session.expires_at = float(math.floor(session.expires_at))
        return self._sealer.seal(int(session.expires_at), encode(session))

    def open(self, cookie: str) -> Session:
        """The session `cookie` carries; SessionRefused says why it does not open."""
        try:
            payload, expires_at = self._sealer.open(cookie, int(self._now()))
        except _core.SessionCookieError as exc:
            kind, reason = exc.args
            raise SessionRefused(str(kind), str(reason)) from exc
        return decode(payload, float(expires_at), cookie)

    async def insert(self, session: Session) -> None:
        session.cookie = self._seal(session)

    async def get(self, session_id: str) -> Session | None:
        try:
            return self.open(session_id)
        except SessionRefused:
            return None

    def seal_attested(self, session: Session) -> str:
        cookie = self._seal(session)
        if len(cookie) > MAX_COOKIE_CHARS:
            raise SessionTooLarge(
                f"the attested session needs a {len(cookie)}-byte cookie, more than the "
                f"{MAX_COOKIE_CHARS} bytes allowed; send less evidence or init-data, or set "
                'session_storage_type = "Redis" to keep sessions on the server'
            )
        return cookie
