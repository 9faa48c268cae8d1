"""RCAR session storage. Expiry is fixed at /auth; reading an expired session deletes it."""

from __future__ import annotations

import abc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from trustee.protocol.rcar import Session


class SessionStoreUnavailable(Exception):
    """The session backend failed, or what it holds is not a session."""


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


class SessionRefused(Exception):
    """A cookie that does not open: `kind` is malformed, unknown-key, tampered or expired."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class SessionTooLarge(Exception):
    """The attested session does not fit a cookie."""


class CookieSessions(abc.ABC):
    """Sessions that travel in the `kbs-session-id` cookie itself, nothing kept on the server.

    The RCAR handlers treat them apart from a `SessionStore`: /attest seals the attested
    successor into a new cookie instead of storing the token, and every request opens the
    cookie rather than looking an id up.
    """

    @abc.abstractmethod
    def open(self, cookie: str) -> Session:
        """The session `cookie` carries; SessionRefused says why it does not open."""

    @abc.abstractmethod
    async def insert(self, session: Session) -> None:
        """Seal `session` into its cookie (`session.cookie`)."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The session a cookie carries, or None when it does not open."""

    @abc.abstractmethod
    def seal_attested(self, session: Session) -> str:
        """The cookie carrying the attested `session`; SessionTooLarge when it does not fit one."""

    def attested(
        self,
        session: Session,
        claims_json: str,
        token_ref: str | None,
        verifier_refusal: str | None,
        *,
        token: str | None = None,
    ) -> Session:
        """The attested successor of `session`, its cookie sealed: what the resource path
        needs (the claims as issued) in place of the nonce, and `token` when it is given (a
        token this server cannot sign again, whose payload is `claims_json`)."""
        after = Session(
            id=session.id,
            version=session.version,
            tee=session.tee,
            nonce="",
            expires_at=session.expires_at,
            generation=session.generation,
            attested_claims_json=claims_json,
            verifier_refusal=verifier_refusal,
            token_ref=token_ref,
            token=token,
        )
        after.cookie = self.seal_attested(after)
        return after

    async def purge_expired(self) -> int:
        return 0


# What the KBS keeps its RCAR sessions in.
Sessions = SessionStore | CookieSessions


# A busy KBS holds on the order of 100 000 live sessions (five minutes of /auth at a few hundred
# per second); past the bounds the least recently used session goes, so a flood of /auth calls
# costs the flood's own oldest sessions rather than the server's memory.
MAX_MEMORY_SESSIONS = 100_000
# Attested sessions keep their token and claims; about 4 KiB each for sample or SNP evidence,
# tens of KiB with TDX event logs. 1 GiB holds the full count at the typical size.
MAX_MEMORY_SESSION_BYTES = 1024 * 1024 * 1024
# A session's footprint besides its token: the object, its strings and the dict slot.
SESSION_OVERHEAD_BYTES = 1024
# One warning per interval at most: under a flood every /auth evicts.
EVICTION_WARNING_INTERVAL_S = 60.0

log = logging.getLogger(__name__)


def session_footprint(session: Session) -> int:
    """Approximate memory held by `session`: the claims are kept as a dict and as JSON text
    besides the token that carries them, hence the token counted three times."""
    return SESSION_OVERHEAD_BYTES + len(session.version) + 3 * len(session.token or "")


class MemorySessionStore:
    """Sessions in this process's memory: correct only with one worker and one replica.

    Bounded in count and in approximate bytes; when either bound is reached the least recently
    used session is evicted (its guest gets 401 and re-attests, as after expiry).
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        max_sessions: int = MAX_MEMORY_SESSIONS,
        max_bytes: int = MAX_MEMORY_SESSION_BYTES,
    ) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._now = clock
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.evicted = 0  # since the process started, for tests and operators
        self._unreported = 0
        self._last_warning: float | None = None

    def _put(self, session: Session) -> None:
        self._drop(session.id)
        size = session_footprint(session)
        self._sessions[session.id] = session
        self._sizes[session.id] = size
        self._bytes += size
        self._evict(keep=session.id)

    def _drop(self, session_id: str) -> None:
        if self._sessions.pop(session_id, None) is not None:
            self._bytes -= self._sizes.pop(session_id)

    def _evict(self, keep: str) -> None:
        evicted = 0
        while len(self._sessions) > self.max_sessions or self._bytes > self.max_bytes:
            oldest = next(iter(self._sessions))
            if oldest == keep:
                break  # a lone session larger than the budget still serves its guest
            self._drop(oldest)
            evicted += 1
        if evicted:
            self.evicted += evicted
            self._unreported += evicted
            self._warn()

    def _warn(self) -> None:
        now = self._now()
        if self._last_warning is not None and now - self._last_warning < (
            EVICTION_WARNING_INTERVAL_S
        ):
            return
        log.warning(
            "session store full (%d sessions, about %d MiB; bounds %d sessions, %d MiB): "
            "evicted %d least recently used sessions; their guests must attest again. "
            "Use Redis sessions or more replicas if this is legitimate load",
            len(self._sessions),
            self._bytes // (1024 * 1024),
            self.max_sessions,
            self.max_bytes // (1024 * 1024),
            self._unreported,
        )
        self._unreported = 0
        self._last_warning = now

    async def insert(self, session: Session) -> None:
        self._put(session)

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expired(self._now()):
            self._drop(session_id)
            return None
        self._sessions.move_to_end(session_id)
        return session

    async def update(self, session: Session) -> None:
        self._put(session)

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
            self._put(session)
        return session

    async def purge_expired(self) -> int:
        now = self._now()
        dead = [sid for sid, s in self._sessions.items() if s.expired(now)]
        for sid in dead:
            self._drop(sid)
        return len(dead)

    def __len__(self) -> int:
        return len(self._sessions)
