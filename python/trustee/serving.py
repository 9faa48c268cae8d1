"""`trustee serve` (and upstream's `kbs`): a KBS in this process, or a supervisor of worker
processes that each serve on sockets it bound. Loads what it serves only: trio, the HTTP stack
and the KBS are imported by the process that runs them, never by the supervisor.

The supervisor and the workers serve a `Program`: the KBS here, a standalone Attestation
Service in `trustee.as_server`; both get the same sockets, worker restarts and shutdown."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustee import __version__

if TYPE_CHECKING:
    from hypercorn.config import Sockets

    from trustee.audit.settings import AuditSinkSettings
    from trustee.config import Config
    from trustee.config.model import HttpServerConfig

from trustee.supervision import EXIT_CONFIG, StartError, run_worker, supervise
from trustee.supervision import sole_error as _sole

log = logging.getLogger("trustee")


def _banner(config: Config) -> str:
    sock = config.http_server.sockets[0]
    url = f"http://{sock}"
    workers = config.http_server.worker_count
    return "\n".join(
        [
            "=" * 72,
            " trustee-py development KBS: NOT FOR PRODUCTION",
            f" listening on {url} (plain HTTP, loopback only), {workers} worker(s)",
            f" storage: {config.storage_backend.local_fs_dir} (LocalFs, removed at exit)",
            " ephemeral token signer, insecure_header_jwk = true,",
            " admin API open to loopback clients (InsecureAllowAll).",
            f" try:  trustee-client --url {url} attest",
            " run with --config FILE (or KBS_CONFIG_FILE) for a real deployment.",
            "=" * 72,
        ]
    )


@dataclasses.dataclass(frozen=True)
class Program:
    """What the server's processes serve. Spawned workers receive it pickled, so `build` and
    `for_worker` are module-level functions."""

    payload: Any  # what `build` makes the app from: the KBS's Config, the AS's settings
    http: HttpServerConfig  # sockets, TLS and worker_count
    build: Callable[[Any], Awaitable[Any]]  # payload → the ASGI app, in the serving process
    for_worker: Callable[[Any, int], Any]  # payload → worker `index`'s copy of it
    source: str | None = None  # the config file, named in errors
    banner: str | None = None  # printed once the sockets listen


async def _build_kbs(config: Config) -> Any:
    from trustee.assemble import assemble
    from trustee.http.app import create_app

    return create_app(await assemble(config))


async def _run(
    program: Program,
    sockets: Sockets,
    ready: Callable[[], None] | None = None,
    parent_sentinel: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM or, in a worker, until the supervisor is gone."""
    import trio

    from trustee import offload
    from trustee.http.serve import serve
    from trustee.offload_threads import default_threads

    # Signals end the server gracefully (Kubernetes sends SIGTERM, a terminal SIGINT) instead
    # of raising KeyboardInterrupt inside whichever request happens to be running.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        offload.DEFAULT.threads = default_threads(program.http.worker_count)
        app = await program.build(program.payload)
        _settle_garbage_collector()
        if ready is not None:
            ready()

        async def signalled() -> None:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

        async def orphaned(sentinel: int) -> None:
            # The supervisor's end of this pipe closes when it dies, even by SIGKILL; its
            # workers must not go on serving on the port without it.
            await trio.lowlevel.wait_readable(sentinel)
            log.warning("the supervisor is gone, shutting down")

        async def shutdown_trigger() -> None:
            async with trio.open_nursery() as first:

                async def until(event: Callable[[], Awaitable[None]]) -> None:
                    await event()
                    first.cancel_scope.cancel()

                first.start_soon(until, signalled)
                if parent_sentinel is not None:
                    first.start_soon(until, partial(orphaned, parent_sentinel))

        await serve(app, program.http, sockets, shutdown_trigger)


# A request allocates a few thousand short-lived objects, nearly none of them in cycles; at
# CPython's default gen-0 threshold (700) the collector ran several times per request.
GC_GEN0_THRESHOLD = 50_000


def _settle_garbage_collector() -> None:
    """What start-up built lives as long as the process: frozen, the collector never walks it
    again; and young collections run per many requests instead of several times per request."""
    import gc

    if os.environ.get("TRUSTEE_GC_DEFAULTS"):
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def check_front_end_env() -> None:
    from trustee.http.body_timeout import body_timeout
    from trustee.http.connections import default_max_connections

    body_timeout()
    default_max_connections()


def serve_command(
    config_path: str | None, sockets: list[str] | None = None, prog: str = "trustee"
) -> int:
    """Serve the KBS until SIGINT/SIGTERM; every failure to start is one line on stderr, `prog`
    first."""
    import shutil

    from trustee.logs import setup_logging

    setup_logging()
    dev_storage: list[str] = []

    def prepare() -> Program:
        config = _load(config_path, sockets)
        if config.development and config.storage_backend.local_fs_dir:
            dev_storage.append(config.storage_backend.local_fs_dir)
        _check_before_binding(config)
        return Program(
            config,
            config.http_server,
            _build_kbs,
            _worker_config,
            source=config.source,
            banner=_banner(config) if config.development else None,
        )

    try:
        return serve_program(prepare, prog)
    finally:
        for directory in dev_storage:
            shutil.rmtree(directory, ignore_errors=True)


def serve_program(prepare: Callable[[], Program], prog: str) -> int:
    """Serve what `prepare` gives, in this process or in `worker_count` workers, until
    SIGINT/SIGTERM. A failure to prepare or start is one line on stderr, `prog` first."""
    from trustee.config import ConfigError
    from trustee.http.listen import ListenError

    try:
        program = prepare()
        if program.http.worker_count > 1:
            return _serve_workers(program)
        _serve_one(program)
    except (ConfigError, ListenError) as exc:
        return _fail(prog, EXIT_CONFIG, str(exc))
    except StartError as exc:
        return _fail(prog, exc.code, exc.message)
    except OSError as exc:
        return _fail(prog, 1, f"cannot serve: {exc}")
    except KeyboardInterrupt:
        return 0
    return 0


