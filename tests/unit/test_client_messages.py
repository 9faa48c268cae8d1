"""What `trustee-client` prints for a failure: the formatting, exception by exception, and the
help it gives; the same lines against a real server are in tests/e2e/test_client_messages.py."""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import socket
import ssl

import httpx
import pytest

from trustee.cli import kbs_main
from trustee.client import cli
from trustee.client.attesters import (
    SAMPLE_DEVICE_ENV,
    SIMULATED_MEASUREMENT_ENV,
    SIMULATED_PKI_ENV,
    SIMULATED_SNP_CA_ENV,
    SIMULATED_TEE_ENV,
)
from trustee.client.errors import (
    AdminRequestError,
    ErrorInformation,
    HttpError,
    RcarHandshakeError,
    UnauthorizedError,
    UnexpectedAnswerError,
)
from trustee.client.messages import Context, describe, error_line, name_policy_file, one_line
from trustee.client.parser import build_parser

ERR = "https://github.com/confidential-containers/kbs/errors/"
URL = "http://127.0.0.1:8080"

# What the policy engine answers for a v0-style rule body it cannot read either way.
ENGINE_DIAGNOSTIC = (
    "resource policy does not compile: --> policy.rego:4:7\n  |\n4 | allow {\n  |       ^\n"
    "error: `if` keyword is required before rule body\n\nas Rego v0:\n--> policy.rego:4:7\n"
    "  |\n4 | allow {\n  |       ^\nerror: expecting }"
)


def info(variant: str, detail: str, reason: str | None = None) -> ErrorInformation:
    return ErrorInformation(type=ERR + variant, detail=detail, reason=reason)


# ------------------------------------------------------------------------------------------
# the KBS's refusals


def test_the_reason_is_printed_with_the_variant() -> None:
    refused = UnauthorizedError(info("PolicyDeny", "Access denied by policy", "resource/a/b/c: x"))
    assert error_line(refused, Context(URL)) == "trustee-client: PolicyDeny: resource/a/b/c: x"


def test_without_a_reason_the_detail_is_printed() -> None:
    refused = UnauthorizedError(info("PolicyDeny", "Access denied by policy"))
    assert describe(refused, Context(URL)) == "PolicyDeny: Access denied by policy"


def test_a_type_outside_upstreams_namespace_is_printed_whole() -> None:
    refused = UnauthorizedError(ErrorInformation(type="about:blank", detail="no"))
    assert describe(refused, Context(URL)) == "about:blank: no"


def test_retry_wrappers_give_way_to_their_cause() -> None:
    inner = UnauthorizedError(info("AttestationError", "RCAR handshake Attest failed", "why"))
    try:
        try:
            raise inner
        except UnauthorizedError as exc:
            raise RcarHandshakeError("Unable to get token. retried 5 times") from exc
    except RcarHandshakeError as outer:
        assert describe(outer, Context(URL)) == "AttestationError: why"


def test_admin_answers_are_read_as_error_information() -> None:
    body = info("RvpsError", "RVPS configuration failed: x", "no reference value svn")
    text = f'{{"type":"{body.type}","detail":"{body.detail}","reason":"{body.reason}"}}'
    refused = AdminRequestError(401, text, method="GET", url=f"{URL}/kbs/v0/reference-value/svn")
    assert describe(refused, Context(URL)) == "RvpsError: no reference value svn"


def test_policy_diagnostics_are_one_line_naming_the_uploaded_file() -> None:
    assert name_policy_file(ENGINE_DIAGNOSTIC, "my-policy.rego") == (
        "resource policy does not compile: my-policy.rego:4:7: `if` keyword is required "
        "before rule body\n\nas Rego v0:\nmy-policy.rego:4:7: expecting }"
    )
    refused = AdminRequestError(
        401,
        f'{{"type":"{ERR}PolicyEngineError","detail":"d","reason":{json.dumps(ENGINE_DIAGNOSTIC)}}}',
    )
    assert describe(refused, Context(URL, policy_file="/tmp/p.rego")) == (
        "PolicyEngineError: resource policy does not compile: /tmp/p.rego:4:7: `if` keyword is "
        "required before rule body; as Rego v0: /tmp/p.rego:4:7: expecting }"
    )


