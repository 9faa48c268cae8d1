"""The client speaking KBS protocols 0.1.0, 0.1.1 and 0.2.0, the legacy admin token, the CLI.

The scripted peer re-derives the binding with plain hashlib + json (sorted compact JSON, which is
what those upstream clients and servers hashed) and builds the 0.1.x JWE from primitives, so the
client is checked against an independent implementation; worked examples with fixed keys
and nonces pin the exact bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trustee.client import cli
from trustee.client import generations as generations_module
from trustee.client.attesters import AttesterSet, SampleAttester, SampleDeviceAttester
from trustee.client.kbs import (
    GENERATIONS,
    PROTOCOL_0_1_0,
    PROTOCOL_0_1_1,
    PROTOCOL_0_2_0,
    PROTOCOL_0_4_0,
    Challenge,
    DecryptResponseError,
    Generation,
    KbsClient,
    KbsClientError,
    ResponseDeserializationError,
    TeeKeyError,
    compact_json,
    legacy_admin_token,
)
from trustee.client.parser import build_parser
from trustee.crypto.jwk import generate_tee_key, public_jwk
from trustee.protocol import binding, jwe

BASE = "http://kbs.test"
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
COOKIE = "kbs-session-id=0123456789abcdef0123456789abcdef; Expires=Fri, 21 Aug 2099 13:16:50 GMT"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln"
ERR = "https://github.com/confidential-containers/kbs/errors/"

# RFC 7517 App. A.1 / RFC 7638 §3.1 RSA public key, as the worked examples use it.
RFC_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJEC"
    "PebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvz"
    "qY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu"
    "0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC_JWK_RSA1_5 = {"kty": "RSA", "alg": "RSA1_5", "n": RFC_N, "e": "AQAB"}

G1_HASHED = (
    '{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","tee-pubkey":{"alg":"RSA1_5",'
    f'"e":"AQAB","kty":"RSA","n":"{RFC_N}"}}}}'
)
G1_SHA384 = (
    "52c6d440462acc82f7e654cde3b97a32384afbd5350e11013b150c8da45c2826"
    "63def97429af6393dee8ef0f8f485612"
)
G1_REPORT_DATA = "UsbUQEYqzIL35lTN47l6MjhK+9U1DhEBOxUMjaRcKCZj3vl0Ka9jk97o7w+PSFYS"
G1_BODY = (
    f'{{"tee-pubkey":{{"kty":"RSA","alg":"RSA1_5","n":"{RFC_N}","e":"AQAB"}},'
    f'"tee-evidence":{{"report_data":"{G1_REPORT_DATA}","svn":"1"}}}}'
)
G0_BODY = (
    f'{{"tee-pubkey":{{"kty":"RSA","alg":"RSA1_5","n":"{RFC_N}","e":"AQAB"}},'
    f'"tee-evidence":"{{\\"svn\\":\\"1\\",\\"report_data\\":\\"{G1_REPORT_DATA}\\"}}"}}'
)

EC_X = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY"
EC_Y = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
G2_HASHED = (
    '{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","tee-pubkey":{"alg":"ECDH-ES+A256KW",'
    f'"crv":"P-256","kty":"EC","x":"{EC_X}","y":"{EC_Y}"}}}}'
)
G2_SHA384 = (
    "1f0628a69ac132453783cfa3e29bec54eb45ad7eabd5794753cf0bf05ecbf2cd"
    "c01d1820149a324d16a031e1f130788f"
)
G2_REPORT_DATA = "HwYopprBMkU3g8+j4pvsVOtFrX6r1XlHU88L8F7L8s3AHRggFJoyTRagMeHxMHiP"
G2_BODY = (
    f'{{"tee-pubkey":{{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"{EC_X}","y":"{EC_Y}"}},'
    f'"tee-evidence":{{"report_data":"{G2_REPORT_DATA}","svn":"1"}}}}'
)

AUTH_BODIES = {
    "0.1.0": b'{"version":"0.1.0","tee":"sample","extra-params":""}',
    "0.1.1": b'{"version":"0.1.1","tee":"sample","extra-params":{"supported-hash-algorithms":'
    b'["sha256","sha384","sha512"]}}',
    "0.2.0": b'{"version":"0.2.0","tee":"sample","extra-params":{"supported-hash-algorithms":'
    b'["sha256","sha384","sha512"]}}',
}
LEGACY = ("0.1.0", "0.1.1", "0.2.0")


def ub(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sorted_compact(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def p256_scalar_one() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(1, ec.SECP256R1())


def sample_only() -> AttesterSet:
    return AttesterSet(primary=SampleAttester())


async def no_sleep(seconds: float) -> None:
    return None


# ------------------------------------------------------------------------------------------
# a scripted legacy KBS


def legacy_jwe(jwk: dict[str, Any], plaintext: bytes) -> dict[str, str]:
    """The 0.1.x resource response, built from primitives (not trustee's jwe module)."""
    n = int.from_bytes(ub(jwk["n"]), "big")
    e = int.from_bytes(ub(jwk["e"]), "big")
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = rsa.RSAPublicNumbers(e, n).public_key().encrypt(cek, padding.PKCS1v15())
    return {
        "protected": '{"alg":"RSA1_5","enc":"A256GCM"}',
        "encrypted_key": u(wrapped),
        "iv": u(iv),
        "ciphertext": u(AESGCM(cek).encrypt(iv, plaintext, None)),
        "tag": "",
    }


@dataclass
class LegacyKbs:
    """A KBS of one legacy generation: checks shapes and the binding, answers like upstream."""

    version: str
    secret: bytes = b"res1val1"
    extra_params: Any = ""
    expected_hash: str = "sha384"
    requests: list[httpx.Request] = field(default_factory=list)
    attested_key: dict[str, Any] | None = None
    wrong_form: bool = False  # answer with the other generation's JWE form

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/kbs/v0/auth":
            body = json.loads(request.content)
            if body["version"] != self.version:
                detail = f"KBS Client Protocol Version Mismatch: expect ={self.version}"
                return httpx.Response(
                    401, json={"type": ERR + "AttestationError", "detail": detail}
                )
            challenge = {"nonce": NONCE, "extra-params": self.extra_params}
            return httpx.Response(200, json=challenge, headers={"Set-Cookie": COOKIE})
        if path == "/kbs/v0/attest":
            return self.attest(request)
        if request.method == "GET" and path.startswith("/kbs/v0/resource/"):
            if self.attested_key is None or "cookie" not in request.headers:
                info = {"type": ERR + "TokenNotFound", "detail": "Attestation Token not found"}
                return httpx.Response(401, json=info)
            return httpx.Response(200, json=self.seal(self.attested_key))
        return httpx.Response(200)

    def attest(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert list(body) == ["tee-pubkey", "tee-evidence"]
        key = body["tee-pubkey"]
        evidence = body["tee-evidence"]
        if self.version == "0.1.0":
            assert isinstance(evidence, str)
            evidence = json.loads(evidence)
        else:
            assert isinstance(evidence, dict)
            assert list(evidence) == sorted(evidence)
        expected = hashlib.new(
            self.expected_hash, sorted_compact({"nonce": NONCE, "tee-pubkey": key})
        ).digest()
        assert base64.b64decode(evidence["report_data"]) == expected
        self.attested_key = key
        return httpx.Response(200, json={"token": TOKEN}, headers={"Set-Cookie": COOKIE})

    def seal(self, key: dict[str, Any]) -> dict[str, str]:
        legacy = self.version in ("0.1.0", "0.1.1")
        if legacy != self.wrong_form:
            return legacy_jwe(key, self.secret)
        return jwe.encrypt(self.secret, key, form="rfc7516-p256")

    def bodies(self, path: str) -> list[bytes]:
        return [r.content for r in self.requests if r.url.path == path]


def client_for(peer: LegacyKbs, **kwargs: Any) -> KbsClient:
    kwargs.setdefault("attesters", sample_only())
    return KbsClient(
        BASE,
        generation=GENERATIONS[peer.version],
        transport=peer.transport(),
        sleep=no_sleep,
        **kwargs,
    )


# ------------------------------------------------------------------------------------------
# Worked examples


def test_rfc_key_transcribed_correctly() -> None:
    # RFC 7638 §3.1 thumbprint of the RFC 7517 A.1 key: proves n was copied without a typo.
    members = {"e": "AQAB", "kty": "RSA", "n": RFC_N}
    thumb = u(hashlib.sha256(sorted_compact(members)).digest())
    assert thumb == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert len(ub(RFC_N)) == 256


def test_g1_binding_worked_example() -> None:
    hashed = binding.canonical_json({"nonce": NONCE, "tee-pubkey": RFC_JWK_RSA1_5})
    assert hashed.decode() == G1_HASHED
    assert len(hashed) == 458
    digest = hashlib.sha384(hashed).digest()
    assert digest.hex() == G1_SHA384
    assert base64.b64encode(digest).decode() == G1_REPORT_DATA
    # The insertion-order variant (a fallback) differs, and the client never produces it.
    insertion = compact_json({"tee-pubkey": RFC_JWK_RSA1_5, "nonce": NONCE}).encode()
    assert hashlib.sha384(insertion).hexdigest() == (
        "441ee123fa3dbe41943abe86653e272b747e1d818a98061dc6661be26c4cd12a"
        "2c41ca147e9f0e7c49dd17515855299b"
    )


@pytest.mark.parametrize(
    ("generation", "body"), [(PROTOCOL_0_1_1, G1_BODY), (PROTOCOL_0_1_0, G0_BODY)]
)
def test_attestation_bodies_worked_example(generation: Generation, body: str) -> None:
    out = generation.attestation(Challenge(NONCE, ""), dict(RFC_JWK_RSA1_5), sample_only(), None)
    assert compact_json(out) == body


@pytest.mark.parametrize(("version", "body"), [("0.1.1", G1_BODY), ("0.1.0", G0_BODY)])
async def test_rsa_attest_bodies_on_the_wire(version: str, body: str) -> None:
    peer = LegacyKbs(version)
    async with client_for(peer) as client:
        # Only the public half of the RFC key is published; the wire body depends on nothing else.
        client.tee_pubkey = dict(RFC_JWK_RSA1_5)
        assert await client.attest() == TOKEN
    assert peer.bodies("/kbs/v0/auth") == [AUTH_BODIES[version]]
    assert peer.bodies("/kbs/v0/attest") == [body.encode()]
    attest = next(r for r in peer.requests if r.url.path == "/kbs/v0/attest")
    assert attest.headers["content-type"] == "application/json"


async def test_g2_ec_worked_example_on_the_wire() -> None:
    hashed = binding.canonical_json(
        {"nonce": NONCE, "tee-pubkey": PROTOCOL_0_2_0.tee_public_jwk(p256_scalar_one())}
    )
    assert hashed.decode() == G2_HASHED
    assert hashlib.sha384(hashed).hexdigest() == G2_SHA384
    assert base64.b64encode(hashlib.sha384(hashed).digest()).decode() == G2_REPORT_DATA
    peer = LegacyKbs("0.2.0")
    async with client_for(peer, tee_key=p256_scalar_one()) as client:
        assert await client.attest() == TOKEN
    assert peer.bodies("/kbs/v0/auth") == [AUTH_BODIES["0.2.0"]]
    assert peer.bodies("/kbs/v0/attest") == [G2_BODY.encode()]


def test_g2_rsa_oaep_worked_example() -> None:
    jwk = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": RFC_N, "e": "AQAB"}
    out = PROTOCOL_0_2_0.attestation(Challenge(NONCE, ""), jwk, sample_only(), None)
    digest = base64.b64decode(out["tee-evidence"]["report_data"])
    assert digest.hex() == (
        "540d75d8bb1b24e276e4cf8dba5fb557d6abc5ae22dee9164f1b4687e6dd9bc3"
        "07ed48fd06b45222c9a7464b7a517269"
    )
    assert out["tee-evidence"]["report_data"] == (
        "VA112LsbJOJ25M+Nul+1V9arxa4i3ukWTxtGh+bdm8MH7Uj9BrRSIsmnRkt6UXJp"
    )


# ------------------------------------------------------------------------------------------
# generations: registry, keys, hash selection


def test_generation_registry() -> None:
    assert list(GENERATIONS) == ["0.1.0", "0.1.1", "0.2.0", "0.4.0"]
    assert GENERATIONS["0.1.0"] is PROTOCOL_0_1_0
    assert GENERATIONS["0.4.0"] is PROTOCOL_0_4_0
    assert {v: g.jwe_form for v, g in GENERATIONS.items()} == jwe.FORM_BY_PROTOCOL
    assert [g.supports_init_data for g in GENERATIONS.values()] == [False, False, False, True]
    assert [g.default_attestation_policy_id for g in GENERATIONS.values()] == [
        "default",
        "default",
        "default",
        "default_cpu",
    ]


@pytest.mark.parametrize("version", LEGACY)
def test_auth_bodies(version: str) -> None:
    assert (
        compact_json(GENERATIONS[version].auth_request("sample")).encode() == AUTH_BODIES[version]
    )


@pytest.mark.parametrize("version", ["0.1.0", "0.1.1"])
def test_g0_g1_keys_are_rsa1_5(version: str) -> None:
    generation = GENERATIONS[version]
    client = KbsClient(BASE, generation=generation, attesters=sample_only())
    assert isinstance(client.tee_key, rsa.RSAPrivateKey)
    assert client.tee_key.key_size == 2048
    assert list(client.tee_pubkey) == ["kty", "alg", "n", "e"]
    assert (client.tee_pubkey["kty"], client.tee_pubkey["alg"]) == ("RSA", "RSA1_5")
    assert len(ub(client.tee_pubkey["n"])) == 256 and client.tee_pubkey["e"] == "AQAB"
    # An RSA key from --tee-key-file is exported as RSA1_5 too; EC keys do not exist there.
    assert generation.tee_public_jwk(generate_tee_key("rsa"))["alg"] == "RSA1_5"
    with pytest.raises(TeeKeyError, match="RSA only"):
        KbsClient(BASE, generation=generation, tee_key=p256_scalar_one(), attesters=sample_only())


def test_g2_keys() -> None:
    client = KbsClient(BASE, generation=PROTOCOL_0_2_0, attesters=sample_only())
    assert isinstance(client.tee_key, ec.EllipticCurvePrivateKey)
    assert list(client.tee_pubkey) == ["kty", "crv", "alg", "x", "y"]
    assert client.tee_pubkey["crv"] == "P-256"
    assert client.tee_pubkey["alg"] == "ECDH-ES+A256KW"
    rsa_jwk = PROTOCOL_0_2_0.tee_public_jwk(generate_tee_key("rsa"))
    assert (list(rsa_jwk), rsa_jwk["alg"]) == (["kty", "alg", "n", "e"], "RSA-OAEP-256")
    with pytest.raises(TeeKeyError, match="must be P-256, not P-521"):
        KbsClient(
            BASE,
            generation=PROTOCOL_0_2_0,
            tee_key=generate_tee_key("ec-p521"),
            attesters=sample_only(),
        )
    with pytest.raises(TeeKeyError, match="EC P-256 or RSA"):
        KbsClient(
            BASE,
            generation=PROTOCOL_0_2_0,
            tee_key=ed25519.Ed25519PrivateKey.generate(),
            attesters=sample_only(),
        )


def test_g0_requires_string_extra_params() -> None:
    with pytest.raises(ResponseDeserializationError, match="must be a string"):
        PROTOCOL_0_1_0.attestation(
            Challenge(NONCE, {"selected-hash-algorithm": "sha384"}),
            dict(RFC_JWK_RSA1_5),
            sample_only(),
            None,
        )


@pytest.mark.parametrize("version", ["0.1.1", "0.2.0"])
async def test_selected_hash_algorithm_is_honoured(version: str) -> None:
    peer = LegacyKbs(
        version, extra_params={"selected-hash-algorithm": "SHA-512"}, expected_hash="sha512"
    )
    async with client_for(peer) as client:
        assert await client.attest() == TOKEN
    extras: list[Any] = ["", "anything", [1], None, {}]
    for extra in extras:
        out = GENERATIONS[version].attestation(
            Challenge(NONCE, extra), dict(RFC_JWK_RSA1_5), sample_only(), None
        )
        assert out["tee-evidence"]["report_data"] == G1_REPORT_DATA
    with pytest.raises(KbsClientError, match="unsupported selected-hash-algorithm"):
        GENERATIONS[version].attestation(
            Challenge(NONCE, {"selected-hash-algorithm": "sm3"}),
            dict(RFC_JWK_RSA1_5),
            sample_only(),
            None,
        )


# ------------------------------------------------------------------------------------------
# full flows against the scripted peer


@pytest.mark.parametrize("version", LEGACY)
async def test_get_resource_flow(version: str) -> None:
    peer = LegacyKbs(version)
    async with client_for(peer) as client:
        assert await client.get_resource("default/kbsres1/key1") == b"res1val1"
    assert [f"{r.method} {r.url.path}" for r in peer.requests] == [
        "GET /kbs/v0/resource/default/kbsres1/key1",
        "POST /kbs/v0/auth",
        "POST /kbs/v0/attest",
        "GET /kbs/v0/resource/default/kbsres1/key1",
    ]


@pytest.mark.parametrize("version", LEGACY)
async def test_device_attesters_are_left_out(version: str) -> None:
    peer = LegacyKbs(version)
    attesters = AttesterSet(primary=SampleAttester(), devices=(SampleDeviceAttester(),))
    async with client_for(peer, attesters=attesters) as client:
        await client.attest()
    body = json.loads(peer.bodies("/kbs/v0/attest")[0])
    assert list(body) == ["tee-pubkey", "tee-evidence"]
    assert "sampledevice" not in peer.bodies("/kbs/v0/attest")[0].decode()


@pytest.mark.parametrize("version", LEGACY)
async def test_init_data_is_refused(version: str) -> None:
    with pytest.raises(KbsClientError, match=f"protocol {version} has no init-data"):
        KbsClient(BASE, generation=GENERATIONS[version], init_data="x = 1", attesters=sample_only())
    peer = LegacyKbs(version)
    async with client_for(peer) as client:
        with pytest.raises(KbsClientError, match=r"INIT_DATA needs protocol 0\.4\.0"):
            await client.attest("algorithm = 'sha256'")
    assert peer.requests == []  # refused before any request, not after five retries
    with pytest.raises(KbsClientError, match="no init-data"):
        GENERATIONS[version].attestation(
            Challenge(NONCE, ""),
            dict(RFC_JWK_RSA1_5),
            sample_only(),
            object(),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("version", "match"),
    [("0.1.1", r"not JSON text.*RFC 7516"), ("0.1.0", "not JSON text"), ("0.2.0", "legacy 0")],
)
async def test_wrong_jwe_form_fails_clearly(version: str, match: str) -> None:
    peer = LegacyKbs(version, wrong_form=True)
    # RSA in every generation, so that the peer can build either form for it.
    async with client_for(peer, tee_key=generate_tee_key("rsa")) as client:
        with pytest.raises(DecryptResponseError, match=match) as info:
            await client.get_resource("default/kbsres1/key1")
    assert str(info.value).startswith("decrypt KBS response body failed: ")


async def test_passport_path_uses_the_generation() -> None:
    key = generate_tee_key("rsa")
    jwk = public_jwk(key, alg="RSA1_5")

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        return httpx.Response(200, json=legacy_jwe(jwk, b"passport"))

    async with KbsClient(
        BASE,
        generation=PROTOCOL_0_1_1,
        tee_key=key,
        attesters=sample_only(),
        transport=httpx.MockTransport(handle),
    ) as client:
        assert await client.get_resource_with_token("a/b/c", TOKEN) == b"passport"
        with pytest.raises(TeeKeyError):
            await client.get_resource_with_token("a/b/c", TOKEN, p256_scalar_one())


# ------------------------------------------------------------------------------------------
# legacy admin token


def verify_admin_token(token: str, public: ed25519.Ed25519PublicKey) -> tuple[bytes, bytes]:
    header, claims, signature = token.split(".")
    public.verify(ub(signature), f"{header}.{claims}".encode())
    return ub(header), ub(claims)


def test_legacy_admin_token_exact() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    header, claims = verify_admin_token(
        legacy_admin_token(key, now=1_736_512_345), key.public_key()
    )
    assert header == b'{"alg":"EdDSA","typ":"JWT"}'
    assert claims == b'{"iat":1736512345,"exp":1736519545,"nbf":1736512345}'
    with pytest.raises(InvalidSignature):
        verify_admin_token(
            legacy_admin_token(key), ed25519.Ed25519PrivateKey.generate().public_key()
        )


async def test_admin_requests_carry_fresh_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    clock = iter([1000.0, 1005.0])
    # Only the client module's clock: httpx and anyio keep the real one.
    monkeypatch.setattr(generations_module, "time", SimpleNamespace(time=lambda: next(clock)))
    async with KbsClient(
        BASE, admin_key=key, attesters=sample_only(), transport=httpx.MockTransport(handle)
    ) as client:
        await client.set_resource("a/b/c", b"x")
        await client.set_resource_policy("package policy")
    claims = []
    for request in seen:
        scheme, token = request.headers["authorization"].split(" ")
        assert scheme == "Bearer"
        claims.append(json.loads(verify_admin_token(token, key.public_key())[1]))
    assert claims == [
        {"iat": 1000, "exp": 8200, "nbf": 1000},
        {"iat": 1005, "exp": 8205, "nbf": 1005},
    ]
    assert all("role" not in c and "iss" not in c and "aud" not in c for c in claims)


def test_admin_token_and_key_are_exclusive() -> None:
    with pytest.raises(KbsClientError, match="not both"):
        KbsClient(
            BASE,
            admin_token="t",
            admin_key=ed25519.Ed25519PrivateKey.generate(),
            attesters=sample_only(),
        )


# ------------------------------------------------------------------------------------------
# CLI


def parse(argv: list[str]) -> Any:
    return build_parser().parse_args(argv)


def test_cli_protocol_option() -> None:
    assert parse(["attest"]).protocol == "0.4.0"
    for version in ("0.1.0", "0.1.1", "0.2.0", "0.4.0"):
        assert parse(["--protocol", version, "attest"]).protocol == version
    for bad in (["--protocol", "0.3.0", "attest"], ["attest", "--protocol", "0.1.1"]):
        with pytest.raises(SystemExit) as info:
            parse(bad)
        assert info.value.code == 2


def test_cli_auth_private_key_option(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["config", "--auth-private-key", "k.pem", "delete-resource", "--path", "a/b/c"])
    assert (args.auth_private_key, args.admin_token_file) == ("k.pem", None)
    assert parse(["config", "delete-resource", "--path", "a/b/c"]).auth_private_key is None
    both = ["config", "--auth-private-key", "k", "--admin-token-file", "t"]
    assert cli.main([*both, "delete-resource", "--path", "a/b/c"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.fixture
def legacy_peer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[LegacyKbs]:
    """Installs a LegacyKbs of whatever version the CLI asks for; yields the created peers."""
    peers: list[LegacyKbs] = []

    def factory(*args: Any, **kwargs: Any) -> KbsClient:
        peer = LegacyKbs(kwargs.get("generation", PROTOCOL_0_4_0).version)
        peers.append(peer)
        kwargs["transport"] = peer.transport()
        kwargs.setdefault("attesters", sample_only())
        return KbsClient(*args, **kwargs)

    monkeypatch.setattr(cli, "KbsClient", factory)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return peers


@pytest.mark.parametrize("version", LEGACY)
def test_cli_get_resource_legacy(
    legacy_peer: list[LegacyKbs], version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--protocol", version, "get-resource", "--path", "default/kbsres1/key1"])
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "cmVzMXZhbDE=\n", "")
    assert legacy_peer[0].bodies("/kbs/v0/auth") == [AUTH_BODIES[version]]


def test_cli_attest_legacy_with_rsa_key_file(
    legacy_peer: list[LegacyKbs], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = generate_tee_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (tmp_path / "tee.pem").write_bytes(pem)
    code = cli.main(["--protocol", "0.1.1", "attest", "--tee-key-file", "tee.pem"])
    assert (code, capsys.readouterr().out) == (0, TOKEN + "\n")
    assert legacy_peer[0].attested_key == public_jwk(key, alg="RSA1_5")


def test_cli_legacy_init_data_is_an_error(
    legacy_peer: list[LegacyKbs], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--protocol", "0.1.1", "attest", "algorithm = 'sha256'"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        "trustee-client: KBS protocol 0.1.1 has no init-data; INIT_DATA needs protocol 0.4.0\n"
    )


def ed25519_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("protocol", [[], ["--protocol", "0.1.1"]])
def test_cli_config_signs_with_auth_private_key(
    legacy_peer: list[LegacyKbs],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    protocol: list[str],
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "private.key").write_bytes(ed25519_pem(key))
    (tmp_path / "policy.rego").write_text("package policy\ndefault allow = true\n")
    # A token file in the default location must not be used when a key is given.
    compose = tmp_path / "kbs" / "config" / "docker-compose"
    compose.mkdir(parents=True)
    (compose / "admin-token").write_text("stale")
    argv = [
        *protocol,
        "config",
        "--auth-private-key",
        "private.key",
        "set-attestation-policy",
        "--policy-file",
        "policy.rego",
    ]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    policy_b64 = base64.b64encode(b"package policy\ndefault allow = true\n").decode()
    assert (code, err) == (0, "")
    assert out == f"Set attestation policy success \n policy: {policy_b64}\n"
    (request,) = legacy_peer[0].requests
    token = request.headers["authorization"].removeprefix("Bearer ")
    header, claims = verify_admin_token(token, key.public_key())
    assert header == b'{"alg":"EdDSA","typ":"JWT"}'
    parsed = json.loads(claims)
    assert list(parsed) == ["iat", "exp", "nbf"]
    assert parsed["exp"] - parsed["iat"] == 7200 and parsed["nbf"] == parsed["iat"]
    assert abs(parsed["iat"] - time.time()) < 60
    # kbs-client of the legacy era uploaded to policy id "default" when --id was omitted.
    expected_id = "default" if protocol else "default_cpu"
    assert json.loads(request.content)["policy_id"] == expected_id


def test_cli_auth_private_key_must_be_ed25519(
    legacy_peer: list[LegacyKbs], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec_key = generate_tee_key("ec-p256")
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    (tmp_path / "junk.pem").write_text("not a key")
    for name, match in (
        ("ec.pem", "an Ed25519 private key is needed"),
        ("junk.pem", "cannot parse"),
    ):
        code = cli.main(
            ["config", "--auth-private-key", name, "delete-resource", "--path", "a/b/c"]
        )
        out, err = capsys.readouterr()
        assert (code, out) == (1, "")
        assert err.startswith(f"trustee-client: --auth-private-key {name}: ") and match in err
    code = cli.main(
        ["config", "--auth-private-key", "missing.pem", "delete-resource", "--path", "x"]
    )
    assert code == 1 and "Failed to read: missing.pem" in capsys.readouterr().err
    assert legacy_peer == []