def _fail(prog: str, code: int, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return code


def _load(config_path: str | None, sockets: list[str] | None) -> Config:
    """The configuration to serve (the embedded development one gets a fresh storage
    directory, made last so that nothing before can fail and leave it behind)."""
    from trustee.config import ConfigError, load_embedded_default, load_file
    from trustee.config.loader import is_socket_address

    for sock in sockets or ():
        if not is_socket_address(sock):
            raise ConfigError("--socket", f"{sock!r} is not an ip:port address")
    if config_path:
        log.info("Using config file %s", config_path)
        config = load_file(config_path)
        config.source = config_path
    else:
        config = load_embedded_default()
        _development_storage(config)
    if sockets:
        config.http_server.sockets = sockets
    return config


def _check_before_binding(config: Config) -> None:
    """What stops start-up before any socket is bound: bad tuning variables, and worker
    counts the configured stores cannot serve."""
    from trustee.config import ConfigError
    from trustee.offload_threads import default_threads
    from trustee.storage import session_keys

    log.info("trustee-py Key Broker Service %s", __version__)
    default_threads(config.http_server.worker_count)
    check_front_end_env()
    workers = config.http_server.worker_count
    if workers <= 1:
        return
    if config.session_kind() == "Memory":
        raise ConfigError(
            "http_server.worker_count",
            f"{workers} workers cannot share sessions kept in one process's memory "
            '(session_storage_type = "Memory"); remove it for sealed-cookie sessions, or set '
            '"Redis"',
            config.source,
        )
    if not config.session_key_material:
        # One key for every worker: a session sealed by one opens on the others.
        config.session_key_material = [session_keys.generate()]
    if config.storage_backend.storage_type == "Memory":
        raise ConfigError(
            "http_server.worker_count",
            f"{workers} workers need shared storage; storage_backend Memory is per process "
            "(use Postgres, Redis or LocalFs)",
            config.source,
        )


def _bind(program: Program, count: int) -> list[Sockets]:
    """Every worker's sockets, bound and listening; then the banner, which says where the
    server listens."""
    from trustee.config import ConfigError
    from trustee.http.listen import worker_sockets

    try:
        bound = worker_sockets(program.http, count)
    except ConfigError as exc:  # the TLS certificate or key
        raise exc.with_source(program.source) from None
    scheme = "HTTP" if program.http.insecure_http else "HTTPS"
    log.info("Listening (%s) at %s", scheme, program.http.sockets)
    if program.banner:
        print(program.banner, file=sys.stderr, flush=True)
    return bound


def _serve_one(program: Program) -> None:
    # Listening before the app is built (or even trio loaded): connections that arrive
    # meanwhile queue in the kernel and are answered once it is up, instead of refused.
    (bound,) = _bind(program, 1)
    import trio

    try:
        trio.run(partial(_run, program, bound))
    except BaseExceptionGroup as group:
        raise _sole(group) from None


def _development_storage(config: Config) -> str:
    """The development server keeps its data in a fresh LocalFs directory (removed at exit),
    so that it can run a worker per core like a real deployment."""
    import tempfile

    from trustee.config.stores import default_worker_count

    directory = tempfile.mkdtemp(prefix="trustee-dev-")
    config.storage_backend.storage_type = "LocalFs"
    config.storage_backend.local_fs_dir = directory
    config.http_server.worker_count = default_worker_count(config)
    return directory


def _serve_workers(program: Program) -> int:
    """`worker_count` processes accepting on sockets bound here; they share nothing but the
    stores."""
    count = program.http.worker_count
    # Each worker keeps its own sockets across restarts: connections the kernel queued on
    # them while it was being replaced are served by its successor.
    sockets = _bind(program, count)
    log.info("Starting %d workers at %s", count, program.http.sockets)
    return supervise(count, _worker, partial(_kbs_worker_args, program, sockets), "trustee-worker")


def _kbs_worker_args(program: Program, sockets: list[Sockets], index: int) -> tuple[Any, ...]:
    return (_worker_program(program, index), sockets[index])


def _worker_program(program: Program, index: int) -> Program:
    return dataclasses.replace(program, payload=program.for_worker(program.payload, index))


def worker_audit_sinks(
    sinks: tuple[AuditSinkSettings, ...], index: int
) -> tuple[AuditSinkSettings, ...]:
    return tuple(_worker_sink(sink, index) for sink in sinks)


def _worker_config(config: Config, index: int) -> Config:
    """A worker's copy of the config: a file audit sink gets one file per worker, because a
    hash chain needs a single writer (`audit.jsonl` → `audit.worker0.jsonl`, …)."""
    return dataclasses.replace(config, audit_sinks=worker_audit_sinks(config.audit_sinks, index))


def _worker_sink(sink: AuditSinkSettings, index: int) -> AuditSinkSettings:
    from trustee.audit.settings import FileSinkOptions

    if not isinstance(sink.options, FileSinkOptions):
        return sink
    path = Path(sink.options.path)
    own = str(path.with_name(f"{path.stem}.worker{index}{path.suffix}"))
    return dataclasses.replace(sink, options=dataclasses.replace(sink.options, path=own))


def _worker(program: Program, sockets: Sockets, ready: Any, failures: Any) -> None:
    def main(sentinel: int | None) -> Callable[[], Awaitable[None]]:
        return partial(_run, program, sockets, ready.set, sentinel)

    run_worker(main, failures)
