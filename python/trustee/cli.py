"""The `trustee` command (and `kbs`, which accepts upstream's command line)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustee import __version__

# Each command imports what it runs: `trustee audit verify` needs neither trio nor the server.
if TYPE_CHECKING:
    from hypercorn.config import Sockets

    from trustee.config import Config
    from trustee.operator.render import Ref

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


async def _run(
    config: Config, sockets: Sockets | None = None, ready: Callable[[], None] | None = None
) -> None:
    import trio

    from trustee import offload
    from trustee.http.app import create_app
    from trustee.http.serve import serve
    from trustee.offload_threads import default_threads
    from trustee.server import build_kbs

    # Signals end the server gracefully (Kubernetes sends SIGTERM, a terminal SIGINT) instead
    # of raising KeyboardInterrupt inside whichever request happens to be running.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        offload.DEFAULT.threads = default_threads(config.http_server.worker_count)
        kbs = await build_kbs(config)
        app = create_app(kbs)
        if ready is not None:
            ready()

        async def shutdown_trigger() -> None:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

        await serve(app, config.http_server, shutdown_trigger, sockets)


def _check_front_end_env() -> None:
    from trustee.http.body_timeout import body_timeout
    from trustee.http.connections import default_max_connections

    body_timeout()
    default_max_connections()


def _serve(config_path: str | None, sockets: list[str] | None = None) -> int:
    import shutil

    from trustee.config import ConfigError, load_embedded_default, load_file
    from trustee.logs import setup_logging
    from trustee.offload_threads import default_threads
    from trustee.storage import session_keys

    setup_logging()
    dev_storage: str | None = None
    try:
        if config_path:
            log.info("Using config file %s", config_path)
            config = load_file(config_path)
            config.source = config_path
        else:
            config = load_embedded_default()
            dev_storage = _development_storage(config)
        if sockets:
            config.http_server.sockets = sockets
        log.info("trustee-py Key Broker Service %s", __version__)
        # A bad TRUSTEE_OFFLOAD_THREADS (or other tuning variable) stops start-up here,
        # before any socket is bound.
        default_threads(config.http_server.worker_count)
        _check_front_end_env()
        if config.development:
            print(_banner(config), file=sys.stderr, flush=True)
        if config.http_server.worker_count > 1:
            if config.session_kind() == "Memory":
                raise ConfigError(
                    "http_server.worker_count",
                    f"{config.http_server.worker_count} workers cannot share sessions kept in "
                    'one process\'s memory (session_storage_type = "Memory"); remove it for '
                    'sealed-cookie sessions, or set "Redis"',
                    config.source,
                )
            if not config.session_key_material:
                # One key for every worker: a session sealed by one opens on the others.
                config.session_key_material = [session_keys.generate()]
            if config.storage_backend.storage_type == "Memory":
                raise ConfigError(
                    "http_server.worker_count",
                    f"{config.http_server.worker_count} workers need shared storage; "
                    "storage_backend Memory is per process (use Postgres, Redis or LocalFs)",
                    config.source,
                )
            return _serve_workers(config)
        from trustee.http.listen import worker_sockets

        # Listening before the app is built (or even trio loaded): connections that arrive
        # meanwhile queue in the kernel and are answered once it is up, instead of refused.
        scheme = "HTTP" if config.http_server.insecure_http else "HTTPS"
        log.info("Starting %s server at %s", scheme, config.http_server.sockets)
        (bound,) = worker_sockets(config.http_server, 1)
        import trio

        trio.run(partial(_run, config, bound))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if dev_storage is not None:
            shutil.rmtree(dev_storage, ignore_errors=True)
    return 0


def _development_storage(config: Config) -> str:
    """The development server keeps its data in a fresh LocalFs directory (removed at exit),
    so that it can run a worker per core like a real deployment."""
    import tempfile

    from trustee.config.loader import default_worker_count

    directory = tempfile.mkdtemp(prefix="trustee-dev-")
    config.storage_backend.storage_type = "LocalFs"
    config.storage_backend.local_fs_dir = directory
    config.http_server.worker_count = default_worker_count(config)
    return directory


# A worker that keeps dying is restarted after this pause, so a crash loop cannot spin.
RESTART_BACKOFF = 0.5
SUPERVISOR_POLL = 0.2


def _serve_workers(config: Config) -> int:
    """`worker_count` processes accepting on sockets bound here; they share nothing but the
    stores. A worker that dies is replaced (within a second) for as long as the server should
    serve; SIGINT/SIGTERM are passed on, and each worker shuts down gracefully."""
    import multiprocessing
    from multiprocessing.connection import wait

    from trustee.http.listen import worker_sockets

    count = config.http_server.worker_count
    # Each worker keeps its own sockets across restarts: connections the kernel queued on
    # them while it was being replaced are served by its successor.
    sockets = worker_sockets(config.http_server, count)
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []
    workers: list[multiprocessing.process.BaseProcess] = []

    failures = context.SimpleQueue()
    started: list[Any] = [None] * count  # per worker: an Event set once it has built its KBS

    def start(index: int) -> multiprocessing.process.BaseProcess:
        ready = context.Event()
        worker = context.Process(
            target=_worker,
            args=(_worker_config(config, index), sockets[index], ready, failures),
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
    log.info("Starting %d workers at %s", count, config.http_server.sockets)
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
                return _stop_workers_after_failed_start(workers, failures, worker.exitcode)
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
) -> int:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(10)
    code, message = 1, f"error: a worker failed to start ({_exit_reason(exitcode)})"
    if not failures.empty():
        code, message = failures.get()
    print(message, file=sys.stderr)
    return int(code)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _worker_config(config: Config, index: int) -> Config:
    """A worker's copy of the config: a file audit sink gets one file per worker, because a
    hash chain needs a single writer (`audit.jsonl` → `audit.worker0.jsonl`, …)."""
    copy = dataclasses.replace(config, audit_sinks=[dict(t) for t in config.audit_sinks])
    for table in copy.audit_sinks:
        if table.get("type") == "file" and isinstance(table.get("path"), str):
            path = Path(table["path"])
            table["path"] = str(path.with_name(f"{path.stem}.worker{index}{path.suffix}"))
    return copy


def _worker(config: Config, sockets: Sockets, ready: Any, failures: Any) -> None:
    import trio

    from trustee.config import ConfigError
    from trustee.logs import setup_logging

    setup_logging()
    # Start-up errors go to the parent, which prints one line for the server and stops.
    try:
        with contextlib.suppress(KeyboardInterrupt):  # the parent passed on SIGINT: shut down
            trio.run(partial(_run, config, sockets, ready.set))
    except ConfigError as exc:
        failures.put((EXIT_CONFIG, f"error: {exc}"))
        sys.exit(EXIT_CONFIG)
    except OSError as exc:
        failures.put((1, f"error: cannot serve: {exc}"))
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    from trustee import verify_cli

    parser = argparse.ArgumentParser(prog="trustee", description="trustee-py KBS")
    parser.add_argument("--version", action="version", version=f"trustee-py {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Key Broker Service")
    serve.add_argument(
        "-c",
        "--config",
        "--config-file",
        dest="config",
        metavar="FILE",
        help="kbs-config.toml (default: $KBS_CONFIG_FILE, else the embedded development config)",
    )
    serve.add_argument(
        "--socket",
        action="append",
        metavar="IP:PORT",
        help="listen here instead of [http_server] sockets (repeatable)",
    )
    verify_cli.add_parser(sub)
    simulate = sub.add_parser(
        "simulate",
        help="simulated TDX/SNP test PKIs (`trustee simulate init --help`)",
        add_help=False,
    )
    simulate.add_argument("rest", nargs=argparse.REMAINDER)
    audit = sub.add_parser(
        "audit",
        help="audit log tools (`trustee audit verify FILE`: check a JSON Lines hash chain)",
        add_help=False,
    )
    audit.add_argument("rest", nargs=argparse.REMAINDER)
    policy = sub.add_parser(
        "policy",
        help="evaluate a policy against claims and explain the decision (`trustee policy eval`)",
        add_help=False,
    )
    policy.add_argument("rest", nargs=argparse.REMAINDER)
    operator = sub.add_parser("operator", help="the Kubernetes operator's tools")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    render = operator_sub.add_parser(
        "render",
        help="print the objects the operator would apply for a KbsConfig, as a YAML stream",
    )
    render.add_argument("--kbsconfig", required=True, metavar="FILE", help="the KbsConfig YAML")
    render.add_argument(
        "--namespace",
        metavar="NS",
        help="where the objects go (default: the KbsConfig's namespace, else "
        "trustee-operator-system)",
    )
    render.add_argument("--image", metavar="IMAGE", help="the KBS image")
    render.add_argument(
        "--objects",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="YAML streams of the referenced ConfigMaps/Secrets; they feed the rollout hash",
    )
    return parser


class _RenderInputError(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _load_yaml_stream(path: str) -> list[object]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    except OSError as exc:
        raise _RenderInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _RenderInputError(f"{path}: invalid YAML: {_one_line(exc)}") from exc


def _load_kbsconfig(path: str) -> dict[str, Any]:
    found = [
        doc
        for doc in _load_yaml_stream(path)
        if isinstance(doc, dict) and doc.get("kind") == "KbsConfig"
    ]
    if len(found) != 1:
        what = "no KbsConfig document" if not found else f"{len(found)} KbsConfig documents"
        raise _RenderInputError(f"{path}: {what}; give exactly one")
    return found[0]


def _load_objects(paths: list[str], namespace: str) -> dict[Ref, dict[str, Any]]:
    from trustee.operator.render import Ref

    objects: dict[Ref, dict[str, Any]] = {}
    for path in paths:
        docs = _load_yaml_stream(path)
        while docs:
            doc = docs.pop(0)
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            # `kubectl get cm,secret -o yaml` wraps its output in a List.
            if (
                isinstance(kind, str)
                and kind.endswith("List")
                and isinstance(doc.get("items"), list)
            ):
                docs[:0] = doc["items"]
                continue
            if kind not in ("ConfigMap", "Secret"):
                continue
            meta = doc.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                raise _RenderInputError(f"{path}: a {kind} without metadata.name")
            obj_ns = meta.get("namespace") if isinstance(meta, dict) else None
            if obj_ns and obj_ns != namespace:
                # The operator only looks in its own namespace.
                print(
                    f"warning: {path}: {kind}/{name} is in namespace {obj_ns}, not {namespace}; "
                    "ignored",
                    file=sys.stderr,
                )
                continue
            ref = Ref(kind, name)
            if ref in objects:
                raise _RenderInputError(f"{path}: {kind}/{name} given more than once")
            objects[ref] = doc
    return objects


def _operator_render(args: argparse.Namespace) -> int:
    from trustee.operator.render import (
        DEFAULT_IMAGE,
        DEFAULT_NAMESPACE,
        RenderError,
        referenced,
        render,
        to_yaml_stream,
    )

    try:
        kbsconfig = _load_kbsconfig(args.kbsconfig)
        meta = kbsconfig.get("metadata")
        cr_namespace = meta.get("namespace") if isinstance(meta, dict) else None
        namespace = args.namespace or cr_namespace or DEFAULT_NAMESPACE
        objects = None
        if args.objects:
            objects = _load_objects(args.objects, namespace)
            for ref in referenced(kbsconfig):
                if ref not in objects:
                    print(
                        f"warning: {ref.kind}/{ref.name} is not among --objects; hashed as "
                        "absent (the operator would wait for it)",
                        file=sys.stderr,
                    )
        try:
            rendered = render(
                kbsconfig,
                namespace=namespace,
                image=args.image or DEFAULT_IMAGE,
                objects=objects,
            )
        except RenderError as exc:
            raise _RenderInputError(f"{args.kbsconfig}: {exc}") from exc
    except _RenderInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(to_yaml_stream(rendered))
    return 0


def _delegated(name: str) -> Callable[[list[str]], int]:
    # These commands own their command lines (and their --help); import them only when used.
    if name == "audit":
        from trustee.audit.cli import audit_main

        return audit_main
    if name == "policy":
        from trustee.policy_cli import policy_main

        return policy_main
    from trustee.simulate.cli import simulate_main

    return simulate_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("audit", "policy", "simulate"):
        return _delegated(argv[0])(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args.config or os.environ.get("KBS_CONFIG_FILE"), args.socket)
    if args.command == "verify":
        from trustee import verify_cli

        return verify_cli.run(args)
    if args.command == "operator" and args.operator_command == "render":
        return _operator_render(args)
    return 2


def kbs_main(argv: list[str] | None = None) -> int:
    """Upstream's `kbs [-c|--config-file FILE]` command line."""
    parser = argparse.ArgumentParser(prog="kbs")
    parser.add_argument("-c", "--config-file", dest="config", metavar="FILE")
    args = parser.parse_args(argv)
    return _serve(args.config or os.environ.get("KBS_CONFIG_FILE"))


if __name__ == "__main__":
    sys.exit(main())
