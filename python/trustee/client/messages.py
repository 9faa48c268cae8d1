"""What `trustee-client` prints when a command fails: one line, the program's name first.

The library's exceptions keep kbs-client's wording (scripts match it). A person at the command
line needs something else: what the KBS said was wrong (the ErrorInformation type's variant and
our server's `reason`, upstream's `detail` when a KBS sends no reason), or why no answer came at
all, in words that point at the option to change.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from trustee.client.errors import (
    AsAnswerError,
    ErrorInformation,
    HttpError,
    KbsAnswerError,
    KbsClientError,
    UnexpectedAnswerError,
)

PROG = "trustee-client"
KBS_PREFIX = "/kbs/v0"

# The name the policy engine gives the text it compiles (`--> policy.rego:4:7`).
ENGINE_SOURCE_NAME = "policy.rego"

# One regorus diagnostic: the location line, the quoted source lines, then `error: <message>`.
_DIAGNOSTIC = re.compile(
    r"-->[ \t]*(?P<name>[^\s:]+):(?P<line>\d+):(?P<col>\d+)[ \t]*\n"
    r"(?:[ \t]*\d*[ \t]*\|[^\n]*\n)*"
    r"[ \t]*error:[ \t]*"
)
_ENGINE_LOCATION = re.compile(re.escape(ENGINE_SOURCE_NAME) + r"(?=:\d+:\d+)")
_SSL_NOISE = re.compile(r"^\[SSL(?:: [A-Z0-9_]+)?\]\s*|\s*\(_ssl\.c:\d+\)$")


@dataclass(frozen=True)
class Context:
    """What the command was given that a message may name."""

    url: str
    policy_file: str | None = None  # the uploaded policy, named in the engine's diagnostics
    service: str = "KBS"  # what the URL should be serving


def error_line(exc: BaseException, context: Context) -> str:
    """The line printed on stderr for `exc`, without the trailing newline."""
    return f"{PROG}: {describe(exc, context)}"


def describe(exc: BaseException, context: Context) -> str:
    cause = innermost(exc)
    if isinstance(cause, AsAnswerError):
        return as_refusal(cause, context)
    if isinstance(cause, KbsAnswerError) and cause.info is not None:
        return refusal(cause.info, context)
    if isinstance(cause, KbsAnswerError | UnexpectedAnswerError):
        return odd_answer(cause.status, cause.body, cause.method, cause.url, context)
    if isinstance(cause, HttpError):
        return no_answer(cause, context)
    return one_line(str(cause))


def innermost(exc: BaseException) -> BaseException:
    """The deepest client error along the cause chain: retry wrappers (RCAR handshake failed
    after N attempts) only repeat what their cause says."""
    found = exc
    seen = exc.__cause__
    while isinstance(seen, KbsClientError):
        found, seen = seen, seen.__cause__
    return found


def refusal(info: ErrorInformation, context: Context) -> str:
    text = one_line(name_policy_file(info.reason or info.detail, context.policy_file))
    line = f"{info.short_type}: {text}"
    if wrong_root(context.url) or (
        info.short_type == "PluginNotFound" and info.detail == "Plugin kbs not found"
    ):
        line += f"; {root_hint(context.url)}"
    return line


def odd_answer(status: int, body: str, method: str, url: str, context: Context) -> str:
    """An error status without ErrorInformation: not a KBS, or a proxy in front of one."""
    request = f"{method} {url}".strip() or "the request"
    if status == 404 or wrong_root(context.url):
        return f"no KBS endpoint at {request} (HTTP {status}); {root_hint(context.url)}"
    text = one_line(body)
    answer = f": {text[:200]}{'…' if len(text) > 200 else ''}" if text else " (empty body)"
    return f"HTTP {status} for {request}{answer}"


_CHAIN_HEAD = "An internal error occured:"
_CAUSE = re.compile(r"^\d+: ", re.MULTILINE)


def as_refusal(exc: AsAnswerError, context: Context) -> str:
    """An Attestation Service's error answer: its chain of causes on one line."""
    request = f"{exc.method} {exc.url}".strip()
    if exc.status == 404:
        return (
            f"no Attestation Service endpoint at {request} (HTTP 404); --url must be the "
            "service's root URL (e.g. http://127.0.0.1:8080)"
        )
    text = exc.body.strip()
    if text.startswith(_CHAIN_HEAD):
        causes = [c.strip() for c in _CAUSE.split(text[len(_CHAIN_HEAD) :]) if c.strip()]
        text = ": ".join(causes)
    text = one_line(text) or "(empty body)"
    return f"the Attestation Service answered HTTP {exc.status} to {request}: {text}"


