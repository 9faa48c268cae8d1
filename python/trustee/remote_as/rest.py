"""`coco_as_restful`: upstream's REST Attestation Service API (`POST /attestation`, `POST /policy`,
`GET /.well-known/jwks.json`, `GET /healthz`) over one pooled httpx client on trio.

Upstream's REST AS has no reference value API (its RVPS is a service of its own), so the KBS's
reference-value endpoints answer upstream's RVPS error saying so.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import httpx

from trustee import jsonfast
from trustee.attestation.as_wire import to_json
from trustee.attestation.backend import BackendRefused, BackendUnavailable
from trustee.attestation.rvps import RvpsError
from trustee.config.model import RemoteAsConfig
from trustee.crypto.b64 import b64url_encode
from trustee.protocol.rcar import EvidenceRequest
from trustee.remote_as.common import MAX_ANSWER_BYTES, RemoteAs, quote

# httpx logs every request at INFO: one line per /attest would drown the KBS's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

JWKS_PATH = "/.well-known/jwks.json"
MAX_JWKS_BYTES = 256 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}


def _verify(config: RemoteAsConfig) -> ssl.SSLContext | bool:
    if config.ca_cert is None:
        return True
    return ssl.create_default_context(cafile=config.ca_cert)


class RestAs(RemoteAs):
    def __init__(self, config: RemoteAsConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._http = httpx.AsyncClient(
            base_url=config.address,
            verify=_verify(config),
            # Every call has the overall deadline too (RemoteAs.deadline); these bound each phase.
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(
                max_connections=config.pool_size, max_keepalive_connections=config.pool_size
            ),
        )

    @property
    def jwks_url(self) -> str:
        return self.config.address + JWKS_PATH

    async def _request(
        self, method: str, path: str, what: str, body: bytes | None = None, limit: int = 0
    ) -> bytes:
        """The body of a 200 answer; BackendRefused with the AS's words for any other status,
        BackendUnavailable when it cannot be reached."""
        limit = limit or MAX_ANSWER_BYTES
        headers = JSON_HEADERS if body is not None else None
        try:
            async with self._http.stream(method, path, content=body, headers=headers) as answer:
                data = bytearray()
                async for chunk in answer.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise BackendRefused(
                            f"{self.where}: {what}: the answer exceeds {limit} bytes"
                        )
                status = answer.status_code
        except httpx.TransportError as exc:
            detail = str(exc) or type(exc).__name__
            raise BackendUnavailable(f"{self.where}: {what} failed: {detail}") from exc
        if status != 200:
            text = quote(bytes(data).decode("utf-8", "replace"))
            raise BackendRefused(f"{self.where}: {what} refused ({status}): {text}")
        return bytes(data)

    async def _evaluate(self, requests: list[EvidenceRequest], policy_ids: list[str]) -> str:
        body = jsonfast.dumps(to_json(requests, policy_ids))
        answer = await self._request("POST", "/attestation", "attestation", body)
        try:
            return answer.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise BackendRefused(f"{self.where}: the token is not ASCII text") from exc

    async def _set_policy(self, policy_id: str, text: str) -> None:
        # The AS takes the policy base64url-encoded, as the KBS's admin API does.
        body = jsonfast.dumps({"policy_id": policy_id, "policy": b64url_encode(text.encode())})
        await self._request("POST", "/policy", "set policy", body)

    def _no_rvps(self) -> RvpsError:
        return RvpsError(
            f"the REST {self.where} has no reference value API; register reference values "
            "with its RVPS, or use coco_as_grpc, whose AS serves the RVPS API too"
        )

    async def _register(self, message: bytes) -> None:
        raise self._no_rvps()

    async def _query(self, rv_id: str) -> Any | None:
        raise self._no_rvps()

    async def fetch_jwks(self) -> bytes:
        """The AS's token signing keys (for the token verifier), within the timeout."""
        return await self.deadline(
            "fetch signing keys",
            lambda: self._request("GET", JWKS_PATH, "fetch signing keys", limit=MAX_JWKS_BYTES),
        )

    async def _probe(self) -> None:
        try:
            await self._request("GET", "/healthz", "health check", limit=4096)
        except BackendRefused as exc:
            raise BackendUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
