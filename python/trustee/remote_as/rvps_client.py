"""A remote RVPS (`rvps_config.type = "GrpcRemote"`): reference.proto over gRPC, as the
Attestation Service's ReferenceValues.

Policies look reference values up synchronously while Rego runs, and an RVPS answers one id
per query (it cannot list its values). So the snapshot handed to the policy engine holds the
ids the stored attestation policies name literally, `query_reference_value("<id>")` (and the
v0.11 dialect's `data.reference.<id>`), fetched concurrently and kept for SNAPSHOT_TTL_S. An id
a policy computes at run time is not fetched: the lookup finds nothing, as for an unknown id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import trio

from trustee.attestation.rvps import RvpsError
from trustee.grpc_api import reference_pb2, reference_pb2_grpc
from trustee.grpc_api.bridge import unary
from trustee.protocol import limits
from trustee.remote_as.grpc_client import channel_options, target

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:50003"
CALL_TIMEOUT_S = 5.0
SNAPSHOT_TTL_S = 2.0
FETCH_CONCURRENCY = 32
_QUERY = re.compile(r'query_reference_value\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_LEGACY = re.compile(r'data\.reference(?:\.([A-Za-z_]\w*)|\[\s*"((?:[^"\\]|\\.)*)"\s*\])')

PolicySources = Callable[[], Awaitable[Iterable[bytes]]]


def named_ids(text: str) -> set[str]:
    """The reference-value ids a policy names as string literals."""
    ids = {json.loads(f'"{m}"') for m in _QUERY.findall(text)}
    for name, quoted in _LEGACY.findall(text):
        ids.add(name or json.loads(f'"{quoted}"'))
    return ids


def channel_target(address: str) -> tuple[str, bool]:
    """`host:port` and whether TLS is on: `https://` is; `http://`, or none (upstream's RVPS
    client adds http:// then), is not."""
    return target(address if "://" in address else f"http://{address}")


class RemoteReferenceValues:
    def __init__(
        self,
        address: str,
        policy_sources: PolicySources,
        *,
        ttl: float = SNAPSHOT_TTL_S,
        timeout: float = CALL_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._sources = policy_sources
        self._ttl, self._timeout = ttl, timeout
        where, secure = channel_target(address)
        options = channel_options()
        if secure:
            creds = grpc.ssl_channel_credentials()
            self._channel = grpc.secure_channel(where, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(where, options=options)
        self._stub = reference_pb2_grpc.ReferenceValueProviderServiceStub(self._channel)
        self._snapshot: dict[str, str] | None = None
        self._taken_at = 0.0
        self._refresh = trio.Lock()
        self._ids_of: dict[bytes, set[str]] = {}

    def _failure(self, action: str, exc: grpc.RpcError) -> RvpsError:
        code: grpc.StatusCode | None = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return RvpsError(f"RVPS at {self.address} unreachable ({action}): {details}")
        name = code.name if code is not None else "error"
        return RvpsError(f"RVPS at {self.address} ({action}): {name}: {details}")

    async def register(self, message: bytes) -> list[str]:
        try:
            text = message.decode()
        except UnicodeDecodeError as exc:
            raise RvpsError(f"Failed to register reference value: not UTF-8: {exc}") from exc
        request = reference_pb2.ReferenceValueRegisterRequest(message=text)
        try:
            await unary(self._stub.RegisterReferenceValue, request, self._timeout)
        except grpc.RpcError as exc:
            raise self._failure("register", exc) from exc
        self._snapshot = None  # the next evaluation sees what was registered
        return []  # the RVPS does not say which ids the message held

    async def _text(self, rv_id: str) -> str | None:
        request = reference_pb2.ReferenceValueQueryRequest(reference_value_id=rv_id)
        try:
            reply = await unary(self._stub.QueryReferenceValue, request, self._timeout)
        except grpc.RpcError as exc:
            raise self._failure(f"query {rv_id!r}", exc) from exc
        if not reply.HasField("reference_value_results"):
            return None
        return reply.reference_value_results

    def _parsed(self, rv_id: str, text: str) -> Any:
        try:
            return limits.loads(text, f"reference value {rv_id!r}")
        except ValueError as exc:
            raise RvpsError(f"RVPS at {self.address}: value of {rv_id!r} is not JSON") from exc

    async def query(self, rv_id: str) -> Any | None:
        text = await self._text(rv_id)
        return None if text is None else self._parsed(rv_id, text)

    async def _wanted(self) -> set[str]:
        wanted: set[str] = set()
        seen: dict[bytes, set[str]] = {}
        for raw in await self._sources():
            ids = self._ids_of.get(raw)
            if ids is None:
                ids = named_ids(raw.decode(errors="replace"))
            seen[raw] = ids
            wanted |= ids
        self._ids_of = seen  # forget the texts of policies replaced since
        return wanted

    def _fresh(self) -> dict[str, str] | None:
        if self._snapshot is not None and trio.current_time() - self._taken_at < self._ttl:
            return self._snapshot
        return None

    async def snapshot(self) -> dict[str, str]:
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._refresh:  # one refresh at a time; the others wait for its result
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            started = trio.current_time()
            values = await self._fetch(sorted(await self._wanted()))
            self._snapshot, self._taken_at = values, started
            return values

    async def _fetch(self, ids: list[str]) -> dict[str, str]:
        values: dict[str, str] = {}
        failures: list[RvpsError] = []

        limiter = trio.CapacityLimiter(FETCH_CONCURRENCY)

        async def one(rv_id: str) -> None:
            try:
                async with limiter:
                    text = await self._text(rv_id)
                if text is not None:
                    self._parsed(rv_id, text)
                    values[rv_id] = text
            except RvpsError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for rv_id in ids:
                nursery.start_soon(one, rv_id)
        if failures:
            raise failures[0]
        log.debug("reference values from %s: %d of %d ids", self.address, len(values), len(ids))
        return values

    def close(self) -> None:
        self._channel.close()
