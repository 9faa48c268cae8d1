"""The direct routes answered in front of Quart: the same answers Quart gives, without it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from trustee.assemble import assemble
from trustee.config import load_embedded_default
from trustee.http.app import create_app
from trustee.http.direct_routes import (
    DirectRoutes,
    ScopeHeaders,
    is_direct_route,
    parse_cookies,
)

AUTH = json.dumps({"version": "0.4.0", "tee": "sample", "extra-params": {}}).encode()


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]], qs: bytes = b"") -> Any:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": qs,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "extensions": {},
    }


async def call(
    app: Any,
    sc: Any,
    chunks: list[bytes] | None = None,
    hang: bool = False,
    disconnect: bool = False,
) -> tuple[int | None, dict[str, list[str]], bytes]:
    """Drive one ASGI request; the answer's status, headers (lower-case names) and body.
    `hang`: the body never ends; `disconnect`: the client leaves once its chunks are read
    (otherwise it waits for the answer, as a real connection does)."""
    pending = list(chunks if chunks is not None else [b""])
    sent: list[Any] = []

    async def receive() -> Any:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or hang}
        if disconnect:
            return {"type": "http.disconnect"}
        await trio.sleep_forever()

    async def send(message: Any) -> None:
        sent.append(message)

    await app(sc, receive, send)
    if not sent:
        return None, {}, b""
    headers: dict[str, list[str]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(bytes(name).decode().lower(), []).append(bytes(value).decode())
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], headers, body


class CountingInner:
    """Quart's ASGI callable, with the requests that reach it counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def __call__(self, sc: Any, receive: Any, send: Any) -> None:
        self.calls.append(f"{sc['method']} {sc['path']}")
        await self.inner(sc, receive, send)


# The direct routes under test and the stand-in app behind them (what they passed on).
Routes = tuple[DirectRoutes, CountingInner]


@pytest.fixture
async def routes() -> Routes:
    kbs = await assemble(load_embedded_default())
    app = create_app(kbs)
    guest = app.routes
    counting = CountingInner(await app.framework())

    async def fallback() -> Any:
        return counting

    guest.fallback = fallback
    return guest, counting


def test_which_routes_are_hot() -> None:
    assert is_direct_route("POST", "/kbs/v0/auth")
    assert is_direct_route("POST", "/kbs/v0/attest")
    assert is_direct_route("GET", "/kbs/v0/resource/default/key/one")
    assert is_direct_route("GET", "/healthz")
    assert is_direct_route("GET", "/readyz")
    assert is_direct_route("GET", "/metrics")
    # Admin writes, other methods, other endpoints and unnormalised paths stay with Quart.
    assert not is_direct_route("POST", "/kbs/v0/resource/default/key/one")
    assert not is_direct_route("GET", "/kbs/v0/auth")
    assert not is_direct_route("HEAD", "/kbs/v0/resource/a/b/c")
    assert not is_direct_route("POST", "/kbs/v0/resource-policy")
    assert not is_direct_route("GET", "/kbs/v0/resource//b/c")
    assert not is_direct_route("HEAD", "/metrics")
    assert not is_direct_route("GET", "/kbs/v0/resource-policy")


def test_cookies_as_werkzeug_reads_them() -> None:
    from werkzeug.http import parse_cookie

    for header in (
        "kbs-session-id=abc",
        "a=1; kbs-session-id=AbC-_09; b=2",
        "kbs-session-id=first; kbs-session-id=second",
        'kbs-session-id="quoted"; x="a\\"b"',
        " spaced = value ;; noequals; =nameless; kbs-session-id=x=y",
    ):
        ours = parse_cookies(header)
        theirs = parse_cookie(header)
        assert ours == {k: theirs[k] for k in theirs}, header


def test_headers_are_case_insensitive_first_wins_and_cookies_join() -> None:
    h = ScopeHeaders(
        [
            (b"X-Request-Id", b"one"),
            (b"x-request-id", b"two"),
            (b"Cookie", b"a=1"),
            (b"cookie", b"kbs-session-id=abc"),
        ]
    )
    assert h.get("x-request-id") == "one"
    assert h.get("X-REQUEST-ID") == "one"
    assert h.get("Cookie") == "a=1;kbs-session-id=abc"
    assert "cookie" in h and "authorization" not in h


