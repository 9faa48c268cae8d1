"""The standalone Attestation Service's REST API (upstream's `restful-as`), sans I/O.

`RestAs.route` says which handler a method and path reach (or the 404/405 to answer before any
body is read); the handler takes the body as bytes and gives an `AsReply`. The statuses and
texts are upstream's: a body its JSON extractor refuses is a 400 (`Content type error`, `Json
deserialize error: …`, a 413 past the size limit); anything that fails once the body has its
shape is a 500 whose text is the chain of what was being done and why, one cause a line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from trustee import jsonfast
from trustee.as_assemble import StandaloneAs
from trustee.as_server.rest_audit import AsTrail
from trustee.attestation import as_wire
from trustee.attestation.policies import PolicyStoreError
from trustee.attestation.service import AttestationFailure
from trustee.audit.dispatcher import AuditRequiredSinkError
from trustee.crypto.b64 import Base64Error, b64url_decode
from trustee.metrics import AttestationOutcome
from trustee.policy.engine import PolicyCompileError
from trustee.protocol import limits
from trustee.protocol.limits import InputLimitError
from trustee.protocol.tees import verifier_name
from trustee.storage.kv import StorageError

log = logging.getLogger("trustee.as")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
# The size bound of upstream's JSON extractor (actix-web's default), which is also the KBS's
# default payload_request_size.
MAX_BODY = 2 * 1024 * 1024
READINESS_TIMEOUT = 2.0
# The TEEs whose evidence this service verifies; none of them asks for a supplemental
# challenge, so /challenge answers them with an empty one, as upstream's verifiers do.
VERIFIED_TEES = frozenset({"sample", "sampledevice", "tdx", "snp", "sgx"})


@dataclass
class AsReply:
    status: int = 200
    body: bytes = b""
    content_type: str | None = TEXT


def internal_error(chain: Sequence[str]) -> AsReply:
    """Upstream's 500: what was being done, then each cause, numbered from 0."""
    causes = "\n".join(f"{i}: {cause}" for i, cause in enumerate(chain))
    return AsReply(500, f"An internal error occured: \n{causes}".encode())


def body_error(why: str) -> AsReply:
    return AsReply(400, f"Json deserialize error: {why}".encode())


CONTENT_TYPE_ERROR = b"Content type error"


def too_large(declared: int | None) -> AsReply:
    if declared is not None:
        text = f"JSON payload ({declared} bytes) is larger than allowed (limit: {MAX_BODY} bytes)."
    else:
        text = f"JSON payload has exceeded limit ({MAX_BODY} bytes)."
    return AsReply(413, text.encode())


def is_json(content_type: str | None) -> bool:
    """`application/json` or any `…+json` type, parameters aside (what upstream accepts)."""
    if not content_type:
        return False
    mime = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = mime.partition("/")
    return bool(kind) and (subtype == "json" or subtype.endswith("+json"))


