"""`trustee-client` command line: parsing, HTTP produced, exact stdout/stderr, exit codes.

The network peer is an httpx.MockTransport injected by replacing the CLI's KbsClient factory;
the commands themselves run unchanged through `main()` (and so through `trio.run`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from trustee.client import cli
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.kbs import KbsClient
from trustee.client.parser import build_parser
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import jwe

NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
COOKIE = "kbs-session-id=00112233445566778899aabbccddeeff; Expires=Fri, 21 Aug 2099 13:16:50 GMT"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
ERR = "https://github.com/confidential-containers/kbs/errors/"


class Peer:
    """Records requests; answers admin calls with `admin`, runs a minimal RCAR otherwise."""

    def __init__(self, admin: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.admin = admin or httpx.Response(200)
        self.key: dict[str, Any] | None = None
        self.bearer_key: dict[str, Any] | None = None  # encrypt to this when a Bearer comes
        self.secret = b"\x01secret\n"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/kbs/v0/auth":
            return httpx.Response(
                200, json={"nonce": NONCE, "extra-params": ""}, headers={"Set-Cookie": COOKIE}
            )
        if path == "/kbs/v0/attest":
            self.key = json.loads(request.content)["runtime-data"]["tee-pubkey"]
            return httpx.Response(200, json={"token": TOKEN})
        if request.method == "GET" and path.startswith("/kbs/v0/resource/"):
            auth = request.headers.get("authorization", "")
            key = self.key if "cookie" in request.headers else None
            if auth.startswith("Bearer ") and self.bearer_key is not None:
                key = self.bearer_key
            if key is None:
                body = {"type": ERR + "TokenNotFound", "detail": "Attestation Token not found"}
                return httpx.Response(401, json=body)
            return httpx.Response(200, json=jwe.encrypt(self.secret, key))
        return self.admin


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Peer:
    the_peer = Peer()
    install(monkeypatch, the_peer)
    # Isolate admin-token discovery from the developer's machine.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return the_peer


def install(monkeypatch: pytest.MonkeyPatch, the_peer: Peer) -> None:
    def factory(*args: Any, **kwargs: Any) -> KbsClient:
        kwargs["transport"] = httpx.MockTransport(the_peer)
        kwargs.setdefault("attesters", AttesterSet(primary=SampleAttester()))
        return KbsClient(*args, **kwargs)

    monkeypatch.setattr(cli, "KbsClient", factory)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------------------------------
# parsing


def parse(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def test_global_options_and_defaults() -> None:
    args = parse(["attest"])
    assert (args.url, args.cert_file, args.tee_key_file, args.init_data) == (
        "http://127.0.0.1:8080",
        None,
        None,
        None,
    )
    args = parse(["--url", "https://kbs:8080", "--cert-file", "ca.pem", "attest", "x = 1"])
    assert (args.url, args.cert_file, args.init_data) == ("https://kbs:8080", "ca.pem", "x = 1")


def test_global_options_must_precede_the_command() -> None:
    with pytest.raises(SystemExit) as info:
        parse(["attest", "--url", "http://x"])
    assert info.value.code == 2


def test_get_resource_arguments() -> None:
    args = parse(
        ["get-resource", "--path", "a/b/c", "--tee-key-file", "k", "--attestation-token", "t"]
    )
    assert (args.path, args.tee_key_file, args.attestation_token) == ("a/b/c", "k", "t")
    assert parse(["get-resource", "--path", "a/b/c", "init"]).init_data == "init"
    with pytest.raises(SystemExit):
        parse(["get-resource"])


def test_config_arguments() -> None:
    args = parse(
        [
            "config",
            "--admin-token-file",
            "tok",
            "set-resource",
            "--path",
            "a/b/c",
            "--resource-file",
            "f",
        ]
    )
    assert (args.admin_token_file, args.config_command, args.path, args.resource_file) == (
        "tok",
        "set-resource",
        "a/b/c",
        "f",
    )
    args = parse(["config", "set-attestation-policy", "--policy-file", "p"])
    assert (args.policy_type, args.policy_id, args.policy_file) == (None, None, "p")
    args = parse(
        ["config", "set-attestation-policy", "--type", "rego", "--id", "x", "--policy-file", "p"]
    )
    assert (args.policy_type, args.policy_id) == ("rego", "x")
    assert parse(["config", "delete-resource", "--path", "a/b/c"]).path == "a/b/c"
    assert parse(["config", "get-reference-value", "--id", "svn"]).reference_value_id == "svn"
    args = parse(
        ["config", "set-sample-reference-value", "n", "-5", "--as-integer", "--as-single-value"]
    )
    assert (args.name, args.value, args.as_integer, args.as_single_value) == ("n", "-5", True, True)
    with pytest.raises(SystemExit):
        parse(["config"])  # a config subcommand is required


@pytest.mark.parametrize(
    "flags",
    [
        ["--allow-all", "--deny-all"],
        ["--policy-file", "p", "--affirming"],
        ["--default", "--allow-all"],
    ],
)
def test_resource_policy_sources_are_exclusive(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["config", "set-resource-policy", *flags])
    assert info.value.code == 2


def test_main_returns_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "set-resource-policy", "--allow-all", "--deny-all"], capsys)
    assert (code, out) == (2, "")
    assert "not allowed with argument" in err
    assert run(["--help"], capsys)[0] == 0


def test_reference_value_kinds_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        parse(["config", "set-sample-reference-value", "n", "1", "--as-integer", "--as-bool"])


def test_resource_policy_needs_a_source(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["config", "set-resource-policy"], capsys)
    assert (code, out, err) == (1, "", "trustee-client: No policy specified\n")
    assert peer.requests == []


def test_attestation_token_requires_tee_key(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tok").write_text(TOKEN)
    code, out, err = run(["get-resource", "--path", "a/b/c", "--attestation-token", "tok"], capsys)
    assert code == 1
    assert out == ""
    assert err == (
        "trustee-client: --attestation-token needs --tee-key-file: the TEE key whose public "
        "part is the token's tee-pubkey\n"
    )
    assert peer.requests == []


# ------------------------------------------------------------------------------------------
# RCAR commands


def test_attest_prints_the_token(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["attest", 'version = "0.1.0"'], capsys)
    assert (code, out) == (0, TOKEN + "\n")
    body = json.loads(peer.requests[1].content)
    assert body["init-data"] == {"format": "toml", "body": 'version = "0.1.0"'}


def test_attest_with_rsa_tee_key_file(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = generate_tee_key("rsa")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "tee.pem").write_bytes(pem)
    code, _out, _ = run(["attest", "--tee-key-file", "tee.pem"], capsys)
    assert code == 0
    assert peer.key == tee_public_jwk(key)
    assert peer.key is not None and peer.key["alg"] == "RSA-OAEP-256"


def test_get_resource_prints_base64(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["get-resource", "--path", "one/two/three"], capsys)
    assert (code, out, err) == (0, b64(peer.secret) + "\n", "")
    assert [f"{r.method} {r.url.path}" for r in peer.requests] == [
        "GET /kbs/v0/resource/one/two/three",
        "POST /kbs/v0/auth",
        "POST /kbs/v0/attest",
        "GET /kbs/v0/resource/one/two/three",
    ]


def test_get_resource_with_token(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = generate_tee_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "tee.pem").write_bytes(pem)
    (tmp_path / "tok").write_text(TOKEN + "\n")
    peer.bearer_key = tee_public_jwk(key)
    argv = [
        "get-resource",
        "--path",
        "a/b/c",
        "--tee-key-file",
        "tee.pem",
        "--attestation-token",
        "tok",
    ]
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (0, b64(peer.secret) + "\n", "")
    (request,) = peer.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_get_resource_unauthorized_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Denying(Peer):
        def __call__(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/kbs/v0/resource/"):
                self.requests.append(request)
                body = {"type": ERR + "PolicyDeny", "detail": "Access denied by policy"}
                return httpx.Response(401, json=body)
            return super().__call__(request)

    install(monkeypatch, Denying())
    code, out, err = run(["get-resource", "--path", "a/b/c"], capsys)
    assert code == 1
    assert out == ""
    # A KBS that sends no `reason` (upstream's) is quoted by its `detail`.
    assert err == "trustee-client: PolicyDeny: Access denied by policy\n"


def test_missing_key_file_is_one_error_line(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["attest", "--tee-key-file", "nope.pem"], capsys)
    assert code == 1
    assert err == "trustee-client: Failed to read: nope.pem: No such file or directory\n"


def test_unreachable_server_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    def factory(*args: Any, **kwargs: Any) -> KbsClient:
        return KbsClient(*args, transport=httpx.MockTransport(refuse), **kwargs)

    monkeypatch.setattr(cli, "KbsClient", factory)
    code, _, err = run(["config", "delete-resource", "--path", "a/b/c"], capsys)
    assert code == 1
    assert err == (
        "trustee-client: cannot connect to http://127.0.0.1:8080: All connection attempts failed\n"
    )


# ------------------------------------------------------------------------------------------
# config commands: HTTP and exact stdout


def test_set_resource(peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "res").write_bytes(b"\x00data")
    code, out, _ = run(
        ["config", "set-resource", "--path", "r/t/x", "--resource-file", "res"], capsys
    )
    assert code == 0
    assert out == "Set resource success \n resource: " + b64(b"\x00data") + "\n"
    (request,) = peer.requests
    assert (request.method, request.url.path) == ("POST", "/kbs/v0/resource/r/t/x")
    assert request.content == b"\x00data"
    assert request.headers["content-type"] == "application/octet-stream"
    assert "authorization" not in request.headers


def test_delete_resource(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["config", "delete-resource", "--path", "r/t/x"], capsys)
    assert (code, out) == (0, "Delete resource success\n")
    assert peer.requests[0].method == "DELETE"


def test_set_attestation_policy(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = b"package policy\ndefault allow = true\n"
    (tmp_path / "p.rego").write_bytes(policy)
    code, out, _ = run(["config", "set-attestation-policy", "--policy-file", "p.rego"], capsys)
    assert code == 0
    assert out == f"Set attestation policy success \n policy: {b64(policy)}\n"
    (request,) = peer.requests
    assert request.url.path == "/kbs/v0/attestation-policy"
    assert request.content == (
        b'{"type":"rego","policy_id":"default_cpu","policy":"' + b64url(policy).encode() + b'"}'
    )


@pytest.mark.parametrize(
    ("flag", "policy"),
    [
        ("--allow-all", cli.ALLOW_ALL_POLICY),
        ("--deny-all", cli.DENY_ALL_POLICY),
        ("--affirming", cli.AFFIRMING_POLICY),
        ("--default", cli.DENY_ALL_POLICY),  # upstream quirk: --default is deny-all
    ],
)
def test_builtin_resource_policies(
    peer: Peer, capsys: pytest.CaptureFixture[str], flag: str, policy: str
) -> None:
    code, out, _ = run(["config", "set-resource-policy", flag], capsys)
    assert code == 0
    assert out == f"Set resource policy success \n policy: {b64(policy.encode())}\n"
    (request,) = peer.requests
    assert request.url.path == "/kbs/v0/resource-policy"
    assert json.loads(request.content) == {"policy": b64url(policy.encode())}
    assert "=" not in json.loads(request.content)["policy"]


def test_builtin_policy_texts() -> None:
    assert 'data.plugin == "resource"' in cli.ALLOW_ALL_POLICY
    assert "allow if" not in cli.DENY_ALL_POLICY
    assert "default allow = false" in cli.DENY_ALL_POLICY
    assert 'submod["ear.status"] == "affirming"' in cli.AFFIRMING_POLICY
    assert "count(input.submods) > 0" in cli.AFFIRMING_POLICY
    for text in (cli.ALLOW_ALL_POLICY, cli.DENY_ALL_POLICY, cli.AFFIRMING_POLICY):
        assert text.startswith("package policy\n")


def test_set_resource_policy_from_file(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.rego").write_bytes(b"package policy\n")
    code, _out, _ = run(["config", "set-resource-policy", "--policy-file", "p.rego"], capsys)
    assert code == 0
    assert json.loads(peer.requests[0].content) == {"policy": "cGFja2FnZSBwb2xpY3kK"}


@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ([], ["7"]),
        (["--as-integer"], [7]),
        (["--as-bool"], None),
        (["--as-single-value"], "7"),
        (["--as-integer", "--as-single-value"], 7),
    ],
)
def test_set_sample_reference_value(
    peer: Peer, capsys: pytest.CaptureFixture[str], extra: list[str], value: Any
) -> None:
    raw = "true" if "--as-bool" in extra else "7"
    if value is None:
        value = [True]
    code, out, _ = run(["config", "set-sample-reference-value", "svn", raw, *extra], capsys)
    assert (code, out) == (0, "Reference Values Updated\n")
    (request,) = peer.requests
    assert request.url.path == "/kbs/v0/reference-value"
    message = json.loads(request.content)
    assert (message["version"], message["type"]) == ("0.1.0", "sample")
    assert json.loads(base64.b64decode(message["payload"])) == {"svn": value}


@pytest.mark.parametrize(
    ("extra", "raw", "error"),
    [
        (["--as-integer"], "x1", "invalid digit found in string"),
        (["--as-integer"], "2147483648", "number too large to fit in target type"),
        (["--as-bool"], "True", "provided string was not `true` or `false`"),
    ],
)
def test_set_sample_reference_value_bad_value(
    peer: Peer, capsys: pytest.CaptureFixture[str], extra: list[str], raw: str, error: str
) -> None:
    code, out, err = run(["config", "set-sample-reference-value", "svn", raw, *extra], capsys)
    assert (code, out, err) == (1, "", f"trustee-client: {error}\n")
    assert peer.requests == []


def test_rust_integer_rules() -> None:
    assert cli.parse_i32("+12") == 12
    assert cli.parse_i32("-2147483648") == -(2**31)
    for bad in ("", " 1", "1_0", "+", "0x1"):
        with pytest.raises(cli.CliError):
            cli.parse_i32(bad)


def test_get_reference_value_prints_the_json_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install(monkeypatch, Peer(admin=httpx.Response(200, content=b'["1.2.3"]')))
    code, out, _ = run(["config", "get-reference-value", "--id", "svn"], capsys)
    assert (code, out) == (0, '["1.2.3"]\n')


def test_admin_failure_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps({"type": ERR + "AdminAuthAccess", "detail": "denied"})
    install(monkeypatch, Peer(admin=httpx.Response(401, content=body.encode())))
    code, out, err = run(["config", "set-resource-policy", "--deny-all"], capsys)
    assert code == 1
    assert out == ""
    assert err == "trustee-client: AdminAuthAccess: denied\n"


# ------------------------------------------------------------------------------------------
# admin token resolution


def test_admin_token_file_is_sent(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tok").write_text("  admin.jwt.x\n")
    code, _, _ = run(
        ["config", "--admin-token-file", "tok", "delete-resource", "--path", "a/b/c"], capsys
    )
    assert code == 0
    assert peer.requests[0].headers["authorization"] == "Bearer admin.jwt.x"


def test_admin_token_resolution_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".trustee").mkdir(parents=True)
    (home / ".trustee" / "admin-token").write_text("from-home\n")
    env = {"HOME": str(home)}
    work = tmp_path / "work"
    work.mkdir()
    assert cli.resolve_admin_token(None, env=env, cwd=work) == "from-home"
    compose = work / "kbs" / "config" / "docker-compose"
    compose.mkdir(parents=True)
    (compose / "admin-token").write_text("from-compose\n")
    assert cli.resolve_admin_token(None, env=env, cwd=work) == "from-compose"
    (tmp_path / "explicit").write_text("explicit")
    assert cli.resolve_admin_token(str(tmp_path / "explicit"), env=env, cwd=work) == "explicit"
    assert cli.resolve_admin_token(None, env={}, cwd=tmp_path) is None


def test_default_home_token_is_used(
    peer: Peer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_dir = tmp_path / "home" / ".trustee"
    token_dir.mkdir(parents=True)
    (token_dir / "admin-token").write_text("home-token")
    code, _, _ = run(["config", "delete-resource", "--path", "a/b/c"], capsys)
    assert code == 0
    assert peer.requests[0].headers["authorization"] == "Bearer home-token"
