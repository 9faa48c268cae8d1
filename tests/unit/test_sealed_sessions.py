"""Sealed-cookie sessions: round trips, refusals, rotation, sizes, and no memory per session."""

from __future__ import annotations

import base64
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import vectors_dir
from tests.unit.test_kbs_tokens import ALLOW, attest_reply, cookie_of, request
from trustee import jsonfast
from trustee.assemble import assemble
from trustee.config import ConfigError, parse
from trustee.crypto.jwk import generate_tee_key, tee_public_jwk
from trustee.kbs import Kbs, Reply
from trustee.plugins.base import PluginRequest
from trustee.protocol import jwe
from trustee.protocol.rcar import Session
from trustee.storage.sealed_sessions import SealedSessions
from trustee.storage.session_keys import parse_key
from trustee.storage.sessions import SessionRefused

NOW = 1_800_000_000.0
KEY_A, KEY_B = b"A" * 32, b"B" * 32
BASE = """
[http_server]
insecure_http = true
[admin]
[attestation_token]
insecure_header_jwk = true
[attestation_service]
[[plugins]]
name = "resource"
"""


def fresh(tee: str = "sample", generation: str = "0.4.0") -> Session:
    return Session(
        id="0123456789abcdef0123456789abcdef",
        version=generation,
        tee=tee,
        nonce=base64.b64encode(bytes(32)).decode(),
        expires_at=NOW + 300.5,
        generation=generation,
    )


def sealer(*keys: bytes, now: float = NOW) -> SealedSessions:
    return SealedSessions(list(keys), clock=lambda: now)


async def test_auth_state_round_trips_in_the_cookie() -> None:
    store = sealer(KEY_A)
    for generation in ("0.1.1", "0.2.0", "0.4.0"):
        session = fresh("tdx", generation)
        await store.insert(session)
        assert session.cookie is not None and session.cookie != session.id
        opened = store.open(session.cookie)
        assert (opened.id, opened.tee, opened.generation, opened.nonce) == (
            session.id, "tdx", generation, session.nonce,
        )  # fmt: skip
        # Whole seconds, as the Set-Cookie Expires attribute says.
        assert opened.expires_at == session.expires_at == NOW + 300
        assert not opened.attested


async def test_attested_state_carries_the_claims_not_the_nonce() -> None:
    store = sealer(KEY_A)
    session = fresh()
    await store.insert(session)
    claims = {"submods": {"cpu0": {"ear.status": "affirming"}}, "exp": NOW + 300}
    after = store.attested(session, jsonfast.dumps_str(claims), "tok-id", "untrusted signer")
    assert after.cookie is not None
    opened = store.open(after.cookie)
    assert opened.attested and opened.nonce == ""
    assert json.loads(opened.attested_claims_json or "") == claims
    assert (opened.token_ref, opened.verifier_refusal) == ("tok-id", "untrusted signer")
    assert opened.expires_at == session.expires_at


@pytest.mark.parametrize(
    ("alter", "kind"),
    [
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "tampered"),  # the tag
        (lambda raw: raw[:30] + bytes([raw[30] ^ 1]) + raw[31:], "tampered"),  # ciphertext
        (lambda raw: raw[:6] + bytes([raw[6] ^ 1]) + raw[7:], "tampered"),  # the expiry
        (lambda raw: raw[:2] + bytes([raw[2] ^ 1]) + raw[3:], "unknown-key"),  # the key id
        (lambda raw: raw[:20], "malformed"),
    ],
)
async def test_altered_cookies_are_refused_with_the_reason(alter: Any, kind: str) -> None:
    store = sealer(KEY_A)
    session = fresh()
    await store.insert(session)
    assert session.cookie is not None
    raw = base64.urlsafe_b64decode(session.cookie + "=" * (-len(session.cookie) % 4))
    bad = base64.urlsafe_b64encode(alter(raw)).decode().rstrip("=")
    with pytest.raises(SessionRefused) as refused:
        store.open(bad)
    assert refused.value.kind == kind
    assert await store.get(bad) is None


async def test_expiry_wrong_key_and_rotation() -> None:
    old = sealer(KEY_A)
    session = fresh()
    await old.insert(session)
    cookie = session.cookie
    assert cookie is not None
    with pytest.raises(SessionRefused, match="expired") as refused:
        sealer(KEY_A, now=NOW + 300).open(cookie)
    assert refused.value.kind == "expired"
    with pytest.raises(SessionRefused, match="key this server does not hold") as refused:
        sealer(KEY_B).open(cookie)
    assert refused.value.kind == "unknown-key"
    # Rotation: the new key seals, the old one still opens what it sealed.
    rotated = sealer(KEY_B, KEY_A)
    assert rotated.open(cookie).id == session.id
    newer = fresh()
    await rotated.insert(newer)
    assert newer.cookie is not None
    assert sealer(KEY_B).open(newer.cookie).id == newer.id
    with pytest.raises(SessionRefused):
        old.open(newer.cookie)


