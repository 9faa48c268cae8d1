"""Audit sink that POSTs CloudEvents over the HTTP binding, batched or one event per request."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSinkError, AuditSinkRejected

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# 4xx answers that mean "not now" rather than "never": timeout, too early, rate limited.
_RETRYABLE_4XX = frozenset({408, 425, 429})
DEFAULT_TIMEOUT = 5.0
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The sink owns the framing of the body; letting configuration override these would
# produce requests a CloudEvents receiver cannot parse.
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "host"})


def _public_url(url: str) -> str:
    """The URL without credentials or query, which may carry secrets, for names and errors."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class WebhookSink:
    def __init__(
        self,
        url: str,
        *,
        batch: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.batch = batch
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.name = f"webhook:{_public_url(url)}"
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> WebhookSink:
        url = table.get("url")
        if not isinstance(url, str):
            raise ValueError(f"{key}.url: {url!r} is not a string")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{key}.url: {url!r} does not parse: {exc}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{key}.url: {url!r} is not an http(s) URL with a host")
        if port == 0:
            raise ValueError(f"{key}.url: port 0 in {url!r} is not a port to send to")
        batch = table.get("batch", True)
        if not isinstance(batch, bool):
            raise ValueError(f"{key}.batch: {batch!r} is not a boolean")
        timeout = table.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"{key}.timeout: {timeout!r} is not a positive number of seconds")
        headers = table.get("headers", {})
        if not isinstance(headers, Mapping):
            raise ValueError(f"{key}.headers: expected a table of strings, got {type(headers)}")
        for name, value in headers.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ValueError(f"{key}.headers: {name!r} is not an HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{key}.headers.{name}: set by the sink, not configurable")
            if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
                raise ValueError(
                    f"{key}.headers.{name}: value must be a string without CR, LF or NUL"
                )
        return cls(url, batch=batch, timeout=float(timeout), headers=headers)

    def _http(self) -> httpx.AsyncClient:
        # Kept open across batches so deliveries reuse the connection pool.
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, headers=self.headers, follow_redirects=False
            )
        return self._client

    async def _post(
        self, body: bytes, content_type: str, what: str, delivered: int, count: int
    ) -> None:
        try:
            response = await self._http().post(
                self.url, content=body, headers={"Content-Type": content_type}
            )
        except httpx.HTTPError as exc:
            raise AuditSinkError(f"{self.name}: POST of {what} failed: {exc!r}") from exc
        if 200 <= response.status_code < 300:
            return
        message = (
            f"{self.name}: POST of {what} answered HTTP {response.status_code} "
            f"{response.reason_phrase}: {response.text[:200]!r}"
        )
        if 400 <= response.status_code < 500 and response.status_code not in _RETRYABLE_4XX:
            # The receiver judged the request itself; the same bytes will be judged the same.
            raise AuditSinkRejected(message, delivered=delivered, refused=count)
        raise AuditSinkError(message)

    async def send(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        try:
            bodies = [e.canonical_cloudevent for e in events]
            # JCS of an array is its canonical members joined by commas inside brackets.
            payload = [b"[" + b",".join(bodies) + b"]"] if self.batch else bodies
        except Exception as exc:
            raise AuditSinkError(f"{self.name}: an event is not JSON-serialisable: {exc}") from exc
        if self.batch:
            await self._post(
                payload[0],
                BATCH_CONTENT_TYPE,
                f"a batch of {len(events)} events (first id {events[0].id})",
                0,
                len(events),
            )
            return
        for index, (event, body) in enumerate(zip(events, payload, strict=True)):
            await self._post(body, STRUCTURED_CONTENT_TYPE, f"event {event.id}", index, 1)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
