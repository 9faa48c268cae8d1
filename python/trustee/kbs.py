"""The Key Broker Service: routing decisions and request handling, independent of HTTP.

The Quart app converts each request to plain values and calls `Kbs.handle`; everything here works
on bytes, dicts and the stores, so it is tested the same way it runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from trustee import jsonfast
from trustee.admin.auth import AdminAuthorizer, AdminDenied
from trustee.attestation.policies import PolicyStoreError
from trustee.attestation.rvps import RvpsError
from trustee.attestation.service import AttestationFailure, AttestationService
from trustee.audit import event as audit
from trustee.audit.dispatcher import AuditDispatcher, AuditRequiredSinkError, NullDispatcher
from trustee.audit.event import AuditEvent
from trustee.config.model import Config
from trustee.crypto.jws import JwsError, check_time_claims
from trustee.metrics import Metrics
from trustee.plugins.base import Plugin, PluginError, PluginRequest
from trustee.plugins.resource_policy import ResourcePolicy, ResourcePolicyError
from trustee.policy.engine import PolicyCompileError, PolicyEvalError
from trustee.policy.explain import explain, reason_path
from trustee.protocol import errors, limits, rcar
from trustee.protocol.errors import KbsError
from trustee.protocol.headers import HeaderLookup, bearer_token
from trustee.protocol.jwe import JweError, JweForm, form_for_protocol
from trustee.sealing import seal
from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.sealed_sessions import SealedSessions, SessionRefused, SessionTooLarge
from trustee.storage.sessions import SessionStore, SessionStoreUnavailable
from trustee.token.verifier import LEEWAY_SECONDS, AttestationTokenVerifier, TokenVerifyError

log = logging.getLogger("trustee.kbs")

JSON = "application/json"
VERIFIED_TOKEN_CACHE = 4096
READINESS_TIMEOUT = 2.0
BUILTIN_ATTESTATION = frozenset({"auth", "attest", "attestation-policy", "reference-value"})


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # everything after /kbs/v0/
    query: dict[str, str]
    body: bytes
    headers: HeaderLookup
    cookies: Mapping[str, str]
    uri: str  # path and query as received, for admin ACLs
    peer: str | None = None  # the client's address
    request_id: str = ""  # shared by the log lines, audit events and the X-Request-Id header

    @property
    def peer_is_loopback(self) -> bool:
        if not self.peer:
            return False
        try:
            return ipaddress.ip_address(self.peer.split("%", 1)[0]).is_loopback
        except ValueError:
            return False


def _compact(value: Any) -> bytes:
    # serde's compact form, as upstream's server writes its JSON bodies.
    return jsonfast.dumps(value)


def error_reply(exc: KbsError) -> Reply:
    return Reply(status=exc.status, body=exc.body(), content_type=JSON)


def _store_error(path: str, reason: str) -> KbsError:
    name = path.partition("/")[0]
    if name == "auth":
        return errors.auth_failed(f"session store unavailable: {reason}")
    if name == "attest":
        return errors.attest_failed(f"session store unavailable: {reason}")
    return errors.plugin_internal_error(f"storage unavailable: {reason}")


def _digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def token_id(token: str | None) -> str | None:
    # EAR tokens carry no `jti`; the token's SHA-256 names it in audit events instead.
    return None if token is None else _digest(token)[:32]


def _b64url_nopad_or_pad(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"`{what}` is missing or not a string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"`{what}` is not base64url of UTF-8 text: {exc}") from exc


class Kbs:
    def __init__(
        self,
        config: Config,
        sessions: SessionStore | SealedSessions,
        attestation: AttestationService | None,
        token_verifier: AttestationTokenVerifier,
        resource_policy: ResourcePolicy,
        plugins: dict[str, Plugin],
        admin: AdminAuthorizer,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.attestation = attestation
        self.token_verifier = token_verifier
        self.resource_policy = resource_policy
        self.plugins = plugins
        self.admin = admin
        self.timeout_min = config.attestation_service.timeout if config.attestation_service else 5
        self.metrics = Metrics()
        self.stores: list[KeyValueStore] = []  # probed by readiness
        self.audit: AuditDispatcher | NullDispatcher = NullDispatcher()
        self._verified_tokens: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._own_tokens_trusted = False

    async def handle(self, req: Request) -> Reply:
        try:
            try:
                return await self._route(req)
            except (SessionStoreUnavailable, StorageError) as exc:
                # A store outage fails this request fast with upstream's error shape; the
                # next request tries the store again.
                raise _store_error(req.path, str(exc)) from exc
        except KbsError as exc:
            log.info(
                "%s /kbs/v0/%s → %s: %s",
                req.method,
                req.path,
                exc.variant,
                exc.reason or exc.detail,
            )
            return error_reply(exc)

    async def ready(self) -> tuple[bool, str]:
        """Whether the stores answer: (ok, what failed)."""
        try:
            with trio.fail_after(READINESS_TIMEOUT):
                await self.sessions.get("readiness-probe")
                for store in self.stores:
                    await store.get("kbs", "readiness-probe")
        except (SessionStoreUnavailable, StorageError) as exc:
            return False, str(exc)
        except trio.TooSlowError:
            return False, f"a store did not answer within {READINESS_TIMEOUT:g} s"
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

    async def _route(self, req: Request) -> Reply:
        name, _, rest = req.path.partition("/")
        segments = rest.split("/") if rest else []
        m = req.method
        if self.attestation is not None:
            if name == "auth" and m == "POST":
                try:
                    reply = await self.auth(req.body, req.request_id)
                except KbsError:
                    self.metrics.auth("error")
                    raise
                self.metrics.auth("success")
                return reply
            if name == "attest" and m == "POST":
                return await self.attest(
                    req.body, req.cookies.get(rcar.SESSION_COOKIE), req.request_id
                )
            if name == "attestation-policy" and m == "POST":
                who = self._admin(req, name)
                reply = await self.set_attestation_policy(req.body)
                await self._admin_changed(req, who, "attestation")
                return reply
            if name == "reference-value" and m == "GET":
                self._admin(req, name)
                return await self.get_reference_value("/".join(segments))
            if name == "reference-value" and m == "POST":
                who = self._admin(req, name)
                reply = await self.set_reference_value(req.body)
                await self._admin_changed(req, who, "reference-value")
                return reply
        if name == "resource-policy" and m == "POST":
            who = self._admin(req, name)
            reply = await self.set_resource_policy(req.body)
            await self._admin_changed(req, who, "resource")
            return reply
        if name == "resource-policy" and m == "GET":
            self._admin(req, name)
            return await self.get_resource_policy()
        if name == "policy-explain" and m == "POST":
            self._admin(req, name)
            return await self.explain_policy(req.body)
        return await self.plugin_request(req, name, segments)

    # ---- RCAR -------------------------------------------------------------------------------

    async def auth(self, body: bytes, request_id: str = "") -> Reply:
        request = rcar.parse_auth_request(body, self.config.protocol.accepted_versions)
        session = rcar.new_session(request, self.timeout_min, time.time())
        await self.sessions.insert(session)
        if self.auditing:
            await self._emit(
                audit.session_created(session.id, session.tee, request_id=request_id or None)
            )
        return Reply(
            body=rcar.challenge_body(session),
            content_type=JSON,
            headers=[("Set-Cookie", rcar.set_cookie_value(session))],
        )

    async def _open_session(self, cookie: str | None) -> rcar.Session:
        if not cookie:
            raise errors.attest_failed("no kbs-session-id cookie; call /auth first")
        if isinstance(self.sessions, SealedSessions):
            try:
                return self.sessions.open(cookie)
            except SessionRefused as exc:
                raise errors.attest_failed(f"session cookie refused: {exc.reason}") from exc
        session = await self.sessions.get(cookie)
        if session is None:
            raise errors.attest_failed("unknown or expired session")
        return session

    async def attest(self, body: bytes, cookie: str | None, request_id: str = "") -> Reply:
        assert self.attestation is not None
        session = await self._open_session(cookie)
        if session.attested:
            # Upstream answers a repeated /attest with the stored token, without re-verifying;
            # a sealed session re-signs the claims it carries.
            token = session.token
            if token is None:
                assert session.attested_claims_json is not None
                token = self.attestation.broker.reissue(session.attested_claims_json)
            return Reply(
                body=rcar.token_body(token),
                content_type=JSON,
                headers=[("Set-Cookie", rcar.set_cookie_value(session))],
            )
        try:
            attestation = rcar.parse_attestation(body, session.generation)
            requests = rcar.evidence_requests(session, attestation)
        except KbsError as exc:
            self.metrics.attestation(session.tee, "error")
            await self._attestation_failed(session, body, exc.reason or exc.detail, request_id)
            raise
        try:
            appraised = await self.attestation.evaluate(requests, ["default"])
            rcar.check_session_token(appraised.token)
        except AttestationFailure as exc:
            self.metrics.attestation(session.tee, "failure")
            await self._attestation_failed(session, body, exc.reason, request_id)
            raise errors.attest_failed(exc.reason) from exc
        except limits.InputLimitError as exc:
            # Init-data nesting found while appraising, or a token too large to keep.
            self.metrics.attestation(session.tee, "error")
            await self._attestation_failed(session, body, exc.reason or exc.detail, request_id)
            raise
        store = self.sessions
        kept: rcar.Session | None = None
        if isinstance(store, SealedSessions):
            refusal = await self._own_token_refusal(appraised.token)
            try:
                kept = store.attested(
                    session, appraised.claims_json, token_id(appraised.token), refusal
                )
            except SessionTooLarge as exc:
                self.metrics.attestation(session.tee, "error")
                await self._attestation_failed(session, body, str(exc), request_id)
                raise errors.attest_failed(str(exc)) from exc
        self.metrics.attestation(session.tee, "success")
        if self.auditing:
            await self._attestation_verified(session, body, appraised.claims, request_id)
            jti = token_id(appraised.token) or ""
            exp = appraised.claims.get("exp")
            await self._emit(
                audit.token_issued(
                    jti, exp if isinstance(exp, int) else 0, request_id=request_id or None
                )
            )
        if not isinstance(store, SealedSessions):
            try:
                stored = await store.set_token_once(
                    session.id, appraised.token, appraised.claims, appraised.claims_json
                )
            except SessionStoreUnavailable as exc:
                raise errors.attest_failed(f"session store: {exc}") from exc
            if stored is None:
                raise errors.attest_failed("the session expired during attestation")
            if stored.token != appraised.token:
                # Another request (maybe on another replica) attested this session first:
                # answer with its token, as a repeated /attest would.
                return Reply(
                    body=rcar.token_body(stored.token or ""),
                    content_type=JSON,
                    headers=[("Set-Cookie", rcar.set_cookie_value(stored))],
                )
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
        return Reply(
            body=rcar.token_body(appraised.token),
            content_type=JSON,
            headers=[("Set-Cookie", rcar.set_cookie_value(kept))],
        )

    async def _own_token_refusal(self, token: str) -> str | None:
        """Why the configured token verifier refuses the tokens this process issues, if it
        does: a sealed session carries its claims, not the token, so the verifier's verdict
        on our signer is taken once and sealed with each session."""
        if self._own_tokens_trusted:
            return None
        try:
            await self.token_verifier.verify(token)
        except TokenVerifyError as exc:
            return exc.reason
        self._own_tokens_trusted = True
        return None

    async def _attestation_verified(
        self, session: rcar.Session, body: bytes, claims: dict[str, Any], request_id: str
    ) -> None:
        for name, submod in claims.get("submods", {}).items():
            await self._emit(
                audit.attestation_verified(
                    session.tee,
                    session.generation,
                    _digest(body),
                    f"{name}:{session.tee}",
                    str(submod.get("ear.appraisal-policy-id", "")),
                    str(submod.get("ear.status", "")),
                    submod.get("ear.trustworthiness-vector", {}),
                    request_id or None,
                )
            )

    async def _resource_denied(
        self,
        req: Request,
        path: str,
        policy_digest: str | None,
        token_ref: str | None,
        reason: str,
    ) -> None:
        if self.auditing:
            await self._emit(
                audit.resource_denied(
                    path, policy_digest, token_ref, reason, request_id=req.request_id or None
                )
            )

    async def _attestation_failed(
        self, session: rcar.Session, body: bytes, reason: str, request_id: str
    ) -> None:
        if self.auditing:
            await self._emit(
                audit.attestation_failed(
                    session.tee,
                    session.generation,
                    _digest(body),
                    session.tee,
                    None,
                    reason,
                    request_id or None,
                )
            )

    async def _admin_changed(self, req: Request, identity: str, kind: str | None) -> None:
        if not self.auditing:
            return
        digest = _digest(req.body)
        await self._emit(
            audit.admin_change(identity, req.uri, digest, request_id=req.request_id or None)
        )
        if kind == "reference-value":
            await self._emit(
                audit.reference_value_changed(
                    req.uri.rsplit("/", 1)[-1], digest, request_id=req.request_id or None
                )
            )
        elif kind is not None:
            await self._emit(
                audit.policy_changed(kind, req.uri, digest, request_id=req.request_id or None)
            )

    # ---- admin endpoints --------------------------------------------------------------------

    def _admin(self, req: Request, endpoint: str, plugin: bool = False) -> str:
        try:
            identity = self.admin.authorize(req.headers, req.uri, req.peer_is_loopback)
        except AdminDenied as exc:
            if self.config.admin.legacy_errors:
                raise errors.admin_auth_legacy(exc.reason) from exc
            if plugin:
                raise errors.admin_denied_plugin(exc.reason) from exc
            raise errors.admin_denied(endpoint, exc.reason) from exc
        who = identity.describe()
        log.info("admin %s %s by %s", req.method, req.uri, who)
        return who

    async def set_attestation_policy(self, body: bytes) -> Reply:
        assert self.attestation is not None
        try:
            doc = limits.loads(body, "attestation-policy body")
            if not isinstance(doc, dict):
                raise ValueError("body is not a JSON object")
            policy_id = doc.get("policy_id")
            if not isinstance(policy_id, str):
                raise ValueError("`policy_id` is missing or not a string")
            text = _b64url_nopad_or_pad(doc.get("policy"), "policy")
        except ValueError as exc:
            raise errors.set_policy_failed(f"attestation-policy body: {exc}") from exc
        try:
            await self.attestation.policies.set_policy(policy_id, text)
        except PolicyCompileError as exc:
            raise errors.set_policy_failed(f"policy {policy_id} does not compile: {exc}") from exc
        except PolicyStoreError as exc:
            raise errors.set_policy_failed(str(exc)) from exc
        return Reply()

    async def set_resource_policy(self, body: bytes) -> Reply:
        try:
            doc = limits.loads(body, "resource-policy body")
            if not isinstance(doc, dict):
                raise ValueError("body is not a JSON object")
            text = _b64url_nopad_or_pad(doc.get("policy"), "policy")
        except ValueError as exc:
            raise errors.parse_policy_error(str(exc)) from exc
        try:
            await self.resource_policy.set(text)
        except PolicyCompileError as exc:
            raise errors.policy_engine_error(f"resource policy does not compile: {exc}") from exc
        except StorageError as exc:
            raise errors.policy_engine_error(f"resource policy not stored: {exc}") from exc
        return Reply()

    async def get_resource_policy(self) -> Reply:
        if self.resource_policy.legacy:
            # ≤v0.18 answered with the policy itself, base64url without padding.
            text = await self.resource_policy.text()
            if text is None:
                raise errors.policy_engine_error("no resource policy is stored")
            encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
            return Reply(body=encoded.encode(), content_type="text/xml")
        return Reply(body=_compact(await self.resource_policy.ids()), content_type=JSON)

    async def explain_policy(self, body: bytes) -> Reply:
        """Evaluate a candidate (or the stored) policy against given claims; nothing is issued,
        released or stored. Body: {"kind": "resource" | "attestation", "policy"?: base64url
        Rego, "policy_id"?: stored attestation policy, "input": {...}, "data"?: {...},
        "resource_path"?: "repo/type/tag", "rules"?: [...]}."""
        try:
            doc = limits.loads(body, "policy-explain body")
            if not isinstance(doc, dict):
                raise ValueError("body is not a JSON object")
            kind = doc.get("kind", "resource")
            if kind not in ("resource", "attestation"):
                raise ValueError("`kind` must be 'resource' or 'attestation'")
            input_doc = doc.get("input", {})
            rules = doc.get("rules")
            if rules is not None and not (
                isinstance(rules, list) and all(isinstance(r, str) for r in rules)
            ):
                raise ValueError("`rules` must be a list of rule paths")
            text = _b64url_nopad_or_pad(doc["policy"], "policy") if "policy" in doc else None
        except ValueError as exc:
            raise errors.policy_engine_error(f"policy-explain body: {exc}") from exc
        data_doc = doc.get("data")
        lookup = None
        try:
            if kind == "resource":
                policy = (
                    self.resource_policy.cache.compile(text)
                    if text is not None
                    else await self.resource_policy.current()
                )
                if data_doc is None and isinstance(doc.get("resource_path"), str):
                    parts = doc["resource_path"].split("/")
                    data_doc = self.resource_policy.document("resource", parts, {})
                rules = rules or ["data.policy.allow"]
            else:
                if self.attestation is None:
                    raise errors.policy_engine_error("this KBS has no attestation service")
                if text is not None:
                    policy = self.resource_policy.cache.compile(text)
                else:
                    policy = await self.attestation.policies.get(
                        str(doc.get("policy_id", "default_cpu"))
                    )
                lookup = (await self.attestation.rvps.snapshot()).get
                rules = rules or ["data.policy.trust_claims", "data.policy.extensions"]
            # Explaining runs the policy, up to its time limit: never on the event loop.
            result = await trio.to_thread.run_sync(
                explain, policy, input_doc, data_doc, rules, lookup
            )
        except (PolicyCompileError, PolicyEvalError, PolicyStoreError) as exc:
            raise errors.policy_engine_error(f"policy-explain: {exc}") from exc
        result["reason"] = reason_path(result)
        return Reply(body=_compact(result), content_type=JSON)

    async def set_reference_value(self, body: bytes) -> Reply:
        assert self.attestation is not None
        try:
            await self.attestation.rvps.register(body)
        except RvpsError as exc:
            raise errors.rvps_error(str(exc)) from exc
        return Reply(content_type=JSON)

    async def get_reference_value(self, rv_id: str) -> Reply:
        assert self.attestation is not None
        try:
            value = await self.attestation.rvps.query(rv_id)
        except RvpsError as exc:
            raise errors.rvps_error(f"Failed to get reference_values: {exc}") from exc
        if value is None:
            raise errors.rvps_error(
                "Failed to get reference_values: "
                f"No reference value found for the given id: {rv_id}"
            )
        return Reply(body=_compact(value), content_type=JSON)

    # ---- plugins ----------------------------------------------------------------------------

    async def plugin_request(self, req: Request, name: str, segments: list[str]) -> Reply:
        plugin = self.plugins.get(name)
        if plugin is None:
            raise errors.plugin_not_found(name)
        preq = PluginRequest(method=req.method, path=segments, query=req.query, body=req.body)
        if plugin.is_admin_request(preq):
            who = self._admin(req, name, plugin=True)
            try:
                out = await plugin.handle(preq)
            except PluginError as exc:
                raise errors.plugin_internal_error(str(exc)) from exc
            if name == "resource" and req.method in ("POST", "PUT"):
                self.metrics.resource_write("/".join(segments))
            elif name == "resource" and req.method == "DELETE":
                self.metrics.resource_delete("/".join(segments))
            await self._admin_changed(req, who, None)
            return Reply(body=out, content_type="text/xml")
        path = f"{name}/{'/'.join(segments)}"
        try:
            claims, generation, claims_json, token_ref = await self._attested_claims(req)
        except KbsError as exc:
            await self._resource_denied(req, path, None, None, exc.reason or exc.detail)
            raise
        document = self.resource_policy.document(name, segments, req.query)
        try:
            allowed, _, policy_digest = await self.resource_policy.decide(
                claims, document, claims_json
            )
        except (ResourcePolicyError, PolicyEvalError) as exc:
            self.metrics.policy_decision("error")
            await self._resource_denied(req, path, None, token_ref, str(exc))
            raise errors.policy_engine_error(str(exc)) from exc
        if not allowed:
            self.metrics.policy_decision("violation")
            # The same reason path goes to the log line, the audit event and the error body.
            why = await self.resource_policy.explain_deny(claims, document)
            await self._resource_denied(req, path, policy_digest, token_ref, why)
            raise errors.policy_deny(f"{path}: {why}")
        self.metrics.policy_decision("approval")
        if self.auditing:
            await self._emit(
                audit.resource_released(
                    path, policy_digest, token_ref, request_id=req.request_id or None
                )
            )
        if name == "resource":
            self.metrics.resource_read("/".join(segments))
        try:
            out = await plugin.handle(preq)
        except PluginError as exc:
            raise errors.plugin_internal_error(str(exc)) from exc
        if not plugin.encrypted(preq):
            return Reply(body=out, content_type="text/xml")
        try:
            tee_pubkey = self.token_verifier.extract_tee_pubkey(claims)
        except TokenVerifyError as exc:
            raise errors.token_verifier_error(exc.reason) from exc
        if tee_pubkey is None:
            raise errors.token_verifier_error("the token carries no TEE public key")
        try:
            sealed = await seal(out, tee_pubkey, form=_jwe_form(generation, tee_pubkey))
        except JweError as exc:
            raise errors.jwe_error(str(exc)) from exc
        return Reply(body=_compact(sealed), content_type=JSON)

    async def _attested_claims(
        self, req: Request
    ) -> tuple[dict[str, Any], str | None, str | None, str | None]:
        """The verified claims, on the cookie path the session's protocol generation, the
        claims' JSON text when it is at hand, and the token's audit id."""
        token: str | None = None
        generation: str | None = None
        refused: str | None = None
        cookie = req.cookies.get(rcar.SESSION_COOKIE)
        if cookie and isinstance(self.sessions, SealedSessions):
            try:
                sealed = self.sessions.open(cookie)
            except SessionRefused as exc:
                refused = f"session cookie refused: {exc.reason}"
            else:
                if sealed.attested_claims_json is not None:
                    return self._sealed_claims(sealed)
                refused = "the session cookie is not attested yet; call /attest first"
        elif cookie:
            session = await self.sessions.get(cookie)
            if session is not None and session.token is not None:
                token, generation = session.token, session.generation
                if self._own_tokens_trusted and session.attested_claims is not None:
                    # This process signed the token, and an earlier token of the same signer
                    # passed the configured verifier: the claims are known and trusted, only
                    # their lifetime is left to check.
                    self._check_lifetime(session.attested_claims)
                    return (
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
        claims = self._verified_tokens.get(token)
        if claims is not None:
            self._check_lifetime(claims)
            self._verified_tokens.move_to_end(token)
            return claims, generation, None, token_id(token)
        try:
            claims = await self.token_verifier.verify(token)
        except TokenVerifyError as exc:
            raise errors.token_verifier_error(exc.reason) from exc
        self._verified_tokens[token] = claims
        if len(self._verified_tokens) > VERIFIED_TOKEN_CACHE:
            self._verified_tokens.popitem(last=False)
        if generation is not None:
            # A session token is always one this process issued.
            self._own_tokens_trusted = True
        return claims, generation, None, token_id(token)

    def _sealed_claims(
        self, session: rcar.Session
    ) -> tuple[dict[str, Any], str | None, str | None, str | None]:
        # The claims authenticated with our session key: a worker of this server issued them
        # and sealed its token verifier's verdict on its own tokens beside them.
        if session.verifier_refusal is not None:
            raise errors.token_verifier_error(session.verifier_refusal)
        claims_json = session.attested_claims_json
        assert claims_json is not None
        claims = jsonfast.loads_trusted(claims_json)
        if not isinstance(claims, dict):
            raise errors.token_verifier_error("the sealed session's claims are not an object")
        self._check_lifetime(claims)
        return claims, session.generation, claims_json, session.token_ref

    @staticmethod
    def _check_lifetime(claims: Mapping[str, Any]) -> None:
        try:
            check_time_claims(claims, time.time(), LEEWAY_SECONDS)
        except JwsError as exc:
            raise errors.token_verifier_error(str(exc)) from exc


def _jwe_form(generation: str | None, tee_pubkey: Mapping[str, Any]) -> JweForm:
    if generation is not None:
        return form_for_protocol(generation)
    # Bearer (passport) path, no session: only 0.1.x clients export RSA1_5 keys, and they can
    # read nothing but the legacy form.
    if tee_pubkey.get("kty") == "RSA" and tee_pubkey.get("alg") == "RSA1_5":
        return "legacy"
    return "rfc7516"
