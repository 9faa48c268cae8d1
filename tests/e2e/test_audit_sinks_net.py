"""The network audit sinks against real receivers: HTTP, syslog over UDP/TCP/unix, redis-server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import trio

from tests.support.receivers import (
    REDIS_CLI,
    REDIS_SERVER,
    HttpReceiver,
    SyslogListener,
    make_redis_tls,
    parse_rfc5424,
    redis_server,
)
from trustee.audit.dispatcher import AuditDispatcher, SinkSpec
from trustee.audit.event import AuditEvent, attestation_failed, new_event, resource_denied
from trustee.audit.registry import sink_factory
from trustee.audit.sink import AuditSink, AuditSinkError, AuditSinkRejected
from trustee.audit.sink_redis import RedisStreamSink
from trustee.audit.sink_syslog import SyslogSink, format_message
from trustee.audit.sink_webhook import WebhookSink
from trustee.config.errors import ConfigError
from trustee.redis.connect import parse_redis_url
from trustee.redis.resp import RespError, RespProtocolError, RespReader, encode_command

pytestmark = pytest.mark.needs_redis

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server/redis-cli not installed (Debian package redis-server); "
    "the Redis Streams sink is tested against a real server only",
)


def events(count: int, prefix: str = "e") -> list[AuditEvent]:
    return [
        new_event(
            "attestation.verified",
            {"n": i, "tee": "tdx", "note": "naïve ✓"},
            subject=f"{prefix}{i}",
            request_id=f"req-{prefix}-{i}",
        )
        for i in range(count)
    ]


async def deliver(sink: AuditSink, batch: Sequence[AuditEvent], attempts: int = 200) -> int:
    """Retries a batch until it is accepted, as the dispatcher does; returns the failures seen."""
    failures = 0
    for _ in range(attempts):
        try:
            await sink.send(batch)
            return failures
        except AuditSinkError:
            failures += 1
            await trio.sleep(0.02)
    raise AssertionError(f"{sink.name} never accepted the batch after {attempts} attempts")


# --------------------------------------------------------------------------- syslog


def test_syslog_message_layout() -> None:
    event = attestation_failed(
        tee="tdx",
        generation=None,
        evidence_digest="sha384:ab",
        verifier="tdx-dcap",
        policy_id="default",
        reason="tdx.quote.signature",
        request_id='r"1]\\x',
    )
    raw = format_message(event, facility=16, hostname="kbs-0", procid="42")
    parsed = parse_rfc5424(raw)
    assert parsed.pri == 16 * 8 + 4  # local0, warning: a failed attestation
    assert parsed.version == 1
    assert parsed.timestamp == event.time
    assert (parsed.hostname, parsed.app_name, parsed.procid) == ("kbs-0", "trustee-py", "42")
    assert parsed.msgid == "attestation.failed"
    assert parsed.structured_data == {"audit@32473": {"id": event.id, "requestid": 'r"1]\\x'}}
    assert parsed.msg.startswith(b"\xef\xbb\xbf")
    assert parsed.cloudevent() == event.cloudevent()
    assert parsed.msg[3:] == rfc8785.dumps(event.cloudevent())


def test_syslog_severity_and_facility() -> None:
    verified = events(1)[0]
    denied = resource_denied(
        path="default/key/1", policy_digest=None, jti=None, reason="policy denied"
    )
    assert parse_rfc5424(format_message(verified, 4, "h", "1")).pri == 4 * 8 + 6
    assert parse_rfc5424(format_message(denied, 23, "h", "1")).pri == 23 * 8 + 4
    assert parse_rfc5424(format_message(denied, 23, "h", "1")).msgid == "resource.denied"


def test_syslog_message_without_request_id_or_hostname() -> None:
    event = AuditEvent("abc", "org.trustee-py.token.issued", "s", "not-a-time", {"jti": "j"})
    parsed = parse_rfc5424(format_message(event, 16, "", "1"))
    assert parsed.timestamp == "-"
    assert parsed.hostname == "-"
    assert parsed.structured_data == {"audit@32473": {"id": "abc"}}


@pytest.mark.parametrize("transport", ["udp", "tcp", "unix"])
async def test_syslog_delivers_over_transport(transport: str, tmp_path: Path) -> None:
    listener = SyslogListener(transport, tmp_path / "log.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        sink = SyslogSink.from_config(
            {"type": "syslog", "address": listener.address, "transport": transport,
             "facility": "local3"},
            "audit.sinks[0]",
        )  # fmt: skip
        sent = [
            *events(3),
            resource_denied(
                path="default/key/1", policy_digest="sha256:00", jti="jti-1", reason="denied"
            ),
        ]
        await sink.send(sent[:2])
        await sink.send(sent[2:])
        got = await listener.wait_for(len(sent))
        await sink.aclose()
        nursery.cancel_scope.cancel()
    assert [m.cloudevent() for m in got] == [e.cloudevent() for e in sent]
    assert [m.pri for m in got] == [19 * 8 + 6] * 3 + [19 * 8 + 4]
    assert [m.msgid for m in got] == ["attestation.verified"] * 3 + ["resource.denied"]
    assert [m.structured_data["audit@32473"]["id"] for m in got] == [e.id for e in sent]
    assert {m.app_name for m in got} == {"trustee-py"}


async def test_syslog_tcp_reconnects_after_listener_restart() -> None:
    listener = SyslogListener("tcp")
    first, second = events(2, "a"), events(2, "b")
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        sink = SyslogSink(listener.address, transport="tcp")
        await sink.send(first)
        await listener.wait_for(2)
        listener.stop()
        await trio.sleep(0.05)
        with pytest.raises(AuditSinkError, match=r"syslog:tcp:127\.0\.0\.1:\d+: delivering"):
            await sink.send(second)
        await nursery.start(listener.run)
        await sink.send(second)
        got = await listener.wait_for(4)
        await sink.aclose()
        nursery.cancel_scope.cancel()
    assert [m.cloudevent()["id"] for m in got] == [e.id for e in first + second]


async def test_syslog_unreachable_unix_socket_is_a_sink_error(tmp_path: Path) -> None:
    sink = SyslogSink(str(tmp_path / "absent.sock"), transport="unix")
    with pytest.raises(AuditSinkError, match=r"absent\.sock"):
        await sink.send(events(1))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"address": "localhost"}, r"audit.sinks\[1\].address: 'localhost' is not host:port"),
        ({"address": "h:99999"}, r"audit.sinks\[1\].address: port '99999'"),
        ({"address": 5}, r"audit.sinks\[1\].address: 5 is not"),
        ({"address": "h:514", "transport": "quic"}, r"audit.sinks\[1\].transport: 'quic'"),
        ({"address": "h:514", "facility": "kern"}, r"audit.sinks\[1\].facility: 'kern'"),
        ({"address": "h:514", "timeout": 0}, r"audit.sinks\[1\].timeout: 0"),
        ({"address": "h:514", "timeout": True}, r"audit.sinks\[1\].timeout: True"),
    ],
)
def test_syslog_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SyslogSink.from_config(table, "audit.sinks[1]")


def test_syslog_config_defaults() -> None:
    sink = SyslogSink.from_config({"address": "/run/syslog.sock"}, "k")
    assert (sink.transport, sink.facility, sink.name) == (
        "unix",
        16,
        "syslog:unix:/run/syslog.sock",
    )
    assert SyslogSink.from_config({}, "k").address == "/dev/log"
    assert SyslogSink.from_config({"address": "[::1]:514", "facility": "auth"}, "k").facility == 4


# --------------------------------------------------------------------------- webhook


async def test_webhook_batches_cloudevents() -> None:
    receiver = HttpReceiver()
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        sink = WebhookSink.from_config(
            {"url": receiver.url, "headers": {"Authorization": "Bearer t0k"}}, "audit.sinks[0]"
        )
        sent = events(5)
        await sink.send(sent[:3])
        await sink.send(sent[3:])
        await sink.aclose()
        receiver.stop()
    assert len(receiver.requests) == 2
    first = receiver.requests[0]
    assert first.method == "POST"
    assert first.target == "/events"
    assert first.headers["content-type"] == "application/cloudevents-batch+json"
    assert first.headers["authorization"] == "Bearer t0k"
    assert first.body == rfc8785.dumps([e.cloudevent() for e in sent[:3]])
    assert receiver.events == [e.cloudevent() for e in sent]


async def test_webhook_structured_mode_posts_one_event_each() -> None:
    receiver = HttpReceiver()
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        sink = WebhookSink.from_config({"url": receiver.url, "batch": False}, "k")
        sent = events(3)
        await sink.send(sent)
        await sink.aclose()
        receiver.stop()
    assert [r.headers["content-type"] for r in receiver.requests] == [
        "application/cloudevents+json; charset=utf-8"
    ] * 3
    assert [json.loads(r.body) for r in receiver.requests] == [e.cloudevent() for e in sent]


async def test_webhook_non_2xx_is_a_sink_error_naming_the_status() -> None:
    receiver = HttpReceiver()
    receiver.fail_next = [503]
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        sink = WebhookSink(receiver.url + "?token=secret")
        batch = events(2)
        with pytest.raises(AuditSinkError, match=r"HTTP 503") as caught:
            await sink.send(batch)
        assert batch[0].id in str(caught.value)
        assert "secret" not in str(caught.value)
        await sink.send(batch)
        await sink.aclose()
        receiver.stop()
    assert receiver.events == [e.cloudevent() for e in batch]


@pytest.mark.parametrize(
    ("status", "refused"), [(400, True), (413, True), (408, False), (429, False), (500, False)]
)
async def test_webhook_4xx_refuses_for_good_but_not_408_or_429(status: int, refused: bool) -> None:
    receiver = HttpReceiver()
    receiver.fail_next = [status, status]
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        batched = WebhookSink(receiver.url, batch=True)
        with pytest.raises(AuditSinkError, match=rf"HTTP {status}") as caught:
            await batched.send(events(3))
        rejected = caught.value
        assert isinstance(rejected, AuditSinkRejected) == refused
        if isinstance(rejected, AuditSinkRejected):
            assert (rejected.delivered, rejected.refused) == (0, 3)
        # One event at a time: the two before the refused one went through.
        single = WebhookSink(receiver.url, batch=False)
        receiver.fail_next = [200, 200, status]
        with pytest.raises(AuditSinkError) as caught:
            await single.send(events(4))
        if refused:
            assert isinstance(caught.value, AuditSinkRejected)
            assert (caught.value.delivered, caught.value.refused) == (2, 1)
        await batched.aclose()
        await single.aclose()
        receiver.stop()


async def test_webhook_survives_receiver_restart_without_losing_events() -> None:
    """At-least-once: every event arrives; a repeat only ever repeats an id already seen."""
    receiver = HttpReceiver()
    sent: list[AuditEvent] = []
    failures = 0
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        sink = WebhookSink(receiver.url, timeout=1)
        for round_ in range(12):
            batch = events(4, prefix=f"r{round_}-")
            sent += batch
            if round_ in (3, 8):
                receiver.stop()
                nursery.start_soon(_restart_later, receiver, nursery)
            if round_ == 5:
                receiver.fail_next = [500, 502]
            failures += await deliver(sink, batch)
        await sink.aclose()
        receiver.stop()
    assert failures >= 4, "the outages and HTTP errors were not observed by the sink"
    got_ids = [e["id"] for e in receiver.events]
    assert set(got_ids) == {e.id for e in sent}
    by_id = {e.id: e.cloudevent() for e in sent}
    assert all(e == by_id[e["id"]] for e in receiver.events)
    # First arrivals keep the emission order.
    assert list(dict.fromkeys(got_ids)) == [e.id for e in sent]


async def test_webhook_through_dispatcher_across_an_outage() -> None:
    receiver = HttpReceiver()
    sent = events(30)
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        sink = sink_factory("webhook", "audit.sinks[0]").from_config(
            {"type": "webhook", "url": receiver.url, "timeout": 1}, "audit.sinks[0]"
        )
        dispatcher = AuditDispatcher([SinkSpec(sink, batch_size=5)])
        await nursery.start(dispatcher.run)
        for i, event in enumerate(sent):
            if i == 10:
                receiver.stop()
                nursery.start_soon(_restart_later, receiver, nursery)
            await dispatcher.emit(event)
            await trio.sleep(0.01)
        await dispatcher.aclose(timeout=10)
        receiver.stop()
    stats = dispatcher.stats()[sink.name]
    assert stats["failed"] >= 1, "the outage was not observed"
    assert (stats["delivered"], stats["dropped"], stats["pending"]) == (30, 0, 0)
    assert list(dict.fromkeys(e["id"] for e in receiver.events)) == [e.id for e in sent]


def test_registry_names_the_network_sinks() -> None:
    assert sink_factory("syslog", "k") is SyslogSink
    assert sink_factory("webhook", "k") is WebhookSink
    assert sink_factory("redis-stream", "k") is RedisStreamSink


async def _restart_later(receiver: HttpReceiver, nursery: trio.Nursery) -> None:
    await trio.sleep(0.15)
    await receiver.start(nursery)


async def test_webhook_connection_refused_is_a_sink_error() -> None:
    receiver = HttpReceiver()
    async with trio.open_nursery() as nursery:
        await receiver.start(nursery)
        receiver.stop()
    sink = WebhookSink(receiver.url)
    with pytest.raises(AuditSinkError, match=r"webhook:http://127\.0\.0\.1:\d+/events: POST"):
        await sink.send(events(1))
    await sink.aclose()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, r"k.url: None is not a string"),
        ({"url": "ftp://x/"}, r"k.url: 'ftp://x/' is not an http\(s\) URL"),
        ({"url": "http://x:port/"}, r"k.url: 'http://x:port/' does not parse"),
        ({"url": "http://x/", "batch": "yes"}, r"k.batch: 'yes' is not a boolean"),
        ({"url": "http://x/", "timeout": -1}, r"k.timeout: -1"),
        ({"url": "http://x/", "headers": ["a"]}, r"k.headers: expected a table"),
        ({"url": "http://x/", "headers": {"a b": "c"}}, r"k.headers: 'a b' is not"),
        ({"url": "http://x/", "headers": {"X": "a\nb"}}, r"k.headers.X: value must"),
        ({"url": "http://x/", "headers": {"Content-Type": "x"}}, r"k.headers.Content-Type: set"),
    ],
)
def test_webhook_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WebhookSink.from_config(table, "k")


def test_webhook_name_hides_credentials_and_query() -> None:
    sink = WebhookSink.from_config({"url": "https://u:pw@audit.example:8443/in?key=s"}, "k")
    assert sink.name == "webhook:https://audit.example:8443/in"
    assert (sink.batch, sink.timeout) == (True, 5.0)


# --------------------------------------------------------------------------- redis


class _Bytes(trio.abc.ReceiveStream):
    """Feeds canned bytes a few at a time, to exercise reply parsing across reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        chunk, self.data = self.data[:3], self.data[3:]
        return chunk

    async def aclose(self) -> None:
        pass


