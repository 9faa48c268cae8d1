"""Sessions and stored data in Redis over TLS (rediss://), with a private CA named by the
backend's ca_file, against a real server and a TLS-only redis-server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, free_port, run_kbs, run_module
from tests.e2e.test_offload import KINDS, flow, seed
from tests.support.receivers import make_redis_tls, redis_server

pytestmark = pytest.mark.needs_redis

BIG = bytes(range(256)) * (6 << 12)  # 6 MiB
LARGER_BODIES = "insecure_http = true\npayload_request_size = 8"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_sessions_and_storage_on_redis_over_tls(tmp_path: Path) -> None:
    tls = make_redis_tls(tmp_path / "tls")
    with redis_server(tmp_path, tls=tls) as redis:
        untrusting_text = (
            'session_storage_type = "Redis"\n'
            + DEV_CONFIG.replace(
                "insecure_http = true", "insecure_http = true\npayload_request_size = 8"
            )
            + f"""
[storage_backend]
storage_type = "Redis"
[storage_backend.backends.redis]
url = "{redis.url(3)}"
"""
        )
        text = untrusting_text + f'ca_file = "{tls.ca}"\n'
        async with run_kbs(text, tmp_path) as kbs:
            await seed(kbs)
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(flow, kbs, KINDS[i % len(KINDS)])
            async with kbs.client() as http:
                assert (await http.get("/readyz")).status_code == 200
                # Several MiB, far above one RESP reply of the audit sink's reader.
                r = await http.post("/kbs/v0/resource/default/offload/big", content=BIG)
                assert r.status_code == 200, r.text
            await flow(kbs, "ec-p256", "default/offload/big", BIG)
        # The resource went through TLS into Redis, readable by an independent client.
        assert any("offload" in key for key in redis.cli("KEYS", "*", db=3))
        # Without the CA the server cannot reach its stores: it says so in one line and stops.
        config = tmp_path / "untrusting.toml"
        config.write_text(untrusting_text.replace("{port}", str(free_port())))
        code, _, err = await run_module(
            "trustee.cli", "serve", "--config", str(config), env={"SSL_CERT_FILE": ""}
        )
        assert code != 0
        refusal = [line for line in err.splitlines() if line.startswith("trustee: ")]
        assert len(refusal) == 1 and "CERTIFICATE_VERIFY_FAILED" in refusal[0], err
