"""Session key files: 32 bytes, raw or written as base64 / base64url / hex text.

`session_key` in the config names one file or a list; the first seals new sessions, every one
opens (rotation). Without it the server makes a key at start, shared by its workers and lost at
restart: sessions in flight then fail and their guests attest again.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

KEY_BYTES = 32
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_B64 = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")


def parse_key(data: bytes) -> bytes:
    """The 32 key bytes of a key file's content; ValueError says what the file holds."""
    if len(data) == KEY_BYTES:
        return data
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(
            f"holds {len(data)} bytes: a key is {KEY_BYTES} raw bytes, or their base64 or hex"
        ) from None
    if _HEX.match(text):
        return bytes.fromhex(text)
    if _B64.match(text):
        padded = text.rstrip("=") + "="
        try:
            return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
        except binascii.Error:
            pass
    raise ValueError(
        f"holds {len(data)} bytes that are not a {KEY_BYTES}-byte key (raw, base64 or 64 hex "
        "digits); make one with: head -c 32 /dev/urandom | base64 > FILE"
    )


def read_keys(paths: list[str]) -> list[bytes]:
    """The keys of `paths`, in order; ValueError names the file and the problem."""
    keys: list[bytes] = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read(4096)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            key = parse_key(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if key in keys:
            raise ValueError(f"{path}: repeats the key of {paths[keys.index(key)]}")
        keys.append(key)
    return keys


def generate() -> bytes:
    return os.urandom(KEY_BYTES)