def test_engine_locations_outside_a_diagnostic_are_renamed_too() -> None:
    nested = "policy x does not compile: policy.rego:2:15: nests more than 10 levels"
    assert name_policy_file(nested, "deep.rego") == (
        "policy x does not compile: deep.rego:2:15: nests more than 10 levels"
    )
    # Only a location is renamed, never the words "policy.rego" elsewhere.
    assert name_policy_file("claim policy.rego is absent", "x.rego") == (
        "claim policy.rego is absent"
    )


def test_without_an_uploaded_file_the_engines_name_stays() -> None:
    assert name_policy_file(ENGINE_DIAGNOSTIC, None).startswith(
        "resource policy does not compile: policy.rego:4:7: `if` keyword"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a\nb", "a b"),
        ("a\n\n  b\n", "a; b"),
        ("  x  ", "x"),
        ("first\n\n\nsecond\nthird", "first; second third"),
    ],
)
def test_one_line(text: str, line: str) -> None:
    assert one_line(text) == line


# ------------------------------------------------------------------------------------------
# --url


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http://h:1/kbs/v0", "without /kbs/v0: try --url http://h:1"),
        ("http://h:1/kbs/v0/", "without /kbs/v0: try --url http://h:1"),
        ("https://h/front/kbs/v0", "without /kbs/v0: try --url https://h/front"),
    ],
)
def test_a_url_with_the_api_prefix_is_explained(url: str, hint: str) -> None:
    refused = AdminRequestError(
        404, f'{{"type":"{ERR}PluginNotFound","detail":"Plugin kbs not found"}}'
    )
    assert describe(refused, Context(url)) == (
        f"PluginNotFound: Plugin kbs not found; --url must be the KBS root, {hint}"
    )


def test_a_404_without_error_information_points_at_the_url() -> None:
    odd = UnexpectedAnswerError(
        "parse failed", status=404, body="", method="POST", url="http://h/x/kbs/v0/auth"
    )
    assert describe(odd, Context("http://h/x")) == (
        "no KBS endpoint at POST http://h/x/kbs/v0/auth (HTTP 404); --url must be the KBS root, "
        "the URL before /kbs/v0 (e.g. http://127.0.0.1:8080)"
    )


def test_other_answers_without_error_information_are_quoted() -> None:
    proxy = AdminRequestError(502, "Bad\ngateway", method="DELETE", url=f"{URL}/kbs/v0/r")
    assert describe(proxy, Context(URL)) == f"HTTP 502 for DELETE {URL}/kbs/v0/r: Bad gateway"
    empty = AdminRequestError(503, "", method="GET", url=f"{URL}/kbs/v0/r")
    assert describe(empty, Context(URL)) == f"HTTP 503 for GET {URL}/kbs/v0/r (empty body)"
    long = AdminRequestError(500, "x" * 300, method="GET", url="u")
    assert describe(long, Context(URL)) == "HTTP 500 for GET u: " + "x" * 200 + "…"


# ------------------------------------------------------------------------------------------
# no answer at all


def no_answer(*chain: BaseException, url: str = "https://kbs:8443/kbs/v0/auth") -> HttpError:
    """An HttpError over `chain` (outermost first), linked as httpx links them."""
    for outer, inner in itertools.pairwise(chain):
        outer.__cause__ = inner
    error = HttpError("POST …", method="POST", url=url)
    error.__cause__ = chain[0]
    return error


def ssl_error(reason: str, text: str) -> ssl.SSLError:
    error = ssl.SSLError(1, text)
    error.reason = reason
    return error


