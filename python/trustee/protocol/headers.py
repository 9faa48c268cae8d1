"""Request headers as the core sees them, and the `Authorization: Bearer` token in them."""

from __future__ import annotations

from typing import Protocol


class HeaderLookup(Protocol):
    """Request headers; `get` is case-insensitive (or the names are stored lower-case)."""

    def get(self, key: str, /) -> str | None: ...


def bearer_token(headers: HeaderLookup) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when there is none."""
    value = headers.get("Authorization") or headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
