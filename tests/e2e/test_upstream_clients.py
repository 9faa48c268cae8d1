"""Upstream's own Rust kbs-client against our server, through sealed-cookie sessions.

The clients are built from upstream's source on the machine running the tests (they are not
part of this repository); point these variables at them to run the tests:

    TRUSTEE_KBS_CLIENT_HEAD    kbs-client of trustee HEAD (protocol 0.4.0)
    TRUSTEE_KBS_CLIENT_V0_11   kbs-client v0.11.0, built with `--features sample_only` (0.1.1)

Both keep the cookie of the last answer (reqwest's cookie store), so each /attest's new sealed
cookie is what their resource request carries. The largest cookie a sample guest can make comes
from init-data, which is bound into the evidence and copied into the claims: a 12 KiB init-data
document makes a session cookie of several KiB.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, RunningKbs, run_kbs
from tests.e2e.test_scale_out import admin
from trustee.crypto.b64 import b64url_encode

HEAD = os.environ.get("TRUSTEE_KBS_CLIENT_HEAD")
V0_11 = os.environ.get("TRUSTEE_KBS_CLIENT_V0_11")
ALLOW_ALL = "package policy\nimport rego.v1\ndefault allow := true\n"
SECRET = b"sealed sessions, real clients"


def client(path: str | None, name: str) -> str:
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"set {name} to an upstream kbs-client binary to run this interop test")
    return path


def config(storage: Path) -> str:
    return (
        DEV_CONFIG
        + f"""
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"
"""
    )


async def seeded(kbs: RunningKbs) -> None:
    await admin(kbs, "/kbs/v0/resource/default/interop/one", content=SECRET)
    await admin(kbs, "/kbs/v0/resource-policy", json={"policy": b64url_encode(ALLOW_ALL.encode())})


async def fetches(binary: str, kbs: RunningKbs, *extra: str) -> None:
    """The client gets the secret (printed as base64) from `kbs`, passing `extra` along."""
    argv = [binary, "--url", kbs.url, "get-resource", "--path", "default/interop/one", *extra]
    done = await trio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    )
    assert done.returncode == 0, done.stderr + kbs.log_text()[-2000:]
    assert base64.b64decode(done.stdout.strip()) == SECRET


def large_init_data() -> str:
    # Distinct lines so deflate cannot fold them away: the cookie grows with the document.
    lines = [f'key{i:04d} = "{os.urandom(24).hex()}"' for i in range(250)]
    return 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n' + "\n".join(lines) + "\n"


async def test_kbs_client_head_through_sealed_cookies(tmp_path: Path) -> None:
    binary = client(HEAD, "TRUSTEE_KBS_CLIENT_HEAD")
    async with run_kbs(config(tmp_path / "storage"), tmp_path) as kbs:
        await seeded(kbs)
        await fetches(binary, kbs)
        init_data = large_init_data()
        assert len(init_data) > 12 * 1024
        await fetches(binary, kbs, init_data)
        sizes = [
            int(line.rsplit("cookie of ", 1)[1].split(" ")[0])
            for line in kbs.log_text().splitlines()
            if "attested (sample" in line
        ]
        assert len(sizes) == 2 and sizes[1] > 8 * 1024, sizes


async def test_kbs_client_v0_11_through_sealed_cookies(tmp_path: Path) -> None:
    binary = client(V0_11, "TRUSTEE_KBS_CLIENT_V0_11")
    async with run_kbs(config(tmp_path / "storage"), tmp_path) as kbs:
        await seeded(kbs)
        await fetches(binary, kbs)
