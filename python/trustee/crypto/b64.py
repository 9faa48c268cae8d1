"""Base64 helpers with the strictness JOSE and the KBS clients expect.

* ``b64url_encode`` never pads (RFC 7515 §2); the Rust clients decode strictly and reject ``=``.
* ``b64url_decode`` is the tolerant reader: padding optional, but only the URL-safe alphabet.
* ``b64url_decode_nopad`` is the strict reader the real client uses: no padding and canonical
  trailing bits (the unused low bits of the last character must be zero).
* ``b64std_*`` are the standard-alphabet variants (``x5c`` certificates, nonces).

Every decoder raises :class:`Base64Error` (a ``ValueError``) on bad input.
"""

from __future__ import annotations

import base64
import binascii
import re

_URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_STD_ALPHABET = re.compile(r"[A-Za-z0-9+/]*")


class Base64Error(ValueError):
    """The text is not valid base64 of the expected flavour."""


def _split_padding(s: str, what: str) -> tuple[str, int]:
    body = s.rstrip("=")
    pad = len(s) - len(body)
    if pad > 2:
        raise Base64Error(f"{what}: too much '=' padding ({pad} characters)")
    if pad and len(s) % 4:
        raise Base64Error(f"{what}: padded input must be a multiple of 4 characters long")
    if len(body) % 4 == 1:
        raise Base64Error(f"{what}: impossible length {len(body)} (a base64 text never has 4n+1)")
    return body, pad


def _decode(s: str, alphabet: re.Pattern[str], altchars: bytes | None, what: str) -> bytes:
    if not isinstance(s, str):
        raise Base64Error(f"{what}: expected a string, got {type(s).__name__}")
    body, _ = _split_padding(s, what)
    if not alphabet.fullmatch(body):
        bad = next(c for c in body if not alphabet.fullmatch(c))
        raise Base64Error(f"{what}: character {bad!r} is outside the alphabet")
    padded = body + "=" * (-len(body) % 4)
    try:
        return base64.b64decode(padded.encode("ascii"), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - alphabet checked above
        raise Base64Error(f"{what}: {exc}") from exc


def b64url_encode(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    """URL-safe base64, with or without padding; ``+``, ``/`` and whitespace are rejected."""
    return _decode(s, _URL_ALPHABET, b"-_", "base64url")


def b64url_decode_nopad(s: str) -> bytes:
    """Strict URL-safe base64: no padding, canonical encoding (what the Rust clients accept)."""
    if isinstance(s, str) and s.endswith("="):
        raise Base64Error("base64url: padding '=' is not allowed here (use unpadded base64url)")
    data = _decode(s, _URL_ALPHABET, b"-_", "base64url")
    if b64url_encode(data) != s:
        raise Base64Error("base64url: non-canonical encoding (unused trailing bits are not zero)")
    return data


def b64std_encode(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def b64std_decode(s: str) -> bytes:
    """Standard base64, with or without padding; ``-``, ``_`` and whitespace are rejected."""
    return _decode(s, _STD_ALPHABET, None, "base64")
