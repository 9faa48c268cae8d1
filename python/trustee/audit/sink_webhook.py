"""Audit sink that POSTs CloudEvents over the HTTP binding, batched or one event per request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from trustee.audit.event import AuditEvent
from trustee.audit.settings import DEFAULT_TIMEOUT, WebhookSinkOptions, webhook_options
from trustee.audit.sink import AuditSinkError, AuditSinkRejected
from trustee.config.reader import Table

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# 4xx answers that mean "not now" rather than "never": timeout, too early, rate limited.
_RETRYABLE_4XX = frozenset({408, 425, 429})


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
    def from_options(cls, options: WebhookSinkOptions) -> WebhookSink:
        return cls(
            options.url,
            batch=options.batch,
            timeout=options.timeout,
            headers=dict(options.headers),
        )

    @classmethod
    def from_config(cls, table: Mapping[str, Any], key: str) -> WebhookSink:
        return cls.from_options(webhook_options(Table(dict(table), key)))

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