Handler = Callable[[bytes, str], Awaitable[AsReply]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    reads_json: bool  # a POST whose body must be JSON


class RestAs:
    """The REST front end of one standalone AS (one per worker process)."""

    def __init__(self, standalone: StandaloneAs) -> None:
        self.standalone = standalone
        self.service = standalone.service
        self.metrics = standalone.metrics
        self.audit = standalone.audit
        self._jwks = jsonfast.dumps(self.service.broker.jwks())

    def route(self, method: str, path: str) -> Route | AsReply:
        """The handler for `method path`, or the empty 404/405 upstream answers."""
        post: Handler | None = None
        get: Handler | None = None
        if path == "/attestation":
            post = self.attestation
        elif path == "/policy":
            post, get = self.set_policy, self.list_policies
        elif path.startswith("/policy/") and path.count("/") == 2 and len(path) > 8:
            get = partial(self.get_policy, path[8:])
        elif path == "/challenge":
            post = self.challenge
        elif path in ("/.well-known/jwks.json", "/jwks"):
            get = self.jwks
        elif path == "/healthz":
            get = self.healthz
        elif path == "/readyz":
            get = self.readyz
        elif path == "/metrics":
            get = self.prometheus
        else:
            return AsReply(404, content_type=None)
        if method == "POST" and post is not None:
            return Route(post, reads_json=True)
        if method == "GET" and get is not None:
            return Route(get, reads_json=False)
        return AsReply(405, content_type=None)

    async def call(
        self, route: Route, body: bytes, content_type: str | None, request_id: str
    ) -> AsReply:
        if route.reads_json and not is_json(content_type):
            return AsReply(400, CONTENT_TYPE_ERROR)
        return await route.handler(body, request_id)

    # -- attestation ---------------------------------------------------------------------------

    async def attestation(self, body: bytes, request_id: str) -> AsReply:
        try:
            items, ids = as_wire.from_json(_json(body))
        except (as_wire.AsBodyError, ValueError, InputLimitError) as exc:
            return body_error(_why(exc))
        trail = AsTrail(self.audit, request_id, body)
        tees = [item.tee for item in items]
        tee = tees[0] if tees else ""
        try:
            requests = [_evidence_request(item) for item in items]
            appraised = await self.service.evaluate(requests, as_wire.policy_ids(ids))
        except as_wire.AsRequestError as exc:
            return await self._refused(trail, tee, ids, exc.chain, "error")
        except AttestationFailure as exc:
            chain = ["attestation report evaluate", exc.reason]
            return await self._refused(trail, tee, ids, chain, "failure")
        except InputLimitError as exc:
            chain = ["attestation report evaluate", _why(exc)]
            return await self._refused(trail, tee, ids, chain, "error")
        self.metrics.attestation(tee, "success")
        try:
            await trail.issued(tees, appraised.token, appraised.claims)
        except AuditRequiredSinkError as exc:
            # A decision a required sink could not record is not released.
            log.error("audit: %s", exc)
            return internal_error(["attestation report evaluate", f"audit: {exc}"])
        log.debug("attestation %s: token issued (%s)", request_id, ", ".join(tees))
        return AsReply(body=appraised.token.encode())

    async def _refused(
        self,
        trail: AsTrail,
        tee: str,
        ids: Sequence[str],
        chain: Sequence[str],
        outcome: AttestationOutcome,
    ) -> AsReply:
        self.metrics.attestation(tee, outcome)
        reply = internal_error(chain)
        log.info("attestation %s refused: %s", trail.request_id, ": ".join(chain[1:] or chain))
        await trail.refused(tee, ids[0] if ids else None, ": ".join(chain))
        return reply

    # -- policies ------------------------------------------------------------------------------

    async def set_policy(self, body: bytes, request_id: str) -> AsReply:
        try:
            doc = _json(body)
            policy_id = _field(doc, "policy_id")
            encoded = _field(doc, "policy")
        except (ValueError, InputLimitError) as exc:
            return body_error(_why(exc))
        try:
            text = b64url_decode(encoded).decode()
        except (Base64Error, UnicodeDecodeError) as exc:
            return internal_error(["set policy", f"the policy is not base64url of UTF-8: {exc}"])
        try:
            await self.service.policies.set_policy(policy_id, text)
        except PolicyCompileError as exc:
            return internal_error(["set policy", f"Failed to load policy: {exc}"])
        except (PolicyStoreError, StorageError) as exc:
            return internal_error(["set policy", str(exc)])
        log.info("attestation policy %s set", policy_id)
        await AsTrail(self.audit, request_id, body).policy_changed(policy_id, text)
        return AsReply(content_type=None)

    async def list_policies(self, body: bytes, request_id: str) -> AsReply:
        try:
            ids = await self.service.policies.list_ids()
        except StorageError as exc:
            return internal_error(["get policies", "Cannot List Policy", str(exc)])
        listed = [{"policy-id": i} for i in sorted(ids)]
        return AsReply(body=jsonfast.dumps(listed), content_type=JSON)

    async def get_policy(self, policy_id: str, body: bytes, request_id: str) -> AsReply:
        try:
            text = await self.service.policies.text(policy_id)
        except (PolicyStoreError, StorageError) as exc:
            return internal_error(["get policy", "Cannot Get Policy", str(exc)])
        return AsReply(body=text.encode())

    # -- the rest ------------------------------------------------------------------------------

    async def challenge(self, body: bytes, request_id: str) -> AsReply:
        try:
            doc = _json(body)
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object of strings")
            for key, value in doc.items():
                if not isinstance(value, str):
                    raise ValueError(f"`{key}` must be a string")
        except (ValueError, InputLimitError) as exc:
            return body_error(_why(exc))
        tee = doc.get("tee")
        if tee is None:
            return internal_error(["Failed to get inner tee"])
        if "tee_params" not in doc:
            return internal_error(["Failed to get inner tee_params"])
        if tee not in as_wire.AS_TEES:
            return internal_error([f"tee `{tee}` not supported"])
        if verifier_name(tee) not in VERIFIED_TEES:
            return internal_error(
                ["generate challenge", f"this Attestation Service has no verifier for `{tee}`"]
            )
        return AsReply()

    async def jwks(self, body: bytes, request_id: str) -> AsReply:
        return AsReply(body=self._jwks, content_type=JSON)

    async def healthz(self, body: bytes, request_id: str) -> AsReply:
        return AsReply(content_type=None)

    async def readyz(self, body: bytes, request_id: str) -> AsReply:
        """Ready when every store this service opened answers (within a bound)."""
        try:
            with trio.fail_after(READINESS_TIMEOUT):
                for store in self.standalone.stores.opened():
                    await store.get("as", "readiness-probe")
        except StorageError as exc:
            return _not_ready(str(exc))
        except trio.TooSlowError:
            return _not_ready(f"a store did not answer within {READINESS_TIMEOUT:g} s")
        return AsReply(content_type=None)

    async def prometheus(self, body: bytes, request_id: str) -> AsReply:
        text, content_type = self.metrics.render()
        return AsReply(body=text, content_type=content_type)


def _not_ready(why: str) -> AsReply:
    return AsReply(503, jsonfast.dumps({"ready": False, "reason": why}), JSON)


def _json(body: bytes) -> Any:
    return limits.loads(body, "body")


def _why(exc: Exception) -> str:
    if isinstance(exc, InputLimitError):
        return exc.reason or exc.detail
    return str(exc)


def _field(doc: Any, key: str) -> str:
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    value = doc.get(key)
    if value is None:
        raise ValueError(f"missing field `{key}`")
    if not isinstance(value, str):
        raise ValueError(f"`{key}` must be a string")
    return value


def _evidence_request(item: as_wire.Individual) -> Any:
    try:
        return as_wire.evidence_request(item)
    except InputLimitError as exc:
        raise as_wire.AsRequestError("failed to parse evidence as JSON", _why(exc)) from exc