async def test_auth_answers_as_quart_does_without_reaching_it(routes: Routes) -> None:
    guest, inner = routes
    hdrs = [(b"content-type", b"application/json"), (b"x-request-id", b"req-1")]
    fast = await call(guest, scope("POST", "/kbs/v0/auth", hdrs), [AUTH[:10], AUTH[10:]])
    assert inner.calls == []
    slow = await call(inner, scope("POST", "/kbs/v0/auth", hdrs), [AUTH])
    assert inner.calls == ["POST /kbs/v0/auth"]
    for status, headers, body in (fast, slow):
        assert status == 200
        assert headers["content-type"] == ["application/json"]
        assert headers["x-request-id"] == ["req-1"]
        assert headers["content-length"] == [str(len(body))]
        assert headers["set-cookie"][0].startswith("kbs-session-id=")
        assert set(json.loads(body)) == {"nonce", "extra-params"}
    assert set(fast[1]) == set(slow[1])


async def test_errors_match_quart(routes: Routes) -> None:
    guest, inner = routes
    for method, path, body in (
        ("POST", "/kbs/v0/auth", b"not json"),
        ("POST", "/kbs/v0/attest", b"{}"),
        ("GET", "/kbs/v0/resource/default/key/one", None),
    ):
        hdrs = [(b"x-request-id", b"same")]
        if body is not None:
            hdrs.append((b"content-length", str(len(body)).encode()))
        fast = await call(guest, scope(method, path, hdrs), [body or b""])
        slow = await call(inner, scope(method, path, hdrs), [body or b""])
        assert fast == slow, path
        assert fast[0] == 401 and json.loads(fast[2])["type"].endswith(
            ("AttestationError", "TokenNotFound")
        )
    assert len(inner.calls) == 3  # only the comparison requests


async def test_a_whole_flow_through_the_hot_routes(routes: Routes) -> None:
    guest, inner = routes
    status, headers, body = await call(guest, scope("POST", "/kbs/v0/auth", []), [AUTH])
    assert status == 200
    cookie = headers["set-cookie"][0].split(";", 1)[0]
    # A resource before /attest: refused with the reason, through the cookie just set.
    status, _, body = await call(
        guest,
        scope("GET", "/kbs/v0/resource/default/key/one", [(b"cookie", cookie.encode())]),
    )
    assert status == 401
    assert "not attested yet" in json.loads(body)["reason"]
    assert inner.calls == []


async def test_query_first_value_wins(routes: Routes) -> None:
    guest, _ = routes
    seen: list[dict[str, str]] = []
    handle = guest.kbs.handle

    async def spy(req: Any) -> Any:
        seen.append(dict(req.query))
        return await handle(req)

    guest.kbs.handle = spy  # type: ignore[method-assign]
    await call(guest, scope("GET", "/kbs/v0/resource/a/b/c", [], b"x=1&x=2&y=&z=%41+b"))
    assert seen == [{"x": "1", "y": "", "z": "A b"}]


async def test_body_too_large_closes_the_connection(routes: Routes) -> None:
    guest, inner = routes
    guest.max_body = 16
    declared = scope("POST", "/kbs/v0/auth", [(b"content-length", b"17")])
    status, headers, body = await call(guest, declared, [b"x" * 17])
    assert (status, body) == (413, b"")
    assert headers["connection"] == ["close"]
    # Chunked bodies carry no length up front: refused once the limit is crossed.
    chunked = scope("POST", "/kbs/v0/auth", [(b"transfer-encoding", b"chunked")])
    status, headers, _ = await call(guest, chunked, [b"x" * 10, b"x" * 10])
    assert status == 413 and headers["connection"] == ["close"]
    assert inner.calls == []


