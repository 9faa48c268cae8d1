"""Start the real KBS (`trustee serve --config …`) as a child process on a loopback port."""

from __future__ import annotations

import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

import httpx
import trio

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningKbs:
    url: str
    port: int
    config_path: Path
    log_path: Path
    ca: Path | None
    process: trio.Process

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.ca is not None:
            verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.AsyncClient(base_url=self.url, verify=verify, timeout=30, **kwargs)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KBS_CONFIG_FILE", None)
    env.setdefault("TRUSTEE_LOG", "info")
    env.update(extra or {})
    return env


@asynccontextmanager
async def run_kbs(
    config_text: str,
    workdir: Path,
    *,
    https: bool = False,
    ca: Path | None = None,
    name: str = "kbs",
    env: dict[str, str] | None = None,
    open_files: int | None = None,
) -> AsyncIterator[RunningKbs]:
    """`config_text` may contain `{port}`; it is formatted with a free port before start.
    `open_files` lowers the server's open-file limit (`ulimit -n`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}-config.toml"

    def command(port: int) -> list[str]:
        config_path.write_text(config_text.replace("{port}", str(port)))
        return ["serve", "--config", str(config_path)]

    start = _Start(command, config_path, workdir / f"{name}.log", https, ca, env, open_files)
    async with _serve(start) as kbs:
        yield kbs


@asynccontextmanager
async def run_development_kbs(workdir: Path, *, name: str = "dev") -> AsyncIterator[RunningKbs]:
    """`trustee serve` with no configuration, as `make run` starts it: the embedded development
    configuration, moved from port 8080 to a free loopback port with `--socket`."""
    workdir.mkdir(parents=True, exist_ok=True)
    embedded = Path(str(resources.files("trustee.config").joinpath("default.toml")))

    def command(port: int) -> list[str]:
        return ["serve", "--socket", f"127.0.0.1:{port}"]

    async with _serve(_Start(command, embedded, workdir / f"{name}.log")) as kbs:
        yield kbs


@asynccontextmanager
async def run_as(
    config_text: str | None,
    workdir: Path,
    *,
    args: tuple[str, ...] = (),
    name: str = "as",
    suffix: str = ".json",
    https: bool = False,
    ca: Path | None = None,
    upstream_cli: bool = False,
) -> AsyncIterator[RunningKbs]:
    """A standalone Attestation Service, `trustee as serve` (or upstream's `restful-as` command
    line with `upstream_cli`) on a free port; `config_text` (may contain `{port}`) goes into
    `--config-file`, none means upstream's defaults. `args` are more flags (TLS, workers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}-config{suffix}"

    def command(port: int) -> list[str]:
        argv = ["--socket", f"127.0.0.1:{port}", *args]
        if config_text is not None:
            config_path.write_text(config_text.replace("{port}", str(port)))
            argv += ["--config-file", str(config_path)]
        return argv if upstream_cli else ["as", "serve", *argv]

    module = "trustee.as_server.cli" if upstream_cli else "trustee.cli"
    start = _Start(command, config_path, workdir / f"{name}.log", https, ca, module=module)
    async with _serve(start) as service:
        yield service


@dataclass(frozen=True)
class _Start:
    command: Callable[[int], list[str]]  # `trustee` arguments for a port
    config_path: Path
    log_path: Path
    https: bool = False
    ca: Path | None = None
    env: dict[str, str] | None = None
    open_files: int | None = None
    module: str = "trustee.cli"  # what `python -m` runs


@asynccontextmanager
async def _serve(start: _Start) -> AsyncIterator[RunningKbs]:
    for attempt in range(3):
        port = free_port()
        argv = start.command(port)
        log = start.log_path.open("wb")
        limit = None if start.open_files is None else partial(_limit_files, start.open_files)
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", start.module, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(start.env),
            preexec_fn=limit,
        )
        scheme = "https" if start.https else "http"
        url = f"{scheme}://127.0.0.1:{port}"
        kbs = RunningKbs(url, port, start.config_path, start.log_path, start.ca, process)
        try:
            if await _wait_ready(kbs):
                try:
                    yield kbs
                finally:
                    await _stop(process)
                return
            if "address already in use" not in kbs.log_text() or attempt == 2:
                raise RuntimeError(f"{start.module} did not start:\n{kbs.log_text()}")
        finally:
            if process.returncode is None:
                await _stop(process)
            log.close()


def _limit_files(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


async def _wait_ready(kbs: RunningKbs) -> bool:
    with trio.move_on_after(STARTUP_TIMEOUT):
        async with kbs.client() as client:
            while kbs.alive:
                try:
                    r = await client.get("/healthz")
                    if r.status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
    return False


async def _stop(process: trio.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    with trio.move_on_after(5):
        await process.wait()
        return
    process.kill()
    await process.wait()


# A plain-HTTP development KBS: open admin API on loopback, header-JWK tokens, built-in AS,
# resource plugin. Tests append their own tables (verifier_config, audit sinks, …).
DEV_CONFIG = """
[http_server]
sockets = ["127.0.0.1:{port}"]
insecure_http = true

[admin]
authorization_mode = "InsecureAllowAll"

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

[[plugins]]
name = "resource"
"""

# Variables that switch the client to other attesters; tests set them explicitly when wanted.
_ATTESTER_ENV = ("ENABLE_SAMPLE_DEVICE", "TRUSTEE_SIMULATED_")


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the variables that pick an attester, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_ATTESTER_ENV)}
    return {**base, **(extra or {})}


async def run_module(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m <argv>` (trustee.cli, trustee.client.cli); (exit status, stdout, stderr)."""
    result = await trio.run_process(
        [sys.executable, "-m", *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=client_env(env),
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "Traceback" not in err, err
    return result.returncode, out, err
