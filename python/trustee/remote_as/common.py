"""What the REST and gRPC clients share: the deadline on every call, the mapping of a transport's
failures onto the backend's errors, the readiness probe's cache and the reading of a token."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import trio

from trustee.attestation.backend import (
    Appraised,
    AttestationFailure,
    BackendRefused,
    BackendUnavailable,
    PolicyRefused,
)
from trustee.attestation.rvps import RvpsError
from trustee.config.model import RemoteAsConfig
from trustee.crypto.jws import JwsError, split_compact
from trustee.policy.engine import CompiledPolicy
from trustee.protocol.rcar import MAX_SESSION_TOKEN_BYTES, EvidenceRequest

log = logging.getLogger("trustee.remote_as")

T = TypeVar("T")

# The largest answer read from the AS: a token a session cannot keep is refused anyway, and
# every other answer is far smaller.
MAX_ANSWER_BYTES = MAX_SESSION_TOKEN_BYTES + 64 * 1024
# Readiness asks the AS at most this often; /readyz probes of every replica and kubelet answer
# from the last result meanwhile.
PROBE_CACHE_S = 1.5
# Within the KBS's own readiness deadline (trustee.kbs.core.READINESS_TIMEOUT), so the probe's
# answer, not the deadline's, is what /readyz says.
PROBE_TIMEOUT_S = 1.5
# What is quoted of an AS's refusal in logs and error messages.
QUOTE_CHARS = 2000


def quote(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def appraised(token: str, where: str) -> Appraised:
    """The token the AS issued and its claims (their signature is the token verifier's
    business, as for any token the KBS accepts)."""
    try:
        parsed = split_compact(token)
        claims = parsed.claims()
        claims_json = parsed.payload.decode()
    except (JwsError, UnicodeDecodeError) as exc:
        raise BackendRefused(f"{where} answered with an unusable token: {exc}") from exc
    if not isinstance(claims.get("submods"), dict):
        raise BackendRefused(f"{where} answered with a token without `submods` claims")
    return Appraised(token=token, claims=claims, claims_json=claims_json)


class RemoteAs(ABC):
    """An AttestationBackend in another process; subclasses carry the requests."""

    signer_fixed = False

    def __init__(self, config: RemoteAsConfig, *, monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.timeout = config.timeout_ms / 1000
        self._monotonic = monotonic
        self._probe_lock = trio.Lock()
        self._probed_at: float | None = None
        self._probe_result: str | None = None

    @property
    def where(self) -> str:
        return f"Attestation Service at {self.config.address}"

    async def deadline(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, given the configured timeout, connecting included."""
        with trio.move_on_after(self.timeout):
            return await call()
        raise BackendUnavailable(
            f"{self.where}: {what} got no answer within {self.config.timeout_ms} ms"
        )

    # ----------------------------------------------------------------- AttestationBackend

    async def evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> Appraised:
        try:
            token = await self.deadline("attestation", lambda: self._evaluate(requests, policy_ids))
            return appraised(token, self.where)
        except (BackendUnavailable, BackendRefused) as exc:
            raise AttestationFailure(str(exc)) from exc

    def reissue(self, claims_json: str) -> str | None:
        return None  # the AS holds the signing key

    async def set_policy(self, policy_id: str, text: str) -> None:
        try:
            await self.deadline("set policy", lambda: self._set_policy(policy_id, text))
        except (BackendUnavailable, BackendRefused) as exc:
            raise PolicyRefused(str(exc)) from exc

    async def register_reference_value(self, message: bytes) -> None:
        try:
            await self.deadline("register reference value", lambda: self._register(message))
        except (BackendUnavailable, BackendRefused) as exc:
            raise RvpsError(f"Failed to register reference value: {exc}") from exc

    async def query_reference_value(self, rv_id: str) -> Any | None:
        try:
            return await self.deadline("query reference value", lambda: self._query(rv_id))
        except (BackendUnavailable, BackendRefused) as exc:
            raise RvpsError(str(exc)) from exc

    async def stored_policy(self, policy_id: str) -> CompiledPolicy | None:
        return None  # upstream's AS APIs do not hand policies out

    async def reference_values(self) -> Mapping[str, str] | None:
        return None

    async def unready(self) -> str | None:
        async with self._probe_lock:
            now = self._monotonic()
            if self._probed_at is None or now - self._probed_at >= PROBE_CACHE_S:
                self._probe_result = await self._probe_once()
                self._probed_at = self._monotonic()
            return self._probe_result

    async def _probe_once(self) -> str | None:
        with trio.move_on_after(min(self.timeout, PROBE_TIMEOUT_S)):
            try:
                await self._probe()
            except BackendUnavailable as exc:
                return str(exc)
            return None
        return f"{self.where} did not answer the readiness probe"

    # ----------------------------------------------------------------- transports

    @abstractmethod
    async def _evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> str:
        """The token; BackendUnavailable or BackendRefused."""

    @abstractmethod
    async def _set_policy(self, policy_id: str, text: str) -> None: ...

    @abstractmethod
    async def _register(self, message: bytes) -> None: ...

    @abstractmethod
    async def _query(self, rv_id: str) -> Any | None: ...

    @abstractmethod
    async def _probe(self) -> None:
        """Return when the AS can be reached; BackendUnavailable when it cannot."""

    @abstractmethod
    async def aclose(self) -> None: ...