def test_key_files_accept_raw_base64_and_hex(tmp_path: Path) -> None:
    key = bytes(range(32))
    assert parse_key(key) == key
    assert parse_key(base64.b64encode(key) + b"\n") == key
    assert parse_key(base64.urlsafe_b64encode(key).rstrip(b"=")) == key
    assert parse_key(key.hex().encode()) == key
    with pytest.raises(ValueError, match="not a 32-byte key"):
        parse_key(b"too short")
    good, bad = tmp_path / "new.key", tmp_path / "bad.key"
    good.write_bytes(base64.b64encode(key))
    bad.write_text("secret\n")
    config = parse(f'session_key = ["{good}"]\n' + BASE)
    assert config.session_key_material == [key]
    with pytest.raises(ConfigError, match=r"session_key.*bad\.key.*not a 32-byte key"):
        parse(f'session_key = ["{good}", "{bad}"]\n' + BASE)
    with pytest.raises(ConfigError, match=r"session_key.*missing\.key: cannot read"):
        parse(f'session_key = "{tmp_path / "missing.key"}"\n' + BASE)


def test_key_file_from_the_environment_when_the_config_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    env_file, config_file = tmp_path / "env.key", tmp_path / "config.key"
    env_file.write_bytes(base64.b64encode(key))
    config_file.write_bytes(other.hex().encode())
    monkeypatch.setenv("KBS_SESSION_KEY_FILE", str(env_file))
    assert parse(BASE).session_key_material == [key]
    assert parse(BASE).session_key_files == [str(env_file)]
    # A key the config names wins over the environment's.
    assert parse(f'session_key = "{config_file}"\n' + BASE).session_key_material == [other]
    monkeypatch.setenv("KBS_SESSION_KEY_FILE", f"{env_file}, {config_file}")
    assert parse(BASE).session_key_material == [key, other]
    monkeypatch.setenv("KBS_SESSION_KEY_FILE", str(tmp_path / "gone.key"))
    with pytest.raises(ConfigError, match=r"KBS_SESSION_KEY_FILE.*gone\.key: cannot read"):
        parse(BASE)
    monkeypatch.setenv("KBS_SESSION_KEY_FILE", f"{env_file},")
    with pytest.raises(ConfigError, match=r"KBS_SESSION_KEY_FILE.*names no file"):
        parse(BASE)


# -- through the KBS --------------------------------------------------------------------------


async def prepared(config: str = BASE) -> Kbs:
    kbs = await assemble(parse(config))
    await kbs.resource_policy.set(ALLOW)
    await kbs.plugins["resource"].handle(PluginRequest("POST", ["r", "t", "k"], {}, b"secret"))
    return kbs


def error(reply: Reply) -> tuple[str, str]:
    doc = json.loads(reply.body)
    return str(doc["type"]).rsplit("/", 1)[1], str(doc.get("reason", ""))


async def test_a_kbs_without_session_store_serves_the_flow() -> None:
    kbs = await prepared()
    assert isinstance(kbs.sessions, SealedSessions)
    key = generate_tee_key()
    auth_cookie, r = await attest_reply(kbs, key)
    assert r.status == 200
    attested = cookie_of(r)
    assert attested != auth_cookie
    # The auth-time cookie is not attested: the resource path says so.
    r = await kbs.handle(request("GET", "resource/r/t/k", cookie=auth_cookie))
    assert r.status == 401 and error(r) == (
        "TokenNotFound",
        "the session cookie is not attested yet; call /attest first; "
        "no attested session cookie and no Bearer token",
    )
    r = await kbs.handle(request("GET", "resource/r/t/k", cookie=attested))
    assert r.status == 200 and jwe.decrypt(json.loads(r.body), key) == b"secret"


async def test_refused_cookies_get_upstreams_errors_with_the_reason() -> None:
    kbs = await prepared()
    other = await prepared()  # another server: another generated session key
    _, r = await attest_reply(other, generate_tee_key())
    foreign = cookie_of(r)
    r = await kbs.handle(request("GET", "resource/r/t/k", cookie=foreign))
    kind, reason = error(r)
    assert r.status == 401 and kind == "TokenNotFound"
    assert reason.startswith("session cookie refused: the session cookie was sealed with a key")
    tampered = foreign[:-2] + ("AA" if foreign[-2:] != "AA" else "BB")
    r = await kbs.handle(request("POST", "attest", b"{}", tampered))
    kind, reason = error(r)
    assert r.status == 401 and kind == "AttestationError"
    assert reason.startswith("session cookie refused: ")
    r = await kbs.handle(request("POST", "attest", b"{}", "not-a-cookie"))
    assert error(r)[1] == "session cookie refused: the session cookie is malformed: " + (
        "shorter than a sealed session"
    )


