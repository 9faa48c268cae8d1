"""What the KBS client raises, and the KBS's error body (ErrorInformation) it reads them from.

Messages follow upstream's `kbs-client`, which prints Rust debug strings: `rust_debug_str`.
Every error a KBS answered also keeps what it answered (`KbsAnswerError`: status and
ErrorInformation, with our server's `reason`), so the command line can say why in its own words.
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
    """No HTTP answer at all; `method`/`url` name the request, the cause is httpx's error."""

    def __init__(self, detail: str, *, method: str = "", url: str = "") -> None:
        super().__init__(f"http request failed: {detail}")
        self.method = method
        self.url = url


class KbsAnswerError(KbsClientError):
    """The KBS answered with an error status; `info` is its body when that is ErrorInformation."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        info: ErrorInformation | None,
        body: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.info = info
        self.body = body
        self.method = method
        self.url = url


class AsAnswerError(KbsAnswerError):
    """A standalone Attestation Service answered with an error status; `body` is its text
    (upstream's numbered chain of causes for a 500)."""


class ResponseDeserializationError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"deserialize http response failed: {detail}")


class UnexpectedAnswerError(ResponseDeserializationError):
    """An error status whose body is not ErrorInformation (a proxy, or not a KBS at all)."""

    def __init__(self, message: str, *, status: int, body: str, method: str, url: str) -> None:
        # The message is the parse failure's, unchanged; the answer is kept beside it.
        KbsClientError.__init__(self, message)
        self.status = status
        self.body = body
        self.method = method
        self.url = url


class TeeKeyError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"get key pair failed: {detail}")


class EvidenceError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"get evidence failed: {detail}")


class RcarHandshakeError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"RCAR handshake failed: {detail}")


class ResourceNotFoundError(KbsAnswerError):
    def __init__(self, info: ErrorInformation) -> None:
        super().__init__(
            f"KBS resource not found: KBS resource Not Found (Error 404): {info}",
            status=404,
            info=info,
        )


class KbsInternalError(KbsAnswerError):
    def __init__(self, status: int, info: ErrorInformation) -> None:
        super().__init__(
            f"KBS internal error: KBS Server Internal Failed, Response: {info}",
            status=status,
            info=info,
        )


class UnauthorizedError(KbsAnswerError):
    """The server kept answering 401; `info` is its last ErrorInformation."""

    def __init__(self, info: ErrorInformation | None = None) -> None:
        # Upstream says only "request unauthorized"; the last detail (PolicyDeny, TokenNotFound,
        # …) is appended because it is what a user needs to fix the setup.
        suffix = f" (last response: {info})" if info is not None else ""
        super().__init__(f"request unauthorized{suffix}", status=401, info=info)


class DecryptResponseError(KbsClientError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"decrypt KBS response body failed: {detail}")


class AdminRequestError(KbsAnswerError):
    """A non-200 answer to an admin call; the message is kbs-client's exact wording."""

    def __init__(self, status: int, body: str, *, method: str = "", url: str = "") -> None:
        super().__init__(
            f"Request Failed, Response: {rust_debug_str(body)}",
            status=status,
            info=ErrorInformation.from_body(body.encode()),
            body=body,
            method=method,
            url=url,
        )


class RcarRefusedError(KbsAnswerError):
    """`/auth` or `/attest` answered with an error status."""


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
    """The RFC 7807-style body of every KBS error; `reason` is our server's extra member."""

    type: str
    detail: str
    reason: str | None = None

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
        reason = doc.get("reason")
        return cls(
            type=doc["type"],
            detail=doc["detail"],
            reason=reason if isinstance(reason, str) and reason else None,
        )

    @classmethod
    def from_body(cls, content: bytes) -> ErrorInformation | None:
        """The body as ErrorInformation, or None when it is not one (admin answers may be
        anything a proxy sends)."""
        try:
            return cls.parse(content)
        except ResponseDeserializationError:
            return None

    @property
    def short_type(self) -> str:
        """The variant name (`PolicyDeny`) of an upstream type URI, else the type as sent."""
        prefix, _, name = self.type.rpartition("/")
        return name if prefix and name else self.type

    def __str__(self) -> str:
        return (
            f"ErrorInformation {{ error_type: {rust_debug_str(self.type)}, "
            f"detail: {rust_debug_str(self.detail)} }}"
        )


def _preview(content: bytes, limit: int = 200) -> str:
    text = content[:limit].decode("utf-8", errors="replace")
    return rust_debug_str(text + ("…" if len(content) > limit else ""))
