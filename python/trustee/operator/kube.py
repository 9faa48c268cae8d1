"""A minimal async Kubernetes API client for the operator.

kopf has no public general-purpose Kubernetes client (its own is internal, ``kopf._cogs``),
and neither ``kubernetes`` nor ``kubernetes_asyncio`` is a dependency. Instead the operator
(``kopf_operator``) registers one ``@kopf.on.login`` handler that resolves credentials with
kopf's public rudimentary logins (``kopf.login_with_kubeconfig`` when ``KUBECONFIG`` is set, else
``kopf.login_with_service_account`` in a pod, else ``~/.kube/config``). kopf uses the
resulting :class:`kopf.ConnectionInfo` for its watches and patches, and :class:`KubeApi`, a
small aiohttp client (aiohttp: the ``operator`` extra), uses the very same ConnectionInfo
(``as_http_headers()`` and ``as_ssl_context()``) for the few calls the operator makes
itself: GET/LIST, POST, merge-PATCH and DELETE. Only JSON merge patches are used (no PUT, no
strategic merge), which behaves the same on a real API server and on the kmock emulator the
tests use. On HTTP 401 the client resolves the credentials again once (service-account
tokens rotate) and retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

GROUP = "confidentialcontainers.org"
VERSION = "v1alpha1"
PLURAL = "kbsconfigs"
KIND = "KbsConfig"
REQUEST_TIMEOUT = 30.0
USER_AGENT = "trustee-py-operator"

JSON = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer from the Kubernetes API."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    """HTTP 404."""


def object_path(
    api_version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object, e.g. ``/apis/apps/v1/namespaces/ns/...``."""
    parts = ["/api/v1" if api_version == "v1" else f"/apis/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def kbsconfig_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return object_path(f"{GROUP}/{VERSION}", PLURAL, namespace, name, subresource)


_PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
}


def plural_of(api_version: str, kind: str) -> str:
    try:
        return _PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {api_version} {kind}") from None


class KubeApi:
    """Just enough of the Kubernetes REST API for this operator, over aiohttp."""

    def __init__(self, credentials: Callable[[], kopf.ConnectionInfo]) -> None:
        self._credentials = credentials
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stale: list[aiohttp.ClientSession] = []

    def use(self, info: kopf.ConnectionInfo) -> None:
        """Adopt credentials resolved elsewhere (kopf's login); the next request uses them."""
        if info != self._info:
            self._info = info
            self._drop_session()

    def _drop_session(self) -> None:
        # Closed at the next request (or at close()): this method is also called from sync code.
        if self._session is not None:
            self._stale.append(self._session)
            self._session = None

    async def _close_stale(self) -> None:
        while self._stale:
            await self._stale.pop().close()

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        if self._info is None:
            self._info = self._credentials()
        info = self._info
        if self._session is None or self._session.closed:
            connector: aiohttp.TCPConnector | None = None
            if info.server.startswith("https:"):
                connector = aiohttp.TCPConnector(ssl=info.as_ssl_context())
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT, **info.as_http_headers()},
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                trust_env=info.trust_env,
            )
        return self._session, info

    async def close(self) -> None:
        await self._close_stale()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> JSON:
        for attempt in (1, 2):
            await self._close_stale()
            session, info = self._ensure_session()
            url = info.server.rstrip("/") + path
            data = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = content_type
            async with session.request(
                method, url, data=data, headers=headers, proxy=info.proxy_url
            ) as response:
                payload = await response.read()
                if response.status == 401 and attempt == 1:
                    # Tokens rotate: resolve the credentials again and retry once.
                    self._info = None
                    self._drop_session()
                    continue
                if response.status >= 400:
                    raise _api_error(response.status, payload)
                if not payload:
                    return {}
                result = json.loads(payload)
                return result if isinstance(result, dict) else {}
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except NotFoundError:
            return None

    async def list(self, path: str) -> list[JSON]:
        items = (await self.request("GET", path)).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def create(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> JSON:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str) -> bool:
        """Delete; False (not an error) when the object is already gone."""
        try:
            await self.request("DELETE", path)
        except NotFoundError:
            return False
        return True


def _api_error(status: int, payload: bytes) -> ApiError:
    reason, message = "", payload.decode(errors="replace")[:500]
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or "")
        message = str(doc.get("message") or message)
    cls = NotFoundError if status == 404 else ApiError
    return cls(status, reason, message)