async def test_resp_reader_parses_every_reply_kind() -> None:
    reader = RespReader(
        _Bytes(b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n")
    )
    assert [await reader.read() for _ in range(6)] == [
        b"OK",
        RespError("ERR no"),
        42,
        b"a\r\n",
        None,
        [1, b""],
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"?x\r\n", "unknown type byte"),
        (b"$abc\r\n", "is not an integer"),
        (b"$99999999\r\n", "outside"),
        (b"$2\r\nabcd", "not terminated by CRLF"),
        (b"*1\r\n" * 20, "nests deeper"),
        (b"$5\r\nab", "closed by the server"),
        (b":x\r\n", "malformed"),
    ],
)
async def test_resp_reader_rejects_malformed_replies(data: bytes, message: str) -> None:
    with pytest.raises(RespProtocolError, match=message):
        await RespReader(_Bytes(data)).read()


def test_encode_command_is_resp2_array_of_bulk_strings() -> None:
    assert encode_command("XADD", "s", 5, b"\x00") == (
        b"*4\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n5\r\n$1\r\n\x00\r\n"
    )


def test_redis_url_parsing() -> None:
    target = parse_redis_url("redis://:p%40ss@cache:6380/2", "k.url")
    assert (target.host, target.port, target.db, target.password) == ("cache", 6380, 2, "p@ss")
    assert parse_redis_url("redis://cache", "k.url").port == 6379
    assert parse_redis_url("redis://u:p@cache/", "k.url").username == "u"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, r"k.url: None is not a string"),
        ({"url": "http://h/"}, r"k.url: 'http://h/' is not a redis:// or rediss://"),
        ({"url": "rediss://h/", "ca_file": 3}, r"k.ca_file: 3 is not a path"),
        (
            {"url": "rediss://h/", "ca_file": "/nonexistent.pem"},
            r"k.ca_file: cannot use ca_file /nonexistent.pem: ",
        ),
        ({"url": "redis://:hunter2@h:0/"}, r"k.url: port 0 in 'redis://:\*\*\*@h:0/'"),
        ({"url": "redis://h/x"}, r"k.url: database 'x'"),
        ({"url": "redis://h:0/"}, r"k.url: port 0"),
        ({"url": "redis://h/", "stream": ""}, r"k.stream: '' is not"),
        ({"url": "redis://h/", "maxlen": 0}, r"k.maxlen: 0 is not a positive integer"),
        ({"url": "redis://h/", "maxlen": 1.5}, r"k.maxlen: 1.5"),
        ({"url": "redis://h/", "timeout": "5"}, r"k.timeout: '5'"),
    ],
)
def test_redis_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisStreamSink.from_config(table, "k")


