"""RCAR session storage. Expiry is fixed at /auth; reading an expired session deletes it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from trustee.protocol.rcar import Session


class SessionStore(Protocol):
    async def insert(self, session: Session) -> None: ...

    async def get(self, session_id: str) -> Session | None:
        """The live session, or None when unknown or expired."""
        ...

    async def update(self, session: Session) -> None: ...

    async def set_token_once(
        self,
        session_id: str,
        token: str,
        claims: dict[str, Any] | None,
        claims_json: str | None,
    ) -> Session | None:
        """Store the token unless the session already has one; the session as stored (so
        concurrent /attest on one session answer one token), or None when it is gone."""
        ...

    async def purge_expired(self) -> int: ...


class MemorySessionStore:
    """Sessions in this process's memory: correct only with one worker and one replica."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[str, Session] = {}
        self._now = clock

    async def insert(self, session: Session) -> None:
        self._sessions[session.id] = session

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expired(self._now()):
            self._sessions.pop(session_id, None)
            return None
        return session

    async def update(self, session: Session) -> None:
        self._sessions[session.id] = session

    async def set_token_once(
        self,
        session_id: str,
        token: str,
        claims: dict[str, Any] | None,
        claims_json: str | None,
    ) -> Session | None:
        session = await self.get(session_id)
        if session is None:
            return None
        if session.token is None:
            session.token = token
            session.attested_claims = claims
            session.attested_claims_json = claims_json
        return session

    async def purge_expired(self) -> int:
        now = self._now()
        dead = [sid for sid, s in self._sessions.items() if s.expired(now)]
        for sid in dead:
            del self._sessions[sid]
        return len(dead)

    def __len__(self) -> int:
        return len(self._sessions)
