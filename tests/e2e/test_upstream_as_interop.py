"""Upstream's own `restful-as` behind our KBS (`coco_as_restful`) and under our client.

The binary is built from upstream's source on the machine running the tests (it is not part of
this repository; `--no-default-features --features restful-bin` has the sample verifier). Point
TRUSTEE_RESTFUL_AS at it to run these tests. They show that the wire between a KBS and an AS is
upstream's: our KBS forwards a guest's evidence in the body upstream's AS reads, and accepts the
token upstream signs, its key fetched from the AS's JWK set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, client_env, free_port, run_kbs
from trustee.client.attesters import detect_attesters
from trustee.client.cli import ALLOW_ALL_POLICY
from trustee.client.kbs import KbsClient

UPSTREAM = os.environ.get("TRUSTEE_RESTFUL_AS")
SECRET = b"from upstream's AS"
AS_CONFIG = {
    "storage_backend": {"storage_type": "Memory"},
    "rvps_config": {"type": "BuiltIn"},
    "attestation_token_broker": {"duration_min": 5},
}


@asynccontextmanager
async def upstream_as(tmp_path: Path) -> AsyncIterator[str]:
    if not UPSTREAM or not os.access(UPSTREAM, os.X_OK):
        pytest.skip("set TRUSTEE_RESTFUL_AS to an upstream restful-as binary to run this test")
    config = tmp_path / "as-config.json"
    config.write_text(json.dumps(AS_CONFIG))
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUST_")}
    argv = [UPSTREAM, "--config-file", str(config), "--socket", url.removeprefix("http://")]
    with (tmp_path / "upstream-as.log").open("wb") as log:
        process = await trio.lowlevel.open_process(argv, stdout=log, stderr=log, env=env)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                with trio.fail_after(20):
                    while True:
                        try:
                            if (await http.get("/healthz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await trio.sleep(0.1)
            yield url
        finally:
            process.terminate()
            await process.wait()


async def test_our_kbs_serves_a_guest_through_upstreams_as(tmp_path: Path) -> None:
    async with upstream_as(tmp_path) as as_url:
        config = DEV_CONFIG.replace(
            'type = "coco_as_builtin"', f'type = "coco_as_restful"\nurl = "{as_url}"'
        )
        async with run_kbs(config, tmp_path) as kbs, KbsClient(kbs.url) as admin:
            await admin.set_resource("default/interop/upstream-as", SECRET)
            await admin.set_resource_policy(ALLOW_ALL_POLICY)
            async with KbsClient(kbs.url, attesters=detect_attesters({})) as guest:
                assert await guest.get_resource("default/interop/upstream-as") == SECRET


async def test_our_client_attests_to_upstreams_as(tmp_path: Path) -> None:
    async with upstream_as(tmp_path) as as_url:
        argv = [sys.executable, "-m", "trustee.client.cli", "as", "attest", "--url", as_url]
        done = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [*argv, "--tee", "sample", "--claims"],
                capture_output=True,
                text=True,
                timeout=60,
                env=client_env(),
                check=False,
            )
        )
        assert done.returncode == 0, done.stderr
        claims = json.loads(done.stdout)
        assert claims["submods"]["cpu0"]["ear.status"] in (
            "affirming",
            "warning",
            "contraindicated",
        )
