"""`trustee serve`: embedded development default, config selection, config errors, TLS."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.harness import DEV_CONFIG, free_port, run_kbs, server_env
from tests.e2e.pki import make_pki
from trustee.client.cli import ALLOW_ALL_POLICY
from trustee.client.kbs import KbsClient


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trustee.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(env),
        check=False,
    )


KBS_SCRIPT = "import sys; from trustee.cli import kbs_main; sys.exit(kbs_main())"
LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\dT")
BANNER = "development KBS: NOT FOR PRODUCTION"


def refusal(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What start-up printed besides its log records; a refusal is this one line, nothing
    before it (no banner) and no traceback."""
    assert "Traceback" not in result.stderr and BANNER not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if not LOG_RECORD.match(line)]


def kbs(*args: str) -> subprocess.CompletedProcess[str]:
    """Upstream's command line, as the `kbs` console script runs it."""
    return subprocess.run(
        [sys.executable, "-c", KBS_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        check=False,
    )


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_invalid_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "kbs-config.toml"
    path.write_text('[http_server]\ninsecure_http = true\nsockets = "0.0.0.0:8080"\n[admin]\n')
    result = serve("--config", str(path))
    assert result.returncode == 2
    assert refusal(result) == [
        f"trustee: {path}: http_server.sockets: expected a list of strings, got '0.0.0.0:8080'"
    ]
    assert f"Using config file {path}" in result.stderr.splitlines()[0]


def test_unreadable_config_is_one_line_naming_the_file(tmp_path: Path) -> None:
    missing, binary = tmp_path / "absent.toml", tmp_path / "binary.toml"
    binary.write_bytes(b"[admin]\n\xff\xfe\n")
    cases = {
        missing: "cannot read config file: No such file or directory",
        tmp_path: "cannot read config file: Is a directory",
        binary: "not a TOML text file: byte 8 is not UTF-8",
    }
    for path, why in cases.items():
        result = serve("--config", str(path))
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [f"trustee: {path}: {why}"]


def test_unusable_tls_files_are_one_line_naming_the_file_and_key(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    missing = tmp_path / "absent.pem"
    path = tmp_path / "kbs-config.toml"
    template = DEV_CONFIG.replace(
        "insecure_http = true", 'private_key = "{key}"\ncertificate = "{cert}"'
    )
    cases = {
        (missing, pki.https_key): (
            f"http_server.certificate: cannot read {missing}: No such file or directory"
        ),
        (pki.https_cert, missing): (
            f"http_server.private_key: cannot read {missing}: No such file or directory"
        ),
        (pki.https_cert, pki.signer_key): (
            f"http_server.private_key: {pki.signer_key} does not match the certificate in "
            f"{pki.https_cert}"
        ),
    }
    for (cert, key), why in cases.items():
        path.write_text(template.format(port=free_port(), key=key, cert=cert))
        result = serve("--config", str(path))
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [f"trustee: {path}: {why}"]


def test_a_busy_port_is_one_line_before_any_banner(tmp_path: Path) -> None:
    path = tmp_path / "kbs-config.toml"
    with taken_port() as port:
        busy = f"cannot listen on 127.0.0.1:{port}: address already in use"
        path.write_text(DEV_CONFIG.replace("{port}", str(port)))
        result = serve("--config", str(path))
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [f"trustee: {busy}"]
        # The development server (a worker per core) prints its banner only once it listens.
        result = serve("--socket", f"127.0.0.1:{port}")
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [f"trustee: {busy}"]
        result = kbs("--config-file", str(path))
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [f"kbs: {busy}"]
    result = serve("--socket", "127.0.0.1:99999")
    assert result.returncode == 2
    assert refusal(result) == ["trustee: --socket: '127.0.0.1:99999' is not an ip:port address"]


WORKERS = """
worker_count = 2
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{storage}"
"""


async def test_a_second_server_with_workers_does_not_share_a_running_ones_port(
    tmp_path: Path,
) -> None:
    # Workers' sockets share their port (SO_REUSEPORT); without a check a second server of
    # the same user bound beside the first and took half of its connections.
    text = DEV_CONFIG.replace(
        "insecure_http = true", "insecure_http = true" + WORKERS.format(storage=tmp_path / "data")
    )
    async with run_kbs(text, tmp_path) as running:
        result = await trio.to_thread.run_sync(serve, "--config", str(running.config_path))
        assert result.returncode == 2, result.stderr
        assert refusal(result) == [
            f"trustee: cannot listen on 127.0.0.1:{running.port}: address already in use"
        ]
        async with running.client() as http:
            assert (await http.get("/healthz")).status_code == 200


def test_missing_trust_material_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "kbs-config.toml"
    path.write_text("[http_server]\ninsecure_http = true\n[admin]\n[attestation_service]\n")
    result = serve("-c", str(path))
    assert result.returncode == 2
    assert "no trusted verification materials" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_that_cannot_start_stop_the_server_with_one_line(tmp_path: Path) -> None:
    # The signer key is read by each worker as it builds its KBS: every worker fails the same
    # way, so the server stops with that error instead of restarting them for ever.
    path = tmp_path / "kbs-config.toml"
    path.write_text(
        f"""
[http_server]
insecure_http = true
sockets = ["127.0.0.1:{free_port()}"]
worker_count = 2
[admin]
[attestation_token]
insecure_header_jwk = true
[attestation_service.attestation_token_broker.signer]
key_path = "{tmp_path / "absent.pem"}"
[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "{tmp_path / "storage"}"
"""
    )
    result = serve("--config", str(path))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("trustee: ")]
    assert len(errors) == 1 and "absent.pem" in errors[0], result.stderr
    assert "starting a new one" not in result.stderr and "Traceback" not in result.stderr


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.toml"
    path.write_text("[admin]\n")
    result = serve(env={"KBS_CONFIG_FILE": str(path)})
    assert result.returncode == 2 and "http_server: missing required table" in result.stderr


async def test_development_default_serves_a_full_flow() -> None:
    """`trustee serve` with no config: loopback HTTP, banner, sample TEE end to end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stderr = bytearray()
    # The embedded default listens on 8080; the test moves it with --socket.
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trustee.cli", "serve", "--socket", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        env=server_env(),
    )

    async def drain() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.receive_some(65536):
            stderr.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        try:
            with trio.fail_after(60):
                async with httpx.AsyncClient(base_url=url) as http:
                    while True:
                        try:
                            if (await http.get("/healthz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        assert proc.returncode is None, stderr.decode()
                        await trio.sleep(0.05)
            async with KbsClient(url, retry_delay=0) as client:
                await client.set_resource("default/dev/key", b"dev-secret")
                await client.set_resource_policy(ALLOW_ALL_POLICY)
                assert await client.get_resource("default/dev/key") == b"dev-secret"
        finally:
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = stderr.decode()
    assert "development KBS: NOT FOR PRODUCTION" in text
    assert url in text
    assert proc.returncode == 0, text[-3000:]
    # Its data lived in the LocalFs directory the banner named, with a worker per core, and
    # the directory is gone with the server.
    storage = re.search(r"storage: (\S+) \(LocalFs, removed at exit\)", text)
    assert storage is not None, text
    assert not os.path.exists(storage.group(1))
    assert f"{len(os.sched_getaffinity(0))} worker(s)" in text


async def test_tls_profile_modern_refuses_tls12(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    config = f"""
[http_server]
sockets = ["127.0.0.1:{{port}}"]
private_key = "{pki.https_key}"
certificate = "{pki.https_cert}"
tls_profile = "modern"
[admin]
[attestation_token]
insecure_header_jwk = true
"""
    async with run_kbs(config, tmp_path, https=True, ca=pki.ca_cert) as kbs:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        async with httpx.AsyncClient(verify=ctx) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{kbs.url}/healthz")
        async with kbs.client() as http:
            assert (await http.get("/healthz")).status_code == 200
        assert os.path.exists(kbs.config_path)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent pid is the second field after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    text = DEV_CONFIG.replace(
        "insecure_http = true", "insecure_http = true" + WORKERS.format(storage=tmp_path / "data")
    )
    async with run_kbs(text, tmp_path) as running:
        workers = _children(running.process.pid)
        assert len(workers) >= 2, workers
        running.process.send_signal(signal.SIGKILL)
        with trio.move_on_after(15):
            while any(_alive(pid) for pid in workers):
                await trio.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "workers outlived their supervisor"
