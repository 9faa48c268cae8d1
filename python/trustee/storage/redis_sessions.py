"""RCAR sessions in Redis, so that /auth, /attest and /resource may land on different replicas.

One key per session holding its JSON encoding; the key expires at the session's `expires_at`
(Redis does the purging). The token is set with a compare-and-set so that concurrent /attest
calls on one session agree on a single token.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

from trustee.protocol.rcar import Session
from trustee.redis.client import RedisClient, RedisError, RedisUnavailable, Script
from trustee.storage.sessions import SessionStoreUnavailable

# Bumped when the stored layout changes incompatibly, so replicas of different versions can tell.
FORMAT = 1
# Each lost race means another writer changed the session; a token writer wins at once, so
# only a burst of plain updates could exhaust this.
MAX_CAS_ATTEMPTS = 8

# The sealed-cookie fields never apply to a stored session.
_SEALED_ONLY = ("cookie", "verifier_refusal", "token_ref")
_FIELDS = tuple(f.name for f in dataclasses.fields(Session) if f.name not in _SEALED_ONLY)
_REQUIRED_STR = ("id", "version", "tee", "nonce")
_OPTIONAL_STR = ("token", "attested_claims_json")

# Replaces the value only if it is still exactly what the caller read; answers with whatever
# is stored afterwards (nil when the key is gone) so the loser learns the winner's session.
_COMPARE_AND_SET = Script(
    """
local current = redis.call('GET', KEYS[1])
if not current then return false end
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return ARGV[2]
"""
)


def encode_session(session: Session) -> bytes:
    # Replicas still running an older release require the key; sessions no longer keep what
    # the client sent there, so it is always empty.
    doc: dict[str, Any] = {"format": FORMAT, "extra_params": None}
    for name in _FIELDS:
        doc[name] = getattr(session, name)
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SessionStoreUnavailable(
            f"session {session.id}: cannot be stored as JSON: {exc}"
        ) from exc
    return text.encode("utf-8")


def decode_session(raw: bytes, where: str) -> Session:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SessionStoreUnavailable(f"{where}: stored value is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SessionStoreUnavailable(
            f"{where}: stored value is {type(doc).__name__}, not an object"
        )
    if doc.get("format") != FORMAT:
        raise SessionStoreUnavailable(
            f"{where}: stored format {doc.get('format')!r} is not {FORMAT}"
        )
    for name in _REQUIRED_STR:
        if not isinstance(doc.get(name), str):
            raise SessionStoreUnavailable(
                f"{where}: field {name!r} is {doc.get(name)!r}, not a string"
            )
    for name in _OPTIONAL_STR:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise SessionStoreUnavailable(
                f"{where}: field {name!r} is {doc[name]!r}, not a string or null"
            )
    expires_at = doc.get("expires_at")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise SessionStoreUnavailable(f"{where}: expires_at {expires_at!r} is not a number")
    claims = doc.get("attested_claims")
    if claims is not None and not isinstance(claims, dict):
        raise SessionStoreUnavailable(
            f"{where}: attested_claims is {type(claims).__name__}, not an object or null"
        )
    generation = doc.get("generation", "0.4.0")
    if not isinstance(generation, str):
        raise SessionStoreUnavailable(f"{where}: generation {generation!r} is not a string")
    return Session(
        id=doc["id"],
        version=doc["version"],
        tee=doc["tee"],
        nonce=doc["nonce"],
        expires_at=float(expires_at),
        token=doc.get("token"),
        generation=generation,
        attested_claims=claims,
        attested_claims_json=doc.get("attested_claims_json"),
    )


def _expiry_ms(session: Session) -> int:
    # PXAT refuses 0 and negatives; a session already past its expiry is dropped by Redis.
    if not math.isfinite(session.expires_at):
        raise SessionStoreUnavailable(
            f"session {session.id}: expires_at {session.expires_at!r} is not a finite time"
        )
    return max(1, math.ceil(session.expires_at * 1000))


class RedisSessionStore:
    """Implements `SessionStore`; the client is shared and closed by whoever made it."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "trustee:session:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._now = clock

    def _key(self, session_id: str) -> str:
        return self.prefix + session_id

    async def _call(self, operation: str, session_id: str, *args: Any) -> Any:
        try:
            return await self.client.execute(*args)
        except (RedisUnavailable, RedisError) as exc:
            raise SessionStoreUnavailable(f"session {operation} {session_id!r}: {exc}") from exc

    def _live(self, raw: Any, session_id: str) -> Session | None:
        if raw is None:
            return None
        if not isinstance(raw, bytes):
            raise SessionStoreUnavailable(
                f"session {session_id!r}: server answered {type(raw).__name__}, not a value"
            )
        session = decode_session(raw, f"session {session_id!r}")
        # Redis expires by its own clock; ours decides too, so clock skew never extends a session.
        if session.expired(self._now()):
            return None
        return session

    async def insert(self, session: Session) -> None:
        value = encode_session(session)
        key = self._key(session.id)
        await self._call("insert", session.id, "SET", key, value, "PXAT", _expiry_ms(session))

    async def get(self, session_id: str) -> Session | None:
        if not session_id:
            return None
        raw = await self._call("get", session_id, "GET", self._key(session_id))
        return self._live(raw, session_id)

    async def update(self, session: Session) -> None:
        """Rewrites a live session; one that has expired meanwhile stays gone (XX)."""
        value = encode_session(session)
        key = self._key(session.id)
        await self._call("update", session.id, "SET", key, value, "PXAT", _expiry_ms(session), "XX")

    async def set_token_once(
        self,
        session_id: str,
        token: str,
        claims: dict[str, Any] | None,
        claims_json: str | None,
    ) -> Session | None:
        """Stores the token unless the session already has one; returns the session as stored.

        None when the session is unknown or expired. Every concurrent caller gets the same
        token back: the first writer's.
        """
        if not session_id:
            return None
        key = self._key(session_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            raw = await self._call("set_token_once", session_id, "GET", key)
            session = self._live(raw, session_id)
            if session is None or session.token is not None:
                return session
            updated = dataclasses.replace(
                session, token=token, attested_claims=claims, attested_claims_json=claims_json
            )
            try:
                stored = await _COMPARE_AND_SET.run(
                    self.client, [key], [raw, encode_session(updated)]
                )
            except (RedisUnavailable, RedisError) as exc:
                raise SessionStoreUnavailable(
                    f"session set_token_once {session_id!r}: {exc}"
                ) from exc
            result = self._live(stored, session_id)
            if result is None or result.token is not None:
                return result
        raise SessionStoreUnavailable(
            f"session set_token_once {session_id!r}: the session changed under every one of "
            f"{MAX_CAS_ATTEMPTS} attempts"
        )

    async def purge_expired(self) -> int:
        """Redis expires the keys itself; nothing to sweep."""
        return 0
