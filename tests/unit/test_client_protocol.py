"""The KBS client library against a scripted KBS peer (httpx.MockTransport, no sockets).

The peer checks the binding with its own canonical-JSON + hashlib computation (sorted compact
JSON equals RFC 8785 for these string-only objects), so the client's use of the binding module is
tested against an independent implementation, and once against a byte-exact vector.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from trustee.client.attesters import (
    AttesterSet,
    SampleAttester,
    SampleDeviceAttester,
    detect_attesters,
)
from trustee.client.kbs import (
    USER_AGENT,
    AdminRequestError,
    Challenge,
    ErrorInformation,
    InitData,
    KbsClient,
    KbsClientError,
    KbsInternalError,
    RcarHandshakeError,
    ResourceNotFoundError,
    ResponseDeserializationError,
    TeeKeyError,
    Token,
    UnauthorizedError,
    rust_debug_str,
    sample_reference_value_message,
)
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.protocol import jwe

BASE = "http://kbs.test"
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SESSION = "0123456789abcdef0123456789abcdef"
COOKIE = f"kbs-session-id={SESSION}; Expires=Fri, 21 Aug 2099 13:16:50 GMT"
ERR = "https://github.com/confidential-containers/kbs/errors/"


def make_token(exp: int = 4_102_444_800) -> str:
    def seg(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg({'alg': 'ES256', 'typ': 'JWT'})}.{seg({'exp': exp, 'iss': 'test'})}.c2ln"


def error_body(variant: str, detail: str) -> bytes:
    return json.dumps({"type": ERR + variant, "detail": detail}).encode()


def sorted_compact(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def no_sleep(seconds: float) -> None:
    return None


@dataclass
class FakeKbs:
    """A KBS peer with scripted answers; records every request it sees."""

    resource: bytes = b"top secret"
    extra_params: Any = ""
    auth_failures: int = 0  # answer this many /auth calls with 401 first
    attest_status: int = 200
    token: str = field(default_factory=make_token)
    resource_status: list[int] = field(default_factory=list)  # forced statuses, consumed in order
    resource_body: bytes | None = None  # overrides the body of a forced status
    always_unauthorized: bool = False
    requests: list[httpx.Request] = field(default_factory=list)
    attested_key: dict[str, Any] | None = None
    bearer_key: dict[str, Any] | None = None  # key to encrypt to when a Bearer token is sent
    admin_status: int = 200
    admin_body: bytes = b""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def calls(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path == "/kbs/v0/auth":
            if self.auth_failures > 0:
                self.auth_failures -= 1
                return httpx.Response(401, content=error_body("AttestationError", "auth nope"))
            challenge = {"nonce": NONCE, "extra-params": self.extra_params}
            return httpx.Response(200, json=challenge, headers={"Set-Cookie": COOKIE})
        if request.method == "POST" and path == "/kbs/v0/attest":
            return self.attest(request)
        if request.method == "GET" and path.startswith("/kbs/v0/resource/"):
            return self.get_resource(request)
        if path.startswith("/kbs/v0/"):
            return httpx.Response(self.admin_status, content=self.admin_body)
        return httpx.Response(404)

    def attest(self, request: httpx.Request) -> httpx.Response:
        assert f"kbs-session-id={SESSION}" in request.headers.get("cookie", "")
        body = json.loads(request.content)
        if self.attest_status != 200:
            return httpx.Response(
                self.attest_status,
                content=error_body(
                    "AttestationError", "Attestation error: RCAR handshake Attest failed"
                ),
            )
        key = body["runtime-data"]["tee-pubkey"]
        evidence = body["tee-evidence"]
        additional = evidence["additional_evidence"]
        algorithm = "sha384"
        if isinstance(self.extra_params, dict):
            algorithm = self.extra_params.get("selected-hash-algorithm", "sha384").lower()
        primary_rd = {"tee-pubkey": key, "nonce": NONCE, "additional-evidence": additional}
        expected = hashlib.new(algorithm, sorted_compact(primary_rd)).digest()
        reported = base64.b64decode(evidence["primary_evidence"]["report_data"])
        assert reported == expected, "primary binding mismatch"
        if additional:
            device_rd = {"tee-pubkey": key, "nonce": NONCE}
            device_expected = hashlib.new(algorithm, sorted_compact(device_rd)).digest()
            for device in json.loads(additional).values():
                assert base64.b64decode(device["report_data"]) == device_expected
        self.attested_key = key
        return httpx.Response(200, json={"token": self.token}, headers={"Set-Cookie": COOKIE})

    def get_resource(self, request: httpx.Request) -> httpx.Response:
        if self.resource_status:
            status = self.resource_status.pop(0)
            body = self.resource_body or error_body("PluginInternalError", "Plugin internal error")
            return httpx.Response(status, content=body)
        bearer = request.headers.get("authorization", "")
        cookie = request.headers.get("cookie", "")
        key = self.attested_key if f"kbs-session-id={SESSION}" in cookie else None
        if bearer.startswith("Bearer ") and self.bearer_key is not None:
            key = self.bearer_key
        if key is None or self.always_unauthorized:
            return httpx.Response(
                401, content=error_body("TokenNotFound", "Attestation Token not found")
            )
        return httpx.Response(200, json=jwe.encrypt(self.resource, key))


def client_for(kbs: FakeKbs, **kwargs: Any) -> KbsClient:
    kwargs.setdefault("attesters", AttesterSet(primary=SampleAttester()))
    kwargs.setdefault("sleep", no_sleep)
    return KbsClient(BASE, transport=kbs.transport(), **kwargs)


def generator_key() -> ec.EllipticCurvePrivateKey:
    # Private scalar 1: the public key is the P-256 generator, a test-only key.
    return ec.derive_private_key(1, ec.SECP256R1())


# ------------------------------------------------------------------------------------------
# /auth and /attest bodies


async def test_auth_request_is_byte_exact() -> None:
    kbs = FakeKbs()
    async with client_for(kbs) as client:
        challenge = await client.auth()
    assert challenge == Challenge(nonce=NONCE, extra_params="")
    (request,) = kbs.requests
    assert request.content == (
        b'{"version":"0.4.0","tee":"sample","extra-params":'
        b'{"supported-hash-algorithms":["sha256","sha384","sha512"]}}'
    )
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("trustee-client/")


async def test_attest_body_matches_spec_vector() -> None:
    kbs = FakeKbs()
    async with client_for(kbs, tee_key=generator_key()) as client:
        token = await client.attest()
    assert token == kbs.token
    assert kbs.calls == ["POST /kbs/v0/auth", "POST /kbs/v0/attest"]
    attest = kbs.requests[1]
    assert attest.headers["content-type"] == "application/json"
    expected = (
        '{"init-data":null,"runtime-data":{"nonce":"' + NONCE + '","tee-pubkey":'
        '{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",'
        '"x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",'
        '"y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}},'
        '"tee-evidence":{"primary_evidence":{"svn":"1","report_data":'
        '"ntwBsJ6Zf2V41r2Pf8KyjfqvTlQXeTZnt+zgJdUMfPW5sPfSu7zr4l0vU70zgHzj"},'
        '"additional_evidence":""}}'
    )
    assert attest.content.decode() == expected


async def test_selected_hash_algorithm_is_honoured() -> None:
    kbs = FakeKbs(extra_params={"selected-hash-algorithm": "SHA512"})
    async with client_for(kbs) as client:
        await client.attest()
    body = json.loads(kbs.requests[1].content)
    assert len(base64.b64decode(body["tee-evidence"]["primary_evidence"]["report_data"])) == 64


async def test_unknown_selected_hash_algorithm_fails_the_handshake() -> None:
    kbs = FakeKbs(extra_params={"selected-hash-algorithm": "md5"})
    async with client_for(kbs, handshake_attempts=1) as client:
        with pytest.raises(RcarHandshakeError, match="md5"):
            await client.attest()
    assert kbs.calls == ["POST /kbs/v0/auth"]


async def test_init_data_is_sent_and_its_digest_reaches_the_attester() -> None:
    text = 'version = "0.1.0"\nalgorithm = "sha384"\n\n[data]\n"aa.toml" = "x"\n'
    seen: list[bytes | None] = []

    class Recording(SampleAttester):
        def evidence(self, report_data: bytes, init_data_digest: bytes | None) -> Any:
            seen.append(init_data_digest)
            return super().evidence(report_data, init_data_digest)

    kbs = FakeKbs()
    async with client_for(kbs, attesters=AttesterSet(primary=Recording())) as client:
        await client.attest(text)
    body = json.loads(kbs.requests[1].content)
    assert list(body) == ["init-data", "runtime-data", "tee-evidence"]
    assert body["init-data"] == {"format": "toml", "body": text}
    assert seen == [hashlib.sha384(text.encode()).digest()]


async def test_init_data_given_to_the_client_is_used_by_get_resource() -> None:
    text = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n'
    kbs = FakeKbs()
    async with client_for(kbs, init_data=text) as client:
        await client.get_resource("a/b/c")
    body = json.loads(kbs.requests[2].content)
    assert body["init-data"] == {"format": "toml", "body": text}


def test_init_data_digest_rules() -> None:
    assert (
        InitData('algorithm = "sha512"\n').digest()
        == hashlib.sha512(b'algorithm = "sha512"\n').digest()
    )
    # No algorithm, an unknown one, or text that is not TOML: nothing for the attester to bind,
    # but the text is still sent as given (the server decides).
    assert InitData('version = "0.1.0"\n').digest() is None
    assert InitData('algorithm = "md5"\n').digest() is None
    assert InitData("not = = toml").digest() is None
    assert InitData("x").wire() == {"format": "toml", "body": "x"}


async def test_device_evidence_when_sample_device_is_enabled() -> None:
    attesters = detect_attesters({"ENABLE_SAMPLE_DEVICE": ""})
    assert attesters.primary.tee == "sample"
    assert [d.tee for d in attesters.devices] == ["sampledevice"]
    kbs = FakeKbs()
    async with client_for(kbs, attesters=attesters, tee_key=generator_key()) as client:
        await client.attest()
    evidence = json.loads(kbs.requests[1].content)["tee-evidence"]
    additional = evidence["additional_evidence"]
    assert isinstance(additional, str)
    device = json.loads(additional)
    assert list(device) == ["sampledevice"]
    assert device["sampledevice"]["svn"] == "2"
    assert (
        additional
        == '{"sampledevice":' + json.dumps(device["sampledevice"], separators=(",", ":")) + "}"
    )
    # The fake KBS already asserted both bindings; the device one excludes additional-evidence.
    key = tee_public_jwk(generator_key())
    device_rd = sorted_compact({"nonce": NONCE, "tee-pubkey": key})
    assert base64.b64decode(device["sampledevice"]["report_data"]) == (
        hashlib.sha384(device_rd).digest()
    )


def test_detect_attesters_without_devices() -> None:
    attesters = detect_attesters({})
    assert isinstance(attesters.primary, SampleAttester)
    assert attesters.devices == ()
    assert SampleDeviceAttester().evidence(b"\x01\x02", None) == {
        "svn": "2",
        "report_data": "AQI=",
    }


# ------------------------------------------------------------------------------------------
# get_token retries


async def test_attest_retries_the_handshake_with_a_pause() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    kbs = FakeKbs(auth_failures=2)
    async with client_for(kbs, sleep=sleep) as client:
        assert await client.attest() == kbs.token
    assert pauses == [1.0, 1.0]
    assert kbs.calls.count("POST /kbs/v0/auth") == 3


async def test_attest_gives_up_after_five_attempts() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    kbs = FakeKbs(auth_failures=100)
    async with client_for(kbs, sleep=sleep) as client:
        with pytest.raises(RcarHandshakeError) as info:
            await client.attest()
    assert kbs.calls == ["POST /kbs/v0/auth"] * 5
    assert pauses == [1.0] * 4
    message = str(info.value)
    assert message.startswith("RCAR handshake failed: Unable to get token. RCAR handshake ")
    assert "retried 5 times" in message
    assert "auth nope" in message


async def test_attest_rejects_a_token_that_is_not_a_jwt() -> None:
    kbs = FakeKbs(token="garbage")
    async with client_for(kbs, handshake_attempts=1) as client:
        with pytest.raises(RcarHandshakeError, match="illegal token format"):
            await client.attest()


async def test_get_token_reuses_a_valid_token() -> None:
    kbs = FakeKbs()
    async with client_for(kbs) as client:
        first = await client.get_token()
        second = await client.get_token()
    assert first == second
    assert kbs.calls.count("POST /kbs/v0/auth") == 1


def test_token_validity_window() -> None:
    token = Token.parse(make_token(exp=100))
    assert token.exp == 100
    assert token.is_valid(now=99)
    assert not token.is_valid(now=101)
    with pytest.raises(KbsClientError, match="illegal token format"):
        Token.parse("no-dots")


# ------------------------------------------------------------------------------------------
# get_resource (background check)


async def test_get_resource_first_get_401_then_handshake_then_retry() -> None:
    kbs = FakeKbs(resource=b"\x00secret\xff")
    async with client_for(kbs) as client:
        assert await client.get_resource("default/key/one") == b"\x00secret\xff"
    assert kbs.calls == [
        "GET /kbs/v0/resource/default/key/one",
        "POST /kbs/v0/auth",
        "POST /kbs/v0/attest",
        "GET /kbs/v0/resource/default/key/one",
    ]
    first, *_, last = kbs.requests
    assert "cookie" not in first.headers
    assert last.headers["cookie"] == f"kbs-session-id={SESSION}"


async def test_get_resource_gives_up_after_three_gets() -> None:
    kbs = FakeKbs(always_unauthorized=True)
    async with client_for(kbs) as client:
        with pytest.raises(UnauthorizedError) as info:
            await client.get_resource("default/key/one")
    gets = [c for c in kbs.calls if c.startswith("GET")]
    assert len(gets) == 3
    # Like upstream, every 401 (the last included) triggers one handshake.
    assert kbs.calls.count("POST /kbs/v0/attest") == 3
    assert str(info.value).startswith("request unauthorized")
    assert "Attestation Token not found" in str(info.value)


async def test_get_resource_404_fails_at_once() -> None:
    kbs = FakeKbs(
        resource_status=[404], resource_body=error_body("PluginNotFound", "Plugin x not found")
    )
    async with client_for(kbs) as client:
        with pytest.raises(ResourceNotFoundError) as info:
            await client.get_resource("default/key/one")
    assert kbs.calls == ["GET /kbs/v0/resource/default/key/one"]
    assert "KBS resource Not Found" in str(info.value)
    assert "Plugin x not found" in str(info.value)


async def test_get_resource_401_body_must_be_error_information() -> None:
    kbs = FakeKbs(resource_status=[401], resource_body=b"<html>nope</html>")
    async with client_for(kbs) as client:
        with pytest.raises(ResponseDeserializationError) as info:
            await client.get_resource("default/key/one")
    assert kbs.calls == ["GET /kbs/v0/resource/default/key/one"]  # no handshake attempted
    assert str(info.value).startswith("deserialize http response failed")
    assert "<html>nope</html>" in str(info.value)


async def test_get_resource_401_body_needs_type_and_detail() -> None:
    kbs = FakeKbs(resource_status=[401], resource_body=b'{"type": "x"}')
    async with client_for(kbs) as client:
        with pytest.raises(ResponseDeserializationError, match="detail"):
            await client.get_resource("default/key/one")


async def test_get_resource_handshake_failure_is_a_single_attempt() -> None:
    kbs = FakeKbs(auth_failures=100)
    async with client_for(kbs) as client:
        with pytest.raises(RcarHandshakeError) as info:
            await client.get_resource("default/key/one")
    assert kbs.calls == ["GET /kbs/v0/resource/default/key/one", "POST /kbs/v0/auth"]
    assert "auth nope" in str(info.value)


async def test_get_resource_attest_failure_surfaces_the_detail() -> None:
    kbs = FakeKbs(attest_status=401)
    async with client_for(kbs) as client:
        with pytest.raises(RcarHandshakeError, match="RCAR handshake Attest failed"):
            await client.get_resource("default/key/one")


async def test_get_resource_other_status_is_an_internal_error() -> None:
    kbs = FakeKbs(resource_status=[500], resource_body=error_body("Boom", "it broke"))
    async with client_for(kbs) as client:
        with pytest.raises(KbsInternalError, match="KBS Server Internal Failed"):
            await client.get_resource("default/key/one")


async def test_get_resource_with_p521_and_rsa_keys() -> None:
    for key in (generate_tee_key("ec-p521"), generate_tee_key("rsa")):
        kbs = FakeKbs()
        async with client_for(kbs, tee_key=key) as client:
            assert await client.get_resource("r/t/x") == b"top secret"


async def test_undecryptable_response_is_reported() -> None:
    kbs = FakeKbs(resource_status=[200], resource_body=b'{"protected": "e30"}')
    async with client_for(kbs) as client:
        with pytest.raises(KbsClientError, match="decrypt KBS response body failed"):
            await client.get_resource("r/t/x")


# ------------------------------------------------------------------------------------------
# passport (Bearer token)


async def test_get_resource_with_token_sends_bearer_and_decrypts() -> None:
    key = generate_tee_key("rsa")
    kbs = FakeKbs(bearer_key=tee_public_jwk(key))
    async with client_for(kbs) as client:
        data = await client.get_resource_with_token("r/t/x", "tok.en.x\n", key)
    assert data == b"top secret"
    (request,) = kbs.requests
    assert request.headers["authorization"] == "Bearer tok.en.x"
    assert "cookie" not in request.headers


async def test_get_resource_with_token_401_is_unauthorized() -> None:
    kbs = FakeKbs(always_unauthorized=True)
    async with client_for(kbs) as client:
        with pytest.raises(UnauthorizedError, match="request unauthorized"):
            await client.get_resource_with_token("r/t/x", "t.o.k", generate_tee_key())
    assert len(kbs.requests) == 1


def test_ed25519_is_not_a_tee_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(TeeKeyError, match="get key pair failed"):
        KbsClient(BASE, tee_key=ed25519.Ed25519PrivateKey.generate())


# ------------------------------------------------------------------------------------------
# admin API


async def test_admin_requests() -> None:
    kbs = FakeKbs(admin_body=b'["1"]')
    async with client_for(kbs, admin_token="adm") as client:
        await client.set_resource("/repo/type/tag", b"\x00\x01")
        await client.delete_resource("repo/type/tag")
        await client.set_resource_policy("package policy\n")
        await client.set_attestation_policy(b"package policy\n")
        await client.set_attestation_policy("p", policy_id="default_gpu", type_="rego")
        await client.set_sample_reference_value("svn", ["1"])
        assert await client.get_reference_value("svn") == '["1"]'
    assert kbs.calls == [
        "POST /kbs/v0/resource/repo/type/tag",
        "DELETE /kbs/v0/resource/repo/type/tag",
        "POST /kbs/v0/resource-policy",
        "POST /kbs/v0/attestation-policy",
        "POST /kbs/v0/attestation-policy",
        "POST /kbs/v0/reference-value",
        "GET /kbs/v0/reference-value/svn",
    ]
    assert all(r.headers["authorization"] == "Bearer adm" for r in kbs.requests)
    set_res, _, res_pol, att_pol, att_pol2, rv, get_rv = kbs.requests
    assert set_res.content == b"\x00\x01"
    assert set_res.headers["content-type"] == "application/octet-stream"
    assert res_pol.content == b'{"policy":"cGFja2FnZSBwb2xpY3kK"}'
    assert att_pol.content == (
        b'{"type":"rego","policy_id":"default_cpu","policy":"cGFja2FnZSBwb2xpY3kK"}'
    )
    assert json.loads(att_pol2.content)["policy_id"] == "default_gpu"
    assert json.loads(rv.content) == {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(b'{"svn":["1"]}').decode(),
    }
    assert get_rv.headers["content-type"] == "application/json"
    assert get_rv.content == b""


async def test_admin_without_token_sends_no_authorization() -> None:
    kbs = FakeKbs()
    async with client_for(kbs) as client:
        await client.delete_resource("a/b/c")
    assert "authorization" not in kbs.requests[0].headers


async def test_admin_failure_quotes_the_body() -> None:
    body = error_body("AdminAuthAccess", 'denied "x"')
    kbs = FakeKbs(admin_status=401, admin_body=body)
    async with client_for(kbs) as client:
        with pytest.raises(AdminRequestError) as info:
            await client.set_resource_policy("p")
    assert info.value.status == 401
    assert str(info.value) == f"Request Failed, Response: {rust_debug_str(body.decode())}"
    assert str(info.value).startswith('Request Failed, Response: "{\\"type\\":')
    # What the KBS said stays readable beside the message, for the command line.
    assert info.value.info == ErrorInformation.parse(body)
    assert (info.value.method, info.value.url) == ("POST", f"{BASE}/kbs/v0/resource-policy")


def test_sample_reference_value_message() -> None:
    message = sample_reference_value_message("name", 5)
    assert list(message) == ["payload", "type", "version"]
    assert base64.b64decode(message["payload"]) == b'{"name":5}'


# ------------------------------------------------------------------------------------------
# helpers


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("", '""'),
        ('["1"]', '"[\\"1\\"]"'),
        ("a\\b\nc\td\re\0", '"a\\\\b\\nc\\td\\re\\0"'),
        ("\x01é", '"\\u{1}é"'),
    ],
)
def test_rust_debug_str(text: str, quoted: str) -> None:
    assert rust_debug_str(text) == quoted


def test_error_information_display() -> None:
    info = ErrorInformation.parse(error_body("PolicyDeny", "Access denied by policy"))
    assert str(info) == (
        f'ErrorInformation {{ error_type: "{ERR}PolicyDeny", detail: "Access denied by policy" }}'
    )


def test_error_information_keeps_the_reason_and_the_variant() -> None:
    body = json.dumps({"type": f"{ERR}PolicyDeny", "detail": "denied", "reason": "line 3"})
    info = ErrorInformation.parse(body.encode())
    assert (info.short_type, info.detail, info.reason) == ("PolicyDeny", "denied", "line 3")
    # The display stays upstream's: the reason is ours, for our command line only.
    assert str(info) == f'ErrorInformation {{ error_type: "{ERR}PolicyDeny", detail: "denied" }}'
    assert ErrorInformation.parse(error_body("PolicyDeny", "denied")).reason is None
    assert ErrorInformation.from_body(b"<html>proxy</html>") is None


def test_challenge_requires_extra_params() -> None:
    with pytest.raises(ResponseDeserializationError, match="extra-params"):
        Challenge.parse(b'{"nonce": "n"}')
    with pytest.raises(ResponseDeserializationError, match="nonce"):
        Challenge.parse(b'{"extra-params": ""}')


async def test_transport_errors_are_client_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = KbsClient(BASE, transport=httpx.MockTransport(refuse), sleep=no_sleep)
    async with client:
        with pytest.raises(KbsClientError, match=r"http request failed: .*connection refused"):
            await client.delete_resource("a/b/c")
