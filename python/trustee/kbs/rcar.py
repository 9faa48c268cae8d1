"""`/auth` and `/attest`: the RCAR handshake's server side over the session store or the
sealed cookie, the attestation service and the audit trail."""

from __future__ import annotations

import logging
import time

from trustee.attestation.backend import AttestationBackend, AttestationFailure
from trustee.kbs.context import KbsContext
from trustee.kbs.guest_reasons import guest_reason
from trustee.kbs.trail import Trail
from trustee.kbs.wire import JSON, Reply, Request, store_error, token_id
from trustee.protocol import errors, limits, rcar
from trustee.protocol.errors import KbsError
from trustee.storage.sessions import (
    CookieSessions,
    SessionRefused,
    SessionStoreUnavailable,
    SessionTooLarge,
)

log = logging.getLogger("trustee.kbs")


async def auth(kbs: KbsContext, req: Request, rest: list[str], trail: Trail) -> Reply:
    try:
        request = rcar.parse_auth_request(req.body, kbs.config.protocol.accepted_versions)
        session = rcar.new_session(request, kbs.timeout_min, time.time())
        await kbs.sessions.insert(session)
        await trail.session_created(session=session)
    except KbsError:
        kbs.metrics.auth("error")
        raise
    kbs.metrics.auth("success")
    return Reply(
        body=rcar.challenge_body(session),
        content_type=JSON,
        headers=[("Set-Cookie", rcar.set_cookie_value(session))],
    )


async def open_session(kbs: KbsContext, cookie: str | None) -> rcar.Session:
    if not cookie:
        raise errors.attest_failed("no kbs-session-id cookie; call /auth first")
    if isinstance(kbs.sessions, CookieSessions):
        try:
            return kbs.sessions.open(cookie)
        except SessionRefused as exc:
            raise errors.attest_failed(f"session cookie refused: {exc.reason}") from exc
    session = await kbs.sessions.get(cookie)
    if session is None:
        raise errors.attest_failed("unknown or expired session")
    return session


def _answer(token: str, session: rcar.Session) -> Reply:
    return Reply(
        body=rcar.token_body(token),
        content_type=JSON,
        headers=[("Set-Cookie", rcar.set_cookie_value(session))],
    )


def _repeated(service: AttestationBackend, session: rcar.Session) -> str:
    """Upstream answers a repeated /attest with the stored token, without re-verifying; a
    sealed session carries the token of a remote AS, and the claims the built-in one re-signs."""
    if session.token is not None:
        return session.token
    assert session.attested_claims_json is not None
    token = service.reissue(session.attested_claims_json)
    if token is None:
        # Sealed while this KBS used its built-in AS: its claims, not its token, are kept.
        said = "the session's token cannot be signed again; call /auth to start a new session"
        raise errors.attest_failed(said, logged=f"{said} (Attestation Service: {service.where})")
    return token


async def attest(kbs: KbsContext, req: Request, rest: list[str], trail: Trail) -> Reply:
    service = kbs.attestation
    assert service is not None  # the route needs the attestation service
    body = req.body
    session = await open_session(kbs, req.cookies.get(rcar.SESSION_COOKIE))
    if session.attested:
        return _answer(_repeated(service, session), session)
    try:
        attestation = rcar.parse_attestation(body, session.generation)
        requests = rcar.evidence_requests(session, attestation)
    except KbsError as exc:
        kbs.metrics.attestation(session.tee, "error")
        await trail.attestation_failed(session=session, body=body, reason=exc.reason or exc.detail)
        raise
    try:
        appraised = await service.evaluate(requests, ["default"])
        rcar.check_session_token(appraised.token)
    except AttestationFailure as exc:
        kbs.metrics.attestation(session.tee, "failure")
        await trail.attestation_failed(session=session, body=body, reason=exc.reason)
        raise errors.attest_failed(guest_reason(exc), logged=exc.reason) from exc
    except limits.InputLimitError as exc:
        # Init-data nesting found while appraising, or a token too large to keep.
        kbs.metrics.attestation(session.tee, "error")
        await trail.attestation_failed(session=session, body=body, reason=exc.reason or exc.detail)
        raise
    store = kbs.sessions
    kept: rcar.Session | None = None
    if isinstance(store, CookieSessions):
        refusal = await kbs.claims.own_token_refusal(appraised.token)
        try:
            kept = store.attested(
                session,
                appraised.claims_json,
                token_id(appraised.token),
                refusal,
                # A remote AS's token cannot be signed again here: the cookie keeps it.
                token=None if service.signer_fixed else appraised.token,
            )
        except SessionTooLarge as exc:
            kbs.metrics.attestation(session.tee, "error")
            await trail.attestation_failed(session=session, body=body, reason=str(exc))
            raise errors.attest_failed(str(exc)) from exc
    kbs.metrics.attestation(session.tee, "success")
    await trail.attestation_verified(session=session, body=body, claims=appraised.claims)
    await trail.token_issued(token=appraised.token, claims=appraised.claims)
    if not isinstance(store, CookieSessions):
        try:
            stored = await store.set_token_once(
                session.id, appraised.token, appraised.claims, appraised.claims_json
            )
        except SessionStoreUnavailable as exc:
            raise store_error(req.path, str(exc)) from exc
        if stored is None:
            raise errors.attest_failed("the session expired during attestation")
        if stored.token != appraised.token:
            # Another request (maybe on another replica) attested this session first:
            # answer with its token, as a repeated /attest would.
            return _answer(stored.token or "", stored)
        kept = stored
    assert kept is not None  # the sealed successor, or the session as stored
    statuses = {k: v.get("ear.status") for k, v in appraised.claims["submods"].items()}
    log.info(
        "session %s attested (%s, protocol %s): %s; session cookie of %d bytes",
        session.id,
        session.tee,
        session.generation,
        statuses,
        len(kept.cookie_value),
    )
    return _answer(appraised.token, kept)
