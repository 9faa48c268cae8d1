"""What the KBS core takes and gives: a request as plain values, a reply, and the small
helpers every handler shares (compact JSON, digests, the token id audit events carry)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustee import jsonfast
from trustee.protocol import errors
from trustee.protocol.errors import KbsError
from trustee.protocol.headers import HeaderLookup

JSON = "application/json"


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


def compact(value: Any) -> bytes:
    # serde's compact form, as upstream's server writes its JSON bodies.
    return jsonfast.dumps(value)


def error_reply(exc: KbsError) -> Reply:
    return Reply(status=exc.status, body=exc.body(), content_type=JSON)


SESSION_STORE_DOWN = "session store unavailable"


def store_error(path: str, reason: str) -> KbsError:
    # A store's error names its host or files: the guest hears which store failed, the log
    # why. (A resource path's storage errors say which key limit a name broke, for the admin.)
    name = path.partition("/")[0]
    logged = f"{SESSION_STORE_DOWN}: {reason}"
    if name == "auth":
        return errors.auth_failed(SESSION_STORE_DOWN, logged=logged)
    if name == "attest":
        return errors.attest_failed(SESSION_STORE_DOWN, logged=logged)
    return errors.plugin_internal_error(f"storage unavailable: {reason}")


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def token_id(token: str | None) -> str | None:
    # EAR tokens carry no `jti`; the token's SHA-256 names it in audit events instead.
    return None if token is None else digest(token)[:32]


def b64url_text(value: Any, what: str) -> str:
    """A policy as the admin API carries it: base64url (padded or not) of UTF-8 text."""
    if not isinstance(value, str):
        raise ValueError(f"`{what}` is missing or not a string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"`{what}` is not base64url of UTF-8 text: {exc}") from exc
