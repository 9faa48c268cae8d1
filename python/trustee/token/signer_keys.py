"""The token signing keys an Attestation Service publishes as a JWK set (upstream's AS serves it
at `/.well-known/jwks.json`), trusted for tokens whose header `jwk` is one of them.

An AS's tokens carry their key in the header and no `kid`, so a key is recognised by what it is,
not by name. The set is fetched when the KBS starts and again when a token brings a key not in
it (an AS restarted with a fresh ephemeral key), at most once per `MIN_REFRESH_S`, so tokens
with forged keys cannot make the KBS hammer the AS.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trustee.crypto.jwk import JwkError, PublicKey, public_key_from_jwk, same_public_key

log = logging.getLogger(__name__)

MIN_REFRESH_S = 1.0


class SignerKeyError(Exception):
    """The JWK set could not be fetched or read."""


def parse_jwk_set(body: bytes, source: str) -> list[PublicKey]:
    """The usable keys of a JWK set; a key that is not one is logged and skipped."""
    try:
        doc: Any = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignerKeyError(f"{source} is not JSON: {exc}") from exc
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise SignerKeyError(f"{source} is not a JWK set (no 'keys' array)")
    out: list[PublicKey] = []
    for i, jwk in enumerate(keys):
        try:
            if not isinstance(jwk, dict):
                raise JwkError("not an object")
            out.append(public_key_from_jwk(jwk, exact_coordinates=False))
        except JwkError as exc:
            log.warning("key #%d of %s is unusable: %s", i, source, exc)
    return out


class PublishedSignerKeys:
    def __init__(
        self,
        source: str,
        fetch: Callable[[], Awaitable[bytes]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source  # the JWK set's URL, for messages
        self._fetch = fetch
        self._monotonic = monotonic
        self._keys: list[PublicKey] = []
        self._fetched_at: float | None = None
        self._lock = trio.Lock()
        self.problem: str | None = None  # why the last fetch failed

    async def load(self) -> str | None:
        """Fetch the set now; why it failed, or None."""
        async with self._lock:
            await self._load()
        return self.problem

    async def _load(self) -> None:
        self._fetched_at = self._monotonic()
        try:
            self._keys = parse_jwk_set(await self._fetch(), self.source)
        except SignerKeyError as exc:
            self.problem = str(exc)
        except Exception as exc:  # the fetcher's own errors: the AS is down, a TLS failure
            self.problem = f"fetching {self.source} failed: {exc}"
        else:
            self.problem = None
            log.info("%d token signing key(s) published at %s", len(self._keys), self.source)
            return
        log.warning("token signing keys: %s", self.problem)

    def _known(self, key: PublicKey) -> bool:
        return any(same_public_key(key, k) for k in self._keys)

    async def trusts(self, key: PublicKey) -> bool:
        if self._known(key):
            return True
        async with self._lock:
            # A concurrent request may have fetched the new set meanwhile.
            if self._known(key):
                return True
            last = self._fetched_at
            if last is None or self._monotonic() - last >= MIN_REFRESH_S:
                await self._load()
        return self._known(key)
