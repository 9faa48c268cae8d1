"""What the KBS client raises, and the KBS's error body (ErrorInformation) it reads them from.

Messages follow upstream's `kbs-client`, which prints Rust debug strings: `rust_debug_str`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class KbsClientError(Exception):
    """Any failure of the client; `str()` is a one-line message close to kbs-client's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HttpError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"http request failed: {detail}")


class ResponseDeserializationError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"deserialize http response failed: {detail}")


class TeeKeyError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"get key pair failed: {detail}")


class EvidenceError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"get evidence failed: {detail}")


class RcarHandshakeError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"RCAR handshake failed: {detail}")


class ResourceNotFoundError(KbsClientError):
    def __init__(self, info: ErrorInformation) -> None:
        super().__init__(f"KBS resource not found: KBS resource Not Found (Error 404): {info}")
        self.info = info


class KbsInternalError(KbsClientError):
    def __init__(self, status: int, info: ErrorInformation) -> None:
        super().__init__(f"KBS internal error: KBS Server Internal Failed, Response: {info}")
        self.status = status
        self.info = info


class UnauthorizedError(KbsClientError):
    """The server kept answering 401; `info` is its last ErrorInformation."""

    def __init__(self, info: ErrorInformation | None = None) -> None:
        # Upstream says only "request unauthorized"; the last detail (PolicyDeny, TokenNotFound,
        # …) is appended because it is what a user needs to fix the setup.
        suffix = f" (last response: {info})" if info is not None else ""
        super().__init__(f"request unauthorized{suffix}")
        self.info = info


class DecryptResponseError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"decrypt KBS response body failed: {detail}")


class AdminRequestError(KbsClientError):
    """A non-200 answer to an admin call; the message is kbs-client's exact wording."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Request Failed, Response: {rust_debug_str(body)}")
        self.status = status
        self.body = body


def rust_debug_str(text: str) -> str:
    """`text` quoted the way Rust's `{:?}` prints a string (kbs-client prints bodies so)."""
    out = ['"']
    for ch in text:
        if ch in _RUST_ESCAPES:
            out.append(_RUST_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    out.append('"')
    return "".join(out)


_RUST_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


@dataclass(frozen=True)
class ErrorInformation:
    """The RFC 7807-style body of every KBS error."""

    type: str
    detail: str

    @classmethod
    def parse(cls, content: bytes) -> ErrorInformation:
        """Strict like upstream's client: a 401/404 body that is not this JSON is a failure."""
        try:
            doc = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ResponseDeserializationError(
                f"expected ErrorInformation JSON, got {_preview(content)}: {exc}"
            ) from exc
        if not isinstance(doc, dict):
            raise ResponseDeserializationError(
                f"expected an ErrorInformation object, got {_preview(content)}"
            )
        for name in ("type", "detail"):
            if not isinstance(doc.get(name), str):
                raise ResponseDeserializationError(
                    f"ErrorInformation needs a string field `{name}`: {_preview(content)}"
                )
        return cls(type=doc["type"], detail=doc["detail"])

    def __str__(self) -> str:
        return (
            f"ErrorInformation {{ error_type: {rust_debug_str(self.type)}, "
            f"detail: {rust_debug_str(self.detail)} }}"
        )


def _preview(content: bytes, limit: int = 200) -> str:
    text = content[:limit].decode("utf-8", errors="replace")
    return rust_debug_str(text + ("…" if len(content) > limit else ""))
