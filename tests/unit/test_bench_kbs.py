"""The pieces of `trustee bench kbs` that need no server: histograms and their merge across
processes, error classes, the answer checks (token signature, decrypted secret), the load split,
the generator-CPU warning and the command line's refusals."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from trustee.bench import histogram, procs
from trustee.bench.engine import Tally, WorkerSpec, make_guests
from trustee.bench.flows import Checks, FlowFailure, FlowSpec, Guest, TokenChecker, error_class
from trustee.bench.http_conn import Answer, ProtocolError, _parse_head
from trustee.bench.kbs_cli import main
from trustee.bench.kbs_run import GENERATOR_SHARE_WARNING, Monitor, assemble
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.generations import PROTOCOL_0_1_1, PROTOCOL_0_4_0, Generation
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import generate_tee_key, public_jwk
from trustee.crypto.jws import sign_compact
from trustee.protocol import jwe

SECRET = b"the stored secret"


def spec(**changes: Any) -> FlowSpec:
    base = FlowSpec("127.0.0.1", 1, False, None, "0.4.0", {}, "default/bench/secret")
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def guest(generation: Generation = PROTOCOL_0_4_0, **changes: Any) -> Guest:
    key = generation.generate_tee_key()
    return Guest(spec(**changes), generation, AttesterSet(SampleAttester()), key, None)


def sealed_for(g: Guest, secret: bytes) -> bytes:
    return json.dumps(jwe.encrypt(secret, g.pubkey, form=g.generation.jwe_form)).encode()


def test_histograms_merge_across_processes() -> None:
    first, second = histogram.new(), histogram.new()
    for ms in range(1, 101):
        histogram.record(first, ms / 1000)
    histogram.record(second, 2.0)
    merged = histogram.merge([histogram.encode(first), histogram.encode(second), b""])
    summary = histogram.summary(merged)
    assert summary["count"] == 101
    assert summary["p50"] == pytest.approx(51, rel=0.01)
    assert summary["max"] == pytest.approx(2000, rel=0.01)
    cdf = histogram.cdf(merged)
    assert cdf[-1][1] == 1.0 and [p[0] for p in cdf] == sorted(p[0] for p in cdf)
    assert histogram.summary(histogram.new())["count"] == 0


def test_error_class_names_the_error_information_type() -> None:
    deny = (
        b'{"type":"https://github.com/confidential-containers/kbs/errors/PolicyDeny","detail":""}'
    )
    assert error_class(Answer(401, deny, None)) == "http_401/PolicyDeny"
    assert error_class(Answer(502, b"<html>bad gateway</html>", None)) == "http_502/-"
    assert error_class(Answer(500, b'{"type": 3}', None)) == "http_500/-"


def test_token_signature_is_verified_with_the_header_key() -> None:
    key = generate_tee_key()
    header = {"alg": "ES256", "typ": "JWT", "jwk": public_jwk(key)}
    token = sign_compact(header, b'{"exp": 9999999999}', key)
    checker, checks = TokenChecker(), Checks()
    checker.check(token, checks)
    assert checks.tokens_verified == 1
    head, _, signature = token.split(".")
    claims = b64url_encode(b'{"exp": 1}').rstrip("=")
    forged = f"{head}.{claims}.{signature}"
    with pytest.raises(FlowFailure) as caught:
        checker.check(forged, checks)
    assert caught.value.kind == "check" and "signature" in str(caught.value)
    bare = sign_compact({"alg": "ES256"}, b"{}", key)
    checker.check(bare, checks)
    assert (checks.tokens_verified, checks.tokens_unverified) == (1, 1)


@pytest.mark.parametrize("generation", [PROTOCOL_0_4_0, PROTOCOL_0_1_1])
def test_secret_is_decrypted_and_compared(generation: Generation) -> None:
    g = guest(generation, secret=SECRET, decrypt_every=1)
    g.flows = 1
    checks = Checks()
    g.check(None, sealed_for(g, SECRET), TokenChecker(), checks)
    assert checks.secrets_decrypted == 1
    with pytest.raises(FlowFailure) as caught:
        g.check(None, sealed_for(g, b"another secret"), TokenChecker(), checks)
    assert caught.value.secret_mismatch and "differs" in str(caught.value)
    other = guest(generation)
    with pytest.raises(FlowFailure) as caught:
        g.check(None, sealed_for(other, SECRET), TokenChecker(), checks)
    assert caught.value.secret_mismatch and "does not decrypt" in str(caught.value)
    with pytest.raises(FlowFailure) as caught:
        g.check(None, b'{"not": "a jwe"}', TokenChecker(), checks)
    assert caught.value.kind == "protocol"


def test_only_a_sample_of_answers_is_decrypted() -> None:
    g = guest(secret=SECRET, decrypt_every=4)
    checks = Checks()
    for _ in range(8):
        g.flows += 1
        g.check(None, sealed_for(g, SECRET), TokenChecker(), checks)
    assert checks.secrets_decrypted == 2


def test_response_heads_the_client_cannot_read_are_protocol_errors() -> None:
    assert _parse_head([b"HTTP/1.1 200 OK", b"Content-Length: 2"]) == (200, 2, None, False)
    with pytest.raises(ProtocolError, match="Content-Length"):
        _parse_head([b"HTTP/1.1 200 OK"])
    with pytest.raises(ProtocolError, match="chunked"):
        _parse_head([b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"])
    with pytest.raises(ProtocolError, match="status line"):
        _parse_head([b"garbage"])


def test_load_is_split_over_processes_with_arrivals_interleaved() -> None:
    closed = WorkerSpec(spec(), "closed", 5, 0.0, 1.0, 2.0)
    assert [s.clients for s in procs.split(closed, 2)] == [3, 2]
    assert len(procs.split(WorkerSpec(spec(), "closed", 1, 0.0, 1.0, 2.0), 4)) == 1
    shares = procs.split(WorkerSpec(spec(), "open", 0, 20.0, 1.0, 2.0), 2)
    assert [(s.rate, s.start_at) for s in shares] == [(10.0, 0.0), (10.0, 0.05)]


def test_a_closed_loop_has_one_guest_and_connection_per_client() -> None:
    # N clients means N guests running at once, each with its own session and connection.
    guests = make_guests(WorkerSpec(spec(), "closed", 5, 0.0, 1.0, 2.0))
    assert len(guests.idle) == len(guests.made) == 5
    assert len({id(g) for g in guests.idle}) == 5
    # An open loop makes guests as flows need them, and reuses idle ones.
    open_guests = make_guests(WorkerSpec(spec(), "open", 0, 20.0, 1.0, 2.0))
    assert open_guests.idle == []
    first = open_guests.take()
    second = open_guests.take()
    assert first is not second
    open_guests.idle.append(first)
    assert open_guests.take() is first


def test_worker_tallies_merge() -> None:
    a, b = Tally(), Tally()
    a.success(0, 0.010, Checks(tokens_verified=1, secrets_decrypted=1))
    b.success(0, 0.020, Checks(tokens_verified=1))
    b.failure(1, FlowFailure("check", "resource", "the secret differs"))
    b.failure(1, FlowFailure("http_401/PolicyDeny", "resource", "denied"))
    merged = procs.merge([a.export(), b.export()])
    assert merged["ok"] == 2
    assert merged["errors"] == {"check": 1, "http_401/PolicyDeny": 1}
    assert merged["checks"]["tokens_verified"] == 2
    assert merged["checks"]["secret_mismatches"] == 1
    assert merged["seconds"][0][1:] == (2, 0) and merged["seconds"][1][1:] == (0, 2)
    assert merged["hist"].get_total_count() == 2


def test_a_busy_generator_is_warned_about() -> None:
    load = WorkerSpec(spec(), "closed", 1, 0.0, 0.0, 10.0)
    merged = procs.merge([Tally().export()])
    monitor = Monitor(None, start=(0.0, 0.0, 0.0), end=(10.0, 0.5, 0.0))
    assert assemble(merged, monitor, load, {})["warnings"] == []

    busy = (GENERATOR_SHARE_WARNING + 0.1) * (os.cpu_count() or 1) * 10
    monitor = Monitor(None, start=(0.0, 0.0, 0.0), end=(10.0, busy, 0.0))
    data = assemble(merged, monitor, load, {})
    assert data["cpu"]["generator"]["share"] > GENERATOR_SHARE_WARNING
    assert "distorted" in data["warnings"][0]
    assert data["cpu"]["server"] is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--url", "http://127.0.0.1:1", "--cert-file", "ca.pem"], "--cert-file needs an https"),
        (["--url", "ftp://host"], "expected http://HOST:PORT"),
        (["--url", "http://127.0.0.1:1/kbs"], "without a path"),
        (["--url", "http://127.0.0.1:1", "--tee", "tdx"], "--simulated-pki"),
        (["--url", "http://127.0.0.1:1", "--setup", "--secret-file", "s"], "exclude each other"),
        (["--url", "http://127.0.0.1:1", "--clients", "0"], "--clients"),
        (["--url", "https://127.0.0.1:1", "--cert-file", "/nonexistent.pem"], "--cert-file"),
        ([], "required: --url"),
        (["--url", "http://127.0.0.1:1", "--clients", "2", "--rate", "5"], "not allowed with"),
        (["--url", "http://127.0.0.1:1", "--protocol", "9.9"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("trustee bench kbs: ") and says in err, err
