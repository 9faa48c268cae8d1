"""`trustee serve` (and upstream's `kbs`): a KBS in this process, or a supervisor of worker
processes that each serve on sockets it bound. Loads what it serves only: trio, the HTTP stack
and the KBS are imported by the process that runs them, never by the supervisor.

The supervisor and the workers serve a `Program`: the KBS here, a standalone Attestation
Service in `trustee.as_server`; both get the same sockets, worker restarts and shutdown."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
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

log = logging.getLogger("trustee")

EXIT_CONFIG = 2


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
    import os

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


class StartError(Exception):
    """The server stops before serving: exit `code`, with one line (the program's name goes
    in front of it)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a (nested) exception group holds, as itself: trio's nurseries wrap what
    fails inside them, and a person should read the error, not the nesting."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


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


# A worker that keeps dying is restarted after this pause, so a crash loop cannot spin.
RESTART_BACKOFF = 0.5
SUPERVISOR_POLL = 0.2


def _serve_workers(program: Program) -> int:
    """`worker_count` processes accepting on sockets bound here; they share nothing but the
    stores. A worker that dies is replaced (within a second) for as long as the server should
    serve; SIGINT/SIGTERM are passed on, and each worker shuts down gracefully."""
    import multiprocessing
    from multiprocessing.connection import wait

    count = program.http.worker_count
    # Each worker keeps its own sockets across restarts: connections the kernel queued on
    # them while it was being replaced are served by its successor.
    sockets = _bind(program, count)
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []
    workers: list[multiprocessing.process.BaseProcess] = []

    failures = context.SimpleQueue()
    started: list[Any] = [None] * count  # per worker: an Event set once it has built its KBS

    def start(index: int) -> multiprocessing.process.BaseProcess:
        ready = context.Event()
        worker = context.Process(
            target=_worker,
            args=(_worker_program(program, index), sockets[index], ready, failures),
            name=f"trustee-worker-{index}",
        )
        worker.start()
        started[index] = ready
        return worker

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    workers.extend(start(i) for i in range(count))
    log.info("Starting %d workers at %s", count, program.http.sockets)
    failed: list[str] = []
    while True:
        # Exits are looked at before anything else: workers that all failed to start within
        # one poll must still be reported as such, not taken for a finished server.
        alive = [w for w in workers if w.exitcode is None]
        if alive:
            wait([w.sentinel for w in alive], timeout=SUPERVISOR_POLL)
        for index, worker in enumerate(workers):
            if worker.exitcode is None:
                continue
            if stopping:
                if worker.exitcode not in (0, -signal.SIGINT, -signal.SIGTERM):
                    failed.append(worker.name or f"worker {index}")
                continue
            if not started[index].is_set():
                # It never got as far as serving (a store it cannot reach, a bad file): the
                # next one would fail the same way. Stop, with the worker's one-line error.
                raise _stop_workers_after_failed_start(workers, failures, worker.exitcode)
            # Nothing asked it to stop: whatever ended it, the server keeps its capacity.
            log.error(
                "worker %d (pid %s) died (%s); starting a new one",
                index,
                worker.pid,
                _exit_reason(worker.exitcode),
            )
            time.sleep(RESTART_BACKOFF if worker.exitcode != 0 else 0)
            if not stopping:
                workers[index] = start(index)
        if stopping and all(w.exitcode is not None for w in workers):
            break
    if failed:
        log.error("workers exited with errors: %s", ", ".join(sorted(set(failed))))
        return 1
    return 0


def _stop_workers_after_failed_start(
    workers: list[Any], failures: Any, exitcode: int | None
) -> StartError:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(10)
    code, message = 1, f"a worker failed to start ({_exit_reason(exitcode)})"
    if not failures.empty():
        code, message = failures.get()
    return StartError(int(code), str(message))


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


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
    import multiprocessing

    import trio

    from trustee.config import ConfigError
    from trustee.logs import setup_logging

    setup_logging()
    # Start-up errors go to the parent, which prints one line for the server and stops.
    try:
        with contextlib.suppress(KeyboardInterrupt):  # the parent passed on SIGINT: shut down
            try:
                parent = multiprocessing.parent_process()
                sentinel = parent.sentinel if parent is not None else None
                trio.run(partial(_run, program, sockets, ready.set, sentinel))
            except BaseExceptionGroup as group:
                raise _sole(group) from None
    except ConfigError as exc:
        failures.put((EXIT_CONFIG, str(exc)))
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        failures.put((1, f"cannot serve: {exc}"))
        sys.exit(1)
