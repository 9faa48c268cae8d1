"""The Key Broker Service: one request in, one reply out, independent of HTTP.

The HTTP layer converts each request to plain values and calls `Kbs.handle`; everything here
works on bytes, dicts and the stores, so it is tested the same way it runs. What answers a
request is `routes.ROUTES`; the handlers live in `rcar`, `admin` and `resources`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from trustee.admin.auth import AdminAuthorizer
from trustee.attestation.backend import AttestationBackend
from trustee.audit.dispatcher import AuditDispatcher, AuditRequiredSinkError, NullDispatcher
from trustee.audit.event import AuditEvent
from trustee.config.model import Config
from trustee.kbs.claims import ClaimsSource
from trustee.kbs.routes import dispatch
from trustee.kbs.trail import Trail
from trustee.kbs.wire import Reply, Request, error_reply, store_error
from trustee.metrics import Metrics
from trustee.plugins.base import Plugin
from trustee.plugins.resource_policy import ResourcePolicy
from trustee.protocol.errors import KbsError
from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.sessions import Sessions, SessionStoreUnavailable
from trustee.token.verifier import AttestationTokenVerifier

log = logging.getLogger("trustee.kbs")

READINESS_TIMEOUT = 2.0


class Kbs:
    def __init__(
        self,
        config: Config,
        sessions: Sessions,
        attestation: AttestationBackend | None,
        token_verifier: AttestationTokenVerifier,
        resource_policy: ResourcePolicy,
        plugins: dict[str, Plugin],
        admin: AdminAuthorizer,
        *,
        metrics: Metrics | None = None,
        audit: AuditDispatcher | NullDispatcher | None = None,
        stores: Sequence[KeyValueStore] = (),
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.attestation = attestation
        self.token_verifier = token_verifier
        self.resource_policy = resource_policy
        self.plugins = plugins
        self.admin = admin
        self.timeout_min = config.attestation_service.timeout if config.attestation_service else 5
        self.metrics = metrics if metrics is not None else Metrics()
        self.stores = list(stores)  # probed by readiness
        self.audit = audit if audit is not None else NullDispatcher()
        self.claims = ClaimsSource(
            sessions,
            token_verifier,
            signer_fixed=attestation.signer_fixed if attestation is not None else True,
        )

    async def handle(self, req: Request) -> Reply:
        trail = Trail(self._emit, self.auditing, req.request_id)
        try:
            try:
                return await dispatch(self, req, trail)
            except (SessionStoreUnavailable, StorageError) as exc:
                # A store outage fails this request fast with upstream's error shape; the
                # next request tries the store again.
                raise store_error(req.path, str(exc)) from exc
        except KbsError as exc:
            log.info(
                "%s /kbs/v0/%s → %s: %s",
                req.method,
                req.path,
                exc.variant,
                exc.for_log,
            )
            return error_reply(exc)

    async def ready(self) -> tuple[bool, str]:
        """Whether the stores and the Attestation Service answer: (ok, what failed)."""
        try:
            with trio.fail_after(READINESS_TIMEOUT):
                await self.sessions.get("readiness-probe")
                for store in self.stores:
                    await store.get("kbs", "readiness-probe")
        except (SessionStoreUnavailable, StorageError) as exc:
            return False, str(exc)
        except trio.TooSlowError:
            return False, f"a store did not answer within {READINESS_TIMEOUT:g} s"
        if self.attestation is not None:
            with trio.move_on_after(READINESS_TIMEOUT):
                why = await self.attestation.unready()
                return why is None, why or ""
            return False, f"{self.attestation.where} did not answer within {READINESS_TIMEOUT:g} s"
        return True, ""

    async def _emit(self, event: AuditEvent) -> None:
        try:
            await self.audit.emit(event)
        except AuditRequiredSinkError as exc:
            # Only a sink declared `required` can fail a request; the decision is not released.
            log.error("audit: %s", exc)
            raise KbsError("AuditUnavailable", "Audit sink unavailable", str(exc)) from exc

    @property
    def auditing(self) -> bool:
        return not isinstance(self.audit, NullDispatcher)