def wrong_root(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith(KBS_PREFIX)


def root_hint(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    while path.endswith(KBS_PREFIX):
        path = path[: -len(KBS_PREFIX)].rstrip("/")
    root = parts._replace(path=path, query="", fragment="").geturl()
    if root != url.rstrip("/"):
        return f"--url must be the KBS root, without {KBS_PREFIX}: try --url {root}"
    return f"--url must be the KBS root, the URL before {KBS_PREFIX} (e.g. http://127.0.0.1:8080)"


def no_answer(exc: HttpError, context: Context) -> str:
    """Why a request got no HTTP answer, from the network error under httpx's."""
    origin = _origin(exc.url)
    causes = list(_causes(exc.__cause__))
    for cause in causes:
        if isinstance(cause, ssl.SSLError):
            return _tls_failure(cause, origin)
        if isinstance(cause, ConnectionRefusedError):
            return (
                f"cannot connect to {origin}: connection refused (is the {context.service} "
                "running there?)"
            )
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host of {origin}: {cause.strerror or cause}"
    top = causes[0] if causes else exc
    if isinstance(top, httpx.ConnectTimeout):
        return f"cannot connect to {origin}: timed out"
    if isinstance(top, httpx.TimeoutException):
        return f"{origin} did not answer in time ({type(top).__name__})"
    if isinstance(top, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"--url {context.url} is not an http:// or https:// URL: {top}"
    if isinstance(top, httpx.RemoteProtocolError):
        # What a TLS listener does with a cleartext request.
        hint = "; does it serve HTTPS? try https://" if origin.startswith("http://") else ""
        return f"{origin} broke off the exchange: {str(top).rstrip('.')}{hint}"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect to {origin}: {cause.strerror}"
    detail = one_line(next((str(c) for c in causes if str(c)), type(top).__name__))
    if isinstance(top, httpx.ConnectError):
        return f"cannot connect to {origin}: {detail}"
    return f"no answer from {origin}: {detail}"


def _tls_failure(exc: ssl.SSLError, origin: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or _ssl_text(exc)
        if "mismatch" in why.lower():
            return f"the TLS certificate of {origin} is not for that host: {why}"
        return (
            f"the TLS certificate of {origin} is not trusted: {why} "
            "(give the KBS's CA certificate with --cert-file)"
        )
    hint = "; is it plain HTTP? try http://" if exc.reason == "WRONG_VERSION_NUMBER" else ""
    return f"TLS handshake with {origin} failed: {_ssl_text(exc)}{hint}"


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, its causes and contexts, and the members of exception groups among them."""
    seen: set[int] = set()
    stack = [exc] if exc is not None else []
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url


def _ssl_text(exc: ssl.SSLError) -> str:
    text = exc.strerror if isinstance(exc.strerror, str) else str(exc)
    return _SSL_NOISE.sub("", text) or str(exc)


def name_policy_file(text: str, policy_file: str | None) -> str:
    """The engine's diagnostics on one line each (`FILE:LINE:COL: message`), naming the file
    the user uploaded instead of the engine's placeholder."""
    text = _DIAGNOSTIC.sub(r"\g<name>:\g<line>:\g<col>: ", text)
    if policy_file is not None:
        name = policy_file
        text = _ENGINE_LOCATION.sub(lambda _: name, text)
    return text


def one_line(text: str) -> str:
    """Paragraphs joined by "; ", lines by spaces: a message never spans lines."""
    paragraphs = re.split(r"\n[ \t]*\n", text.strip())
    flat = (" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)
    return "; ".join(p for p in flat if p)
