"""`coco_as_grpc`: upstream's gRPC Attestation Service (attestation.proto) and the RVPS it serves
on the same address (reference.proto), over grpcio.

grpcio's channels are not trio's: each call starts with the stub's `.future()` and the trio task
sleeps until grpcio's completion callback (on a grpcio thread) wakes it through the trio token
(trustee.grpc_api.bridge.unary), so the event loop never blocks and no thread waits per call.
Calls spread over up to `pool_size` channels, each opened on first use (upstream's connection
pool). A channel that lost its AS tries to reconnect within a second or so (grpcio's default
backoff grows to minutes), so an AS restarted on the same address serves the next calls.
"""

from __future__ import annotations

import itertools
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2

from trustee import jsonfast
from trustee.attestation.as_wire import individual_json
from trustee.attestation.backend import BackendRefused, BackendUnavailable
from trustee.config.model import RemoteAsConfig
from trustee.crypto.b64 import b64url_encode
from trustee.grpc_api import (
    attestation_pb2,
    attestation_pb2_grpc,
    reference_pb2,
    reference_pb2_grpc,
)
from trustee.grpc_api.bridge import unary
from trustee.protocol import limits
from trustee.protocol.rcar import EvidenceRequest
from trustee.remote_as.common import MAX_ANSWER_BYTES, RemoteAs, quote

Req = TypeVar("Req")
Resp = TypeVar("Resp")

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
RECONNECT_BACKOFF_MS = 250
MAX_RECONNECT_BACKOFF_MS = 1000
# What the AS failing to be there looks like, as opposed to its refusing what it was sent.
_UNAVAILABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def target(address: str) -> tuple[str, bool]:
    """grpcio's `host:port` for upstream's `as_addr` URL, and whether it is TLS."""
    parts = urlsplit(address)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    host = parts.hostname or ""
    return (f"[{host}]" if ":" in host else host) + f":{port}", secure


def channel_options() -> list[tuple[str, Any]]:
    """Bounded answers, and reconnects within a second of a server coming back."""
    return [
        ("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]


def attestation_request(
    requests: list[EvidenceRequest], policy_ids: list[str]
) -> attestation_pb2.AttestationRequest:
    """The REST body's fields as the proto carries them (structured runtime data as JSON
    text); trustee.attestation.as_wire decides every value."""
    message = attestation_pb2.AttestationRequest(policy_ids=list(policy_ids))
    for request in requests:
        doc = individual_json(request)
        item = message.verification_requests.add(
            tee=doc["tee"],
            evidence=doc["evidence"],
            runtime_data_hash_algorithm=doc["runtime_data_hash_algorithm"],
        )
        runtime = doc.get("runtime_data", {})
        if "raw" in runtime:
            item.raw_runtime_data = runtime["raw"]
        elif "structured" in runtime:
            item.structured_runtime_data = jsonfast.dumps_str(runtime["structured"])
        init = doc.get("init_data", {})
        if "init_data_digest" in init:
            item.init_data_digest = init["init_data_digest"]
        elif "init_data_toml" in init:
            item.init_data_toml = init["init_data_toml"]
    return message


class _Channel:
    def __init__(self, address: str, credentials: grpc.ChannelCredentials | None) -> None:
        where, secure = target(address)
        options = channel_options()
        if secure:
            assert credentials is not None
            self.channel = grpc.secure_channel(where, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(where, options=options)
        self.attestation = attestation_pb2_grpc.AttestationServiceStub(self.channel)
        self.rvps = reference_pb2_grpc.ReferenceValueProviderServiceStub(self.channel)


class GrpcAs(RemoteAs):
    def __init__(self, config: RemoteAsConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._credentials: grpc.ChannelCredentials | None = None
        if target(config.address)[1]:
            roots = None
            if config.ca_cert is not None:
                with open(config.ca_cert, "rb") as f:
                    roots = f.read()
            self._credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        self._channels: list[_Channel] = []
        self._turn = itertools.count()

    def _next(self) -> _Channel:
        index = next(self._turn) % self.config.pool_size
        if index >= len(self._channels):
            self._channels.append(_Channel(self.config.address, self._credentials))
            return self._channels[-1]
        return self._channels[index]

    async def _call(
        self, what: str, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req
    ) -> Resp:
        try:
            return await unary(method, request, self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
            name = code.name if code is not None else "error"
            if code in _UNAVAILABLE:
                raise BackendUnavailable(f"{self.where}: {what} failed: {name}: {details}") from exc
            raise BackendRefused(
                f"{self.where}: {what} refused ({name}): {quote(details)}"
            ) from exc

    async def _evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> str:
        channel = self._next()
        message = attestation_request(requests, policy_ids)
        answer = await self._call("attestation", channel.attestation.AttestationEvaluate, message)
        return answer.attestation_token

    async def _set_policy(self, policy_id: str, text: str) -> None:
        # The AS takes the policy base64url-encoded, as the KBS's admin API does.
        message = attestation_pb2.SetPolicyRequest(
            policy_id=policy_id, policy=b64url_encode(text.encode())
        )
        channel = self._next()
        await self._call("set policy", channel.attestation.SetAttestationPolicy, message)

    async def _register(self, message: bytes) -> None:
        try:
            text = message.decode()
        except UnicodeDecodeError as exc:
            raise BackendRefused(f"the message is not UTF-8 text: {exc}") from exc
        request = reference_pb2.ReferenceValueRegisterRequest(message=text)
        channel = self._next()
        await self._call("register reference value", channel.rvps.RegisterReferenceValue, request)

    async def _query(self, rv_id: str) -> Any | None:
        request = reference_pb2.ReferenceValueQueryRequest(reference_value_id=rv_id)
        channel = self._next()
        answer = await self._call(
            "query reference value", channel.rvps.QueryReferenceValue, request
        )
        if not answer.HasField("reference_value_results"):
            return None
        try:
            return limits.loads(answer.reference_value_results, "reference value")
        except ValueError as exc:
            raise BackendRefused(f"{self.where}: the reference value is not JSON: {exc}") from exc

    async def _probe(self) -> None:
        """gRPC's health check: a server that answers at all (upstream's grpc-as has no health
        service: UNIMPLEMENTED) is there; one that says NOT_SERVING is not ready."""
        check = self._next().channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        request = health_pb2.HealthCheckRequest(service="")
        try:
            answer = await self._call("health check", check, request)
        except BackendRefused:
            return
        if answer.status == health_pb2.HealthCheckResponse.NOT_SERVING:
            raise BackendUnavailable(f"{self.where}: health check: NOT_SERVING")

    async def aclose(self) -> None:
        for channel in self._channels:
            channel.channel.close()
        self._channels.clear()