def cert_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_message = message
    return error


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            no_answer(
                httpx.ConnectError("all attempts failed"),
                ExceptionGroup("all attempts", [ConnectionRefusedError(errno.ECONNREFUSED, "x")]),
                url="http://kbs:8080/kbs/v0/auth",
            ),
            "cannot connect to http://kbs:8080: connection refused (is the KBS running there?)",
        ),
        (
            no_answer(httpx.ConnectError(""), cert_error("self-signed certificate")),
            "the TLS certificate of https://kbs:8443 is not trusted: self-signed certificate "
            "(give the KBS's CA certificate with --cert-file)",
        ),
        (
            no_answer(
                httpx.ConnectError(""),
                cert_error("Hostname mismatch, certificate is not valid for 'kbs'."),
            ),
            "the TLS certificate of https://kbs:8443 is not for that host: Hostname mismatch, "
            "certificate is not valid for 'kbs'.",
        ),
        (
            no_answer(
                httpx.ConnectError(""),
                ssl_error(
                    "WRONG_VERSION_NUMBER",
                    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
                ),
            ),
            "TLS handshake with https://kbs:8443 failed: wrong version number; is it plain "
            "HTTP? try http://",
        ),
        (
            no_answer(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
            "cannot resolve the host of https://kbs:8443: Name or service not known",
        ),
        (no_answer(httpx.ConnectTimeout("")), "cannot connect to https://kbs:8443: timed out"),
        (
            no_answer(httpx.ReadTimeout("")),
            "https://kbs:8443 did not answer in time (ReadTimeout)",
        ),
        (
            no_answer(
                httpx.RemoteProtocolError("Server disconnected without sending a response."),
                url="http://kbs:8443/kbs/v0/auth",
            ),
            "http://kbs:8443 broke off the exchange: Server disconnected without sending a "
            "response; does it serve HTTPS? try https://",
        ),
        (
            no_answer(httpx.ConnectError("All connection attempts failed")),
            "cannot connect to https://kbs:8443: All connection attempts failed",
        ),
        (
            no_answer(httpx.ConnectError("x"), OSError(errno.ENETUNREACH, "Network unreachable")),
            "cannot connect to https://kbs:8443: Network unreachable",
        ),
        (
            no_answer(httpx.WriteError("pipe broke")),
            "no answer from https://kbs:8443: pipe broke",
        ),
    ],
)
def test_network_failures(error: HttpError, line: str) -> None:
    assert describe(error, Context("https://kbs:8443")) == line


def test_an_unsupported_scheme_names_the_url_given() -> None:
    error = no_answer(
        httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
        url="ftp://kbs/kbs/v0/auth",
    )
    assert describe(error, Context("ftp://kbs")) == (
        "--url ftp://kbs is not an http:// or https:// URL: Request URL has an unsupported "
        "protocol 'ftp://'."
    )


# ------------------------------------------------------------------------------------------
# what reaches the top


def test_interrupt_anywhere_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    group = BaseExceptionGroup("nursery", [ValueError("x"), KeyboardInterrupt()])
    assert cli.report(group, Context(URL)) == 130
    assert capsys.readouterr().err == "trustee-client: interrupted\n"


def test_closed_stdout_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.report(BrokenPipeError(errno.EPIPE, "Broken pipe"), Context(URL)) == 1
    assert capsys.readouterr().err == (
        "trustee-client: stdout was closed before the output was written\n"
    )


def test_a_bug_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    group = ExceptionGroup("one", [RuntimeError("bad\nstate")])
    assert cli.report(group, Context(URL)) == 1
    assert capsys.readouterr().err == "trustee-client: internal error: RuntimeError: bad state\n"


def test_usage_errors_use_the_same_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "set-resource", "--path", "a/b/c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: trustee-client config set-resource")
    assert err.endswith("\ntrustee-client: the following arguments are required: --resource-file\n")


# ------------------------------------------------------------------------------------------
# help


def subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += subparsers(sub)
    return found


def test_every_option_and_argument_has_a_help_line() -> None:
    missing = [
        f"{parser.prog} {action.dest}"
        for parser in subparsers(build_parser())
        for action in parser._actions
        if not action.help
    ]
    assert missing == []


def test_help_shows_the_default_url_and_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "without /kbs/v0 (default: http://127.0.0.1:8080)" in text
    for name in (
        SIMULATED_TEE_ENV,
        SIMULATED_PKI_ENV,
        SIMULATED_SNP_CA_ENV,
        SIMULATED_MEASUREMENT_ENV,
        SAMPLE_DEVICE_ENV,
        "TRUSTEE_LOG",
        "RUST_LOG",
    ):
        assert name in text


def test_kbs_command_line_has_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        kbs_main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Key Broker Service" in text and "-c FILE, --config-file FILE" in text
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as done:
            kbs_main([flag])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith("kbs ")
