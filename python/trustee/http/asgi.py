"""Plain ASGI helpers shared by the servers' direct routes: the types, request ids, header
lookup, a bounded body read and a one-message answer. No framework, no KBS."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Quart's own ASGI callable, typed with hypercorn's scope and event unions.
App = Callable[..., Awaitable[None]]

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is kept when it is short and harmless in logs; otherwise we make one.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_for(offered: str | None) -> str:
    """The caller's `X-Request-Id` when it is safe to log, else a fresh one."""
    if offered is None or not REQUEST_ID_RE.match(offered):
        return os.urandom(16).hex()
    return offered


class ScopeHeaders:
    """An ASGI scope's request headers, looked up case-insensitively; the first of a repeated
    name wins, as with Werkzeug's `Headers.get`."""

    __slots__ = ("_values",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        values: dict[str, str] = {}
        for raw_name, raw_value in raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "cookie" and name in values:
                # Several Cookie headers read as one, as Werkzeug's `Request.cookies` does.
                values[name] += ";" + value
            else:
                values.setdefault(name, value)
        self._values = values

    def get(self, key: str, /) -> str | None:
        return self._values.get(key.lower())

    def __contains__(self, key: str) -> bool:
        return key.lower() in self._values


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class BodyRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def read_request_body(
    receive: Receive, declared: str | None, limit: int, timeout: float
) -> bytes:
    """The whole request body, at most `limit` bytes, within `timeout` seconds: 413 and 408
    otherwise, as Quart answers them."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413)
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    raise BodyRefused(408)


async def send_answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