async def test_expired_sealed_session_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    kbs = await prepared()
    _, r = await attest_reply(kbs, generate_tee_key())
    cookie = cookie_of(r)
    assert isinstance(kbs.sessions, SealedSessions)
    later = kbs.sessions.open(cookie).expires_at
    monkeypatch.setattr(kbs.sessions, "_now", lambda: later)
    r = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie))
    assert r.status == 401 and "session cookie refused: the session expired" in error(r)[1]


async def test_repeated_attest_re_signs_the_sealed_claims() -> None:
    kbs = await prepared()
    _, first = await attest_reply(kbs, generate_tee_key())
    cookie = cookie_of(first)
    again = await kbs.handle(request("POST", "attest", b"ignored", cookie))
    assert again.status == 200 and cookie_of(again) == cookie
    token_a, token_b = (json.loads(x.body)["token"] for x in (first, again))
    payload = [t.split(".")[1] for t in (token_a, token_b)]
    assert payload[0] == payload[1] and token_a != token_b


# -- sizes ------------------------------------------------------------------------------------


TRUST_VECTOR = dict.fromkeys(
    ("instance-identity", "configuration", "executables", "file-system", "hardware",
     "runtime-opaque", "storage-opaque", "sourced-data"),
    2,
)  # fmt: skip


def ear_claims(annotated: dict[str, Any]) -> str:
    return jsonfast.dumps_str(
        {
            "eat_profile": "tag:github.com,2024:confidential-containers/Trustee",
            "iat": int(NOW),
            "ear.verifier-id": {"developer": "trustee-py", "build": "0.1.0"},
            "submods": {
                "cpu0": {
                    "ear.status": "affirming",
                    "ear.trustworthiness-vector": TRUST_VECTOR,
                    "ear.appraisal-policy-id": "default_cpu",
                    "ear.veraison.annotated-evidence": annotated,
                }
            },
            "exp": int(NOW) + 300,
            "iss": "CoCo-Attestation-Service",
        }
    )


def runtime_claims() -> dict[str, Any]:
    key = generate_tee_key()
    return {"runtime_data_claims": {"nonce": "n" * 44, "tee-pubkey": tee_public_jwk(key)}}


async def test_cookie_sizes() -> None:
    store = sealer(KEY_A)
    session = fresh()
    await store.insert(session)
    assert session.cookie is not None and len(session.cookie) < 256

    kbs = await prepared()
    _, r = await attest_reply(kbs, generate_tee_key())
    sample = cookie_of(r)
    assert len(sample) < 1500, len(sample)

    tdx_golden = vectors_dir() / "trustee/deps/verifier/test_data/parse_tdx_claims_expected.json"
    tdx = json.loads(tdx_golden.read_text())  # quote v4 + a td-shim CC event log of 5 events
    assert len(tdx["uefi_event_logs"]) == 5
    after = store.attested(session, ear_claims({"tdx": tdx, **runtime_claims()}), "j", None)
    assert after.cookie is not None
    # 16 KiB of claims, mostly base64 event data: deflate keeps the cookie near 5 KiB, within
    # our request-head limit and common proxies' 8 KiB header lines.
    assert len(after.cookie) < 6 * 1024, len(after.cookie)
    reopened = store.open(after.cookie)
    claims = json.loads(reopened.attested_claims_json or "")
    assert claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"] == tdx


async def test_memory_stays_flat_over_50000_sessions() -> None:
    kbs = await prepared()
    body = b'{"version":"0.4.0","tee":"sample","extra-params":""}'
    key = generate_tee_key()

    async def round_of(n: int) -> None:
        for i in range(n):
            r = await kbs.handle(request("POST", "auth", body))
            assert r.status == 200
            if i % 500 == 0:
                _, a = await attest_reply(kbs, key)
                g = await kbs.handle(request("GET", "resource/r/t/k", cookie=cookie_of(a)))
                assert g.status == 200

    await round_of(2_000)  # warm caches, interned strings, policy compilation
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await round_of(50_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A stored session costs about 1 KiB: 50,000 of them would be ~50 MiB.
    assert grown < 1024 * 1024, f"{grown} bytes kept after 50,000 sessions"
