"""The native offload threads in a real server: many guests at once get correct tokens and
resources (EC keys sealed natively, RSA keys by the reference path), and the thread count is
configurable and validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, free_port, run_kbs, run_module
from trustee.client.attesters import AttesterSet, SampleAttester
from trustee.client.kbs import PROTOCOL_0_4_0, Challenge, compact_json
from trustee.crypto.b64 import b64url_encode
from trustee.crypto.jwk import TeeKeyKind, generate_tee_key, public_key_from_jwk, tee_public_jwk
from trustee.crypto.jws import split_compact, verify_signature
from trustee.protocol import jwe

SECRET = b"offloaded secret"
ALLOW = (
    'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
)
KINDS: tuple[TeeKeyKind, ...] = ("ec-p256", "ec-p521", "rsa")


async def seed(kbs: RunningKbs) -> None:
    async with kbs.client() as http:
        r = await http.post("/kbs/v0/resource/default/offload/one", content=SECRET)
        assert r.status_code == 200, r.text
        policy = {"policy": b64url_encode(ALLOW.encode())}
        r = await http.post("/kbs/v0/resource-policy", json=policy)
        assert r.status_code == 200, r.text


async def flow(
    kbs: RunningKbs,
    kind: TeeKeyKind,
    path: str = "default/offload/one",
    expected: bytes = SECRET,
) -> None:
    key = generate_tee_key(kind)
    async with kbs.client() as http:
        r = await http.post(
            "/kbs/v0/auth", json={"version": "0.4.0", "tee": "sample", "extra-params": ""}
        )
        assert r.status_code == 200, r.text
        body = PROTOCOL_0_4_0.attestation(
            Challenge(nonce=r.json()["nonce"], extra_params=""),
            tee_public_jwk(key),
            AttesterSet(SampleAttester()),
            None,
        )
        r = await http.post(
            "/kbs/v0/attest",
            content=compact_json(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text
        token = split_compact(r.json()["token"])
        verify_signature(
            "ES256",
            public_key_from_jwk(token.header["jwk"]),
            token.signing_input,
            token.signature,
        )
        assert token.claims()["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
        r = await http.get(f"/kbs/v0/resource/{path}")
        assert r.status_code == 200, r.text
        assert jwe.decrypt(r.json(), key) == expected


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


@pytest.mark.parametrize("threads", ["2", "0"])
async def test_many_guests_at_once(tmp_path: Path, threads: str) -> None:
    async with run_kbs(DEV_CONFIG, tmp_path, env={"TRUSTEE_OFFLOAD_THREADS": threads}) as kbs:
        await seed(kbs)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i in range(48):
                    nursery.start_soon(flow, kbs, KINDS[i % len(KINDS)])
        assert kbs.alive
        started = "policy, signing and sealing run on 2 native thread(s)" in kbs.log_text()
        assert started == (threads == "2"), kbs.log_text()
        async with kbs.client() as http:
            metrics = (await http.get("/metrics")).text
        native = metric(metrics, 'trustee_offload_calls_total{where="native_thread"}')
        on_loop = metric(metrics, 'trustee_offload_calls_total{where="event_loop"}')
        # Four calls per flow: two policies, the signature, and (EC keys) the sealing.
        assert native + on_loop == 48 * 4 - 16
        if threads == "2":
            assert native > 0 and metric(metrics, "trustee_offload_threads") == 2
        else:
            assert native == 0 and metric(metrics, "trustee_offload_threads") == 0
        assert "Traceback" not in kbs.log_text()


@pytest.mark.parametrize(
    ("raw", "why"),
    [("two", "'two' is not a whole number of threads"), ("65", "'65': at most 64 threads")],
)
async def test_a_bad_thread_count_stops_start_up(tmp_path: Path, raw: str, why: str) -> None:
    config = tmp_path / "kbs.toml"
    config.write_text(DEV_CONFIG.replace("{port}", str(free_port())))
    code, _, err = await run_module(
        "trustee.cli", "serve", "--config", str(config), env={"TRUSTEE_OFFLOAD_THREADS": raw}
    )
    assert code == 2
    assert f"trustee: TRUSTEE_OFFLOAD_THREADS: {why}" in err