@needs_redis
async def test_redis_stream_receives_events_in_order(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        sink = RedisStreamSink.from_config({"url": server.url(1), "stream": "audit:t"}, "k")
        sent = events(7)
        await sink.send(sent[:4])
        await sink.send(sent[4:])
        await sink.aclose()
        entries = server.xrange("audit:t", db=1)
        assert server.xrange("audit:t", db=0) == []
    assert [fields["id"] for _, fields in entries] == [e.id for e in sent]
    assert [fields["type"] for _, fields in entries] == [e.type for e in sent]
    assert [json.loads(fields["event"]) for _, fields in entries] == [e.cloudevent() for e in sent]
    ids = [entry_id for entry_id, _ in entries]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


@needs_redis
async def test_redis_stream_over_tls(tmp_path: Path) -> None:
    tls = make_redis_tls(tmp_path / "tls")
    with redis_server(tmp_path, password="s3cret", tls=tls) as server:
        url = server.url(2)
        assert url.startswith("rediss://")
        table = {"url": url, "stream": "audit:tls", "ca_file": str(tls.ca)}
        sink = RedisStreamSink.from_config(table, "k")
        assert sink.name.startswith("rediss-stream:127.0.0.1:")
        sent = events(3)
        await sink.send(sent)
        await sink.aclose()
        assert [f["id"] for _, f in server.xrange("audit:tls", db=2)] == [e.id for e in sent]
        # A server whose certificate the trust store does not vouch for gets nothing.
        other_ca = str(make_redis_tls(tmp_path / "other", "other").ca)
        untrusting = RedisStreamSink(url, stream="audit:tls", ca_file=other_ca)
        refused = r"delivering 1 event\(s\) failed: .*TLS handshake .* CERTIFICATE_VERIFY_FAILED"
        with pytest.raises(AuditSinkError, match=refused):
            await untrusting.send(events(1))
        await untrusting.aclose()
        assert len(server.xrange("audit:tls", db=2)) == 3


@needs_redis
async def test_redis_maxlen_trims_the_stream(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        sink = RedisStreamSink(server.url(), maxlen=10)
        sent = events(400)
        for start in range(0, len(sent), 50):
            await sink.send(sent[start : start + 50])
        await sink.aclose()
        length = int(server.cli("XLEN", "trustee:audit")[0])
        entries = server.xrange("trustee:audit")
    # "~" lets Redis trim whole radix-tree nodes only, so a little more than 10 may remain.
    assert 10 <= length < 400
    assert [fields["id"] for _, fields in entries] == [e.id for e in sent[-length:]]


@needs_redis
async def test_redis_password_and_wrong_password(tmp_path: Path) -> None:
    with redis_server(tmp_path, password="s3cret") as server:
        sink = RedisStreamSink(server.url())
        await sink.send(events(2))
        await sink.aclose()
        assert len(server.xrange("trustee:audit")) == 2
        bad = RedisStreamSink(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(AuditSinkError, match=r"AUTH refused: WRONGPASS"):
            await bad.send(events(1))
        anonymous = RedisStreamSink(f"redis://127.0.0.1:{server.port}/0")
        # Redis 7 refuses long commands from unauthenticated clients before checking auth.
        with pytest.raises(AuditSinkError, match=r"XADD of event \w+ refused: .*(NOAUTH|unauth)"):
            await anonymous.send(events(1))
        await anonymous.aclose()


@needs_redis
async def test_redis_error_reply_names_the_event(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        server.cli("SET", "not-a-stream", "x")
        sink = RedisStreamSink(server.url(), stream="not-a-stream")
        batch = events(2)
        with pytest.raises(
            AuditSinkError, match=rf"XADD of event {batch[0].id} refused: WRONGTYPE"
        ):
            await sink.send(batch)
        await sink.aclose()


@needs_redis
async def test_redis_reconnects_across_server_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server:
        sink = RedisStreamSink(server.url(), timeout=2)
        before, during, after = events(3, "a"), events(3, "b"), events(3, "c")
        await sink.send(before)
        server.stop()
        with pytest.raises(AuditSinkError, match=r"redis-stream:127\.0\.0\.1:\d+/0/trustee:audit"):
            await sink.send(during)
        server.start()
        # The data set is gone with the restart (no persistence); what matters is that the
        # sink reconnects by itself and delivers what it was handed after the outage.
        await deliver(sink, during)
        await sink.send(after)
        await sink.aclose()
        entries = server.xrange("trustee:audit")
    assert [fields["id"] for _, fields in entries] == [e.id for e in during + after]


async def test_redis_unreachable_is_a_sink_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = RedisStreamSink(f"redis://127.0.0.1:{port}/0", timeout=2)
    with pytest.raises(AuditSinkError, match=rf"127\.0\.0\.1:{port}.*delivering 1 event"):
        await sink.send(events(1))