async def test_slow_body_gets_408_and_a_gone_client_no_answer(routes: Routes) -> None:
    guest, _ = routes
    guest.body_timeout = 0.05
    sc = scope("POST", "/kbs/v0/attest", [(b"content-length", b"100")])
    status, _, body = await call(guest, sc, [b"{"], hang=True)
    assert (status, body) == (408, b"")
    # receive() reports a disconnect before any body: there is nobody to answer.
    gone = await call(guest, scope("POST", "/kbs/v0/attest", []), [], disconnect=True)
    assert gone == (None, {}, b"")


async def test_unexpected_failure_is_a_500_without_detail(
    routes: Routes, caplog: pytest.LogCaptureFixture
) -> None:
    guest, _ = routes

    async def broken(req: Any) -> Any:
        raise RuntimeError("boom")

    guest.kbs.handle = broken  # type: ignore[method-assign]
    status, _, body = await call(guest, scope("POST", "/kbs/v0/auth", []), [AUTH])
    assert (status, body) == (500, b"")
    assert "internal error while serving POST /kbs/v0/auth" in caplog.text


async def test_the_framework_is_built_only_when_a_request_needs_it() -> None:
    kbs = await assemble(load_embedded_default())
    app = create_app(kbs)
    for method, path, body in (
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("POST", "/kbs/v0/auth", AUTH),
        ("GET", "/kbs/v0/resource/default/key/one", None),
    ):
        status, _, _ = await call(app, scope(method, path, []), [body or b""])
        assert status in (200, 401), path
    assert app._framework is None
    # HEAD, an admin endpoint, an unknown path: Quart answers, built now.
    status, _headers, body = await call(app, scope("HEAD", "/healthz", []))
    assert (status, body) == (200, b"")
    assert app._framework is not None
    status, _, body = await call(app, scope("GET", "/nowhere", []))
    assert (status, body) == (404, b"")
    status, _, _ = await call(app, scope("GET", "/kbs/v0/resource-policy", []))
    assert status == 200  # the development config lets loopback admins in


async def test_probes_answer_directly() -> None:
    kbs = await assemble(load_embedded_default())
    app = create_app(kbs)
    status, headers, body = await call(app, scope("GET", "/readyz", []))
    assert (status, body) == (200, b"")
    status, headers, body = await call(app, scope("GET", "/metrics", []))
    assert status == 200 and headers["content-type"][0].startswith("text/plain")
    assert b"# TYPE" in body


async def test_lifespan_starts_background_work_and_reports_a_failed_start() -> None:
    kbs = await assemble(load_embedded_default())
    app = create_app(kbs)
    to_app, app_inbox = trio.open_memory_channel[Any](4)
    from_app, outbox = trio.open_memory_channel[Any](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, {"type": "lifespan"}, app_inbox.receive, from_app.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await outbox.receive())["type"] == "lifespan.startup.complete"
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await outbox.receive())["type"] == "lifespan.shutdown.complete"

    async def broken_run(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise RuntimeError("the audit sink cannot start")

    failing = create_app(kbs)
    kbs.audit.run = broken_run  # type: ignore[method-assign]
    to_app, app_inbox = trio.open_memory_channel[Any](4)
    from_app, outbox = trio.open_memory_channel[Any](4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(failing, {"type": "lifespan"}, app_inbox.receive, from_app.send)
        await to_app.send({"type": "lifespan.startup"})
        message = await outbox.receive()
    assert message == {"type": "lifespan.startup.failed", "message": "the audit sink cannot start"}


async def test_concurrent_first_requests_build_the_framework_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trustee.http import admin_app

    built: list[int] = []
    real = admin_app.create_admin_app

    def counted(*args: Any) -> Any:
        built.append(1)
        return real(*args)

    monkeypatch.setattr(admin_app, "create_admin_app", counted)
    kbs = await assemble(load_embedded_default())
    app = create_app(kbs)
    answers: list[Any] = []

    async def nowhere() -> None:
        answers.append(await call(app, scope("GET", "/nowhere", [])))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(nowhere)
    assert built == [1]
    assert [a[0] for a in answers] == [404] * 5
