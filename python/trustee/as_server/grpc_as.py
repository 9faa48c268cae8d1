"""The Attestation Service on attestation.proto, and its RVPS on reference.proto, as upstream's
grpc-as serves both on one server.

Handlers run on grpcio's thread pool: a request is decoded there, and only the evaluation (and
the stores) run on the trio loop through the portal. Refusals are Status ABORTED with the
message prefixes upstream's server uses, so its clients (the KBS's coco_as_grpc) read them the
same way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import NoReturn, TypeVar

import grpc
import trio

from trustee import jsonfast
from trustee.as_assemble import StandaloneAs
from trustee.as_server.rest_audit import AsTrail
from trustee.attestation import as_wire
from trustee.attestation.policies import PolicyStoreError
from trustee.attestation.rvps import ReferenceValues, RvpsError
from trustee.attestation.service import AttestationFailure
from trustee.audit.dispatcher import AuditRequiredSinkError, NullDispatcher
from trustee.crypto.b64 import Base64Error, b64url_decode_nopad
from trustee.grpc_api import (
    attestation_pb2,
    attestation_pb2_grpc,
    reference_pb2,
    reference_pb2_grpc,
)
from trustee.grpc_api.bridge import TrioPortal
from trustee.policy.engine import PolicyCompileError
from trustee.protocol import limits
from trustee.protocol.rcar import EvidenceRequest
from trustee.storage.kv import StorageError

log = logging.getLogger("trustee.as")

T = TypeVar("T")

# What upstream's gRPC front end says where our shared parser (as_wire) names the REST step.
_GRPC_STEP = {
    "base64 decode evidence": "Illegal input Evidence",
    "failed to parse evidence as JSON": "failed to parse tee evidence",
    "decode given Runtime Data": "base64 decode runtime data",
    "decode given Init Data": "base64 decode init data",
}
EVALUATION_FAILED = "Attestation evaluation failed: \n0: "


class Refusal(Exception):
    """Answered as `code` with `message`."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.ABORTED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def answer(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    """`call()`'s result, or its refusal as the call's status."""
    try:
        return call()
    except Refusal as exc:
        _abort(context, exc.code, exc.message)
    except trio.RunFinishedError:
        _abort(context, grpc.StatusCode.UNAVAILABLE, "the server is shutting down")


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("grpc's abort returned")  # it raises; this tells the type checker


def _tee(name: str) -> str:
    if name not in as_wire.AS_TEES:
        raise Refusal(f"parse TEE type: Unsupported TEE type: {name}")
    return name


def individual(msg: attestation_pb2.IndividualAttestationRequest) -> as_wire.Individual:
    """One request's fields, in the order upstream's server checks them."""
    _tee(msg.tee)
    runtime: tuple[str, object] | None = None
    if msg.WhichOneof("runtime_data") == "raw_runtime_data":
        runtime = ("raw", msg.raw_runtime_data)
    elif msg.WhichOneof("runtime_data") == "structured_runtime_data":
        try:
            structured = limits.loads(msg.structured_runtime_data, "structured runtime data")
        except ValueError as exc:
            raise Refusal(f"parse structured runtime data: {exc}") from exc
        runtime = ("structured", structured)
    init: tuple[str, str] | None = None
    kind = msg.WhichOneof("init_data")
    if kind is not None:
        init = (kind, getattr(msg, kind))
    return as_wire.Individual(
        tee=msg.tee,
        evidence=msg.evidence,
        runtime_data=runtime,
        init_data=init,
        hash_algorithm=msg.runtime_data_hash_algorithm,
    )


def evidence_requests(request: attestation_pb2.AttestationRequest) -> list[EvidenceRequest]:
    out = []
    for msg in request.verification_requests:
        try:
            out.append(as_wire.evidence_request(individual(msg)))
        except as_wire.AsRequestError as exc:
            step, *why = exc.chain
            raise Refusal(": ".join([_GRPC_STEP.get(step, step), *why])) from exc
        except limits.InputLimitError as exc:
            raise Refusal(f"failed to parse tee evidence: {exc.reason or exc.detail}") from exc
    return out


class AttestationServicer(attestation_pb2_grpc.AttestationServiceServicer):
    def __init__(self, standalone: StandaloneAs, portal: TrioPortal) -> None:
        self.service = standalone.service
        self.metrics = standalone.metrics
        self.audit = standalone.audit
        self.auditing = not isinstance(standalone.audit, NullDispatcher)
        self.portal = portal

    def AttestationEvaluate(
        self, request: attestation_pb2.AttestationRequest, context: grpc.ServicerContext
    ) -> attestation_pb2.AttestationResponse:
        def call() -> attestation_pb2.AttestationResponse:
            requests = evidence_requests(request)
            ids = as_wire.policy_ids(list(request.policy_ids))
            # The events' evidence digest is that of the request as it came (as the KBS's of
            # its /attest body); serialising it again costs only when someone listens.
            raw = request.SerializeToString() if self.auditing else b""
            token = self.portal.run(self._evaluate, requests, ids, raw)
            return attestation_pb2.AttestationResponse(attestation_token=token)

        return answer(context, call)

    async def _evaluate(self, requests: list[EvidenceRequest], ids: list[str], raw: bytes) -> str:
        tees = [r.tee for r in requests]
        tee = tees[0] if tees else ""
        trail = AsTrail(self.audit, uuid.uuid4().hex if self.auditing else "", raw)
        try:
            appraised = await self.service.evaluate(requests, ids)
        except (AttestationFailure, limits.InputLimitError, trio.TooSlowError) as exc:
            reason = _failure_reason(exc, self.portal.time_limit)
            self.metrics.attestation(tee, "failure")
            await trail.refused(tee, ids[0], reason)
            raise Refusal(EVALUATION_FAILED + reason) from exc
        self.metrics.attestation(tee, "success")
        try:
            await trail.issued(tees, appraised.token, appraised.claims)
        except AuditRequiredSinkError as exc:
            # A decision a required sink could not record is not released.
            log.error("audit: %s", exc)
            raise Refusal(f"{EVALUATION_FAILED}audit: {exc}") from exc
        return appraised.token

    def SetAttestationPolicy(
        self, request: attestation_pb2.SetPolicyRequest, context: grpc.ServicerContext
    ) -> attestation_pb2.SetPolicyResponse:
        def call() -> attestation_pb2.SetPolicyResponse:
            try:
                text = b64url_decode_nopad(request.policy).decode()
            except (Base64Error, ValueError) as exc:
                raise Refusal(f"Set Attestation Policy Failed: {exc}") from exc
            self.portal.run(self._set_policy, request.policy_id, text)
            return attestation_pb2.SetPolicyResponse()

        return answer(context, call)

    async def _set_policy(self, policy_id: str, text: str) -> None:
        # As upstream's and the REST front end: any policy that compiles is stored.
        try:
            await self.service.policies.set_policy(policy_id, text)
        except PolicyCompileError as exc:
            raise Refusal(
                f"Set Attestation Policy Failed: policy {policy_id} does not compile: {exc}"
            ) from exc
        except (PolicyStoreError, StorageError) as exc:
            raise Refusal(f"Set Attestation Policy Failed: {exc}") from exc
        log.info("attestation policy %s set", policy_id)
        if self.auditing:
            trail = AsTrail(self.audit, uuid.uuid4().hex, text.encode())
            await trail.policy_changed(policy_id, text)

    def GetAttestationChallenge(
        self, request: attestation_pb2.ChallengeRequest, context: grpc.ServicerContext
    ) -> attestation_pb2.ChallengeResponse:
        def call() -> attestation_pb2.ChallengeResponse:
            inner = request.inner
            if "tee" not in inner:
                raise Refusal("Error parse inner_tee tee")
            if "tee_params" not in inner:
                raise Refusal("Error parse inner_tee tee_params")
            try:
                tee = _tee(inner["tee"])
            except Refusal as exc:
                raise Refusal(f"Error {exc.message}") from exc
            if tee == "se":
                # The one TEE whose verifier makes a challenge; it is not built in here.
                raise Refusal("Challenge: the IBM SE verifier is not available")
            # Every other verifier needs no supplemental challenge: upstream answers "".
            return attestation_pb2.ChallengeResponse(attestation_challenge="")

        return answer(context, call)


def _failure_reason(exc: Exception, time_limit: float) -> str:
    if isinstance(exc, AttestationFailure):
        return exc.reason
    if isinstance(exc, limits.InputLimitError):
        return exc.reason or exc.detail
    return f"the evaluation did not finish within {time_limit:g} s"


class ReferenceValueServicer(reference_pb2_grpc.ReferenceValueProviderServiceServicer):
    """reference.proto on an RVPS (the AS's, or a standalone one); `prefixes` are the
    (query, register) words of the server it stands for."""

    def __init__(
        self, rvps: ReferenceValues, portal: TrioPortal, prefixes: tuple[str, str]
    ) -> None:
        self.rvps = rvps
        self.portal = portal
        self.query_prefix, self.register_prefix = prefixes

    def QueryReferenceValue(
        self, request: reference_pb2.ReferenceValueQueryRequest, context: grpc.ServicerContext
    ) -> reference_pb2.ReferenceValueQueryResponse:
        def call() -> reference_pb2.ReferenceValueQueryResponse:
            value = self.portal.run(self._query, request.reference_value_id)
            if value is None:
                return reference_pb2.ReferenceValueQueryResponse()
            return reference_pb2.ReferenceValueQueryResponse(reference_value_results=value)

        return answer(context, call)

    async def _query(self, rv_id: str) -> str | None:
        try:
            value = await self.rvps.query(rv_id)
        except (RvpsError, StorageError) as exc:
            raise Refusal(f"{self.query_prefix}: {exc}") from exc
        return None if value is None else jsonfast.dumps_str(value)

    def RegisterReferenceValue(
        self, request: reference_pb2.ReferenceValueRegisterRequest, context: grpc.ServicerContext
    ) -> reference_pb2.ReferenceValueRegisterResponse:
        def call() -> reference_pb2.ReferenceValueRegisterResponse:
            self.portal.run(self._register, request.message.encode())
            return reference_pb2.ReferenceValueRegisterResponse()

        return answer(context, call)

    async def _register(self, message: bytes) -> None:
        try:
            await self.rvps.register(message)
        except (RvpsError, StorageError) as exc:
            detail = str(exc).removeprefix("Failed to register reference value: ")
            raise Refusal(f"{self.register_prefix}: {detail}") from exc
