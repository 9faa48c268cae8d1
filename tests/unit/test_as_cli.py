"""The standalone AS's command line: worker counts the storage allows, TLS flags, and what each
worker is handed (one token key for all, a file sink each)."""

from __future__ import annotations

import argparse
import json
import os
import pickle
from pathlib import Path

import pytest

from trustee.as_server import cli
from trustee.audit.settings import FileSinkOptions
from trustee.config import as_file
from trustee.config.errors import ConfigError


def config(doc: dict[str, object]) -> as_file.AsConfig:
    return as_file.parse(json.dumps(doc), "as.json")


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_server_arguments(parser)
    return parser.parse_args(["--socket", "127.0.0.1:8080", *argv])


def test_default_workers_follow_the_storage(tmp_path: Path) -> None:
    shared = config({"work_dir": str(tmp_path)})
    assert cli.worker_count(shared, None) == max(1, len(os.sched_getaffinity(0)))
    assert cli.worker_count(config({}), None) == 1  # upstream's default: Memory
    # A Memory RVPS beside LocalFs policies is still one process's memory.
    mixed = config({"work_dir": str(tmp_path), "rvps_config": {"storage_type": "Memory"}})
    assert cli.worker_count(mixed, None) == 1
    assert cli.worker_count(shared, 3) == 3


def test_worker_counts_the_storage_cannot_serve_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        cli.worker_count(config({}), 2)
    assert caught.value.key == "--workers" and "Memory" in caught.value.message
    with pytest.raises(ConfigError, match="at least 1"):
        cli.worker_count(config({}), 0)


def test_tls_flags() -> None:
    assert cli.http_config(args()).insecure_http
    with pytest.raises(ConfigError) as caught:
        cli.http_config(args("-k", "key.pem"))
    assert str(caught.value) == "-k: HTTPS needs both -t and -k; -t is missing"
    with pytest.raises(ConfigError) as caught:
        cli.http_config(args("-t", "/nonexistent/cert.pem", "-k", "/nonexistent/key.pem"))
    assert caught.value.key == "-t" and "/nonexistent/cert.pem" in caught.value.message


def test_workers_get_one_token_key_and_a_file_sink_each(tmp_path: Path) -> None:
    doc = {
        "work_dir": str(tmp_path),
        "audit": {"sinks": [{"type": "file", "path": str(tmp_path / "audit.jsonl")}]},
    }
    path = tmp_path / "as.json"
    path.write_text(json.dumps(doc))
    program = cli.prepare(args("--config", str(path), "--workers", "2"), build=None)
    assert program.http.worker_count == 2
    settings = program.payload
    assert isinstance(settings, cli.AsSettings) and settings.signer_pem is not None
    copy = pickle.loads(pickle.dumps(program.for_worker(settings, 1)))
    (sink,) = copy.config.audit_sinks
    assert isinstance(sink.options, FileSinkOptions)
    assert sink.options.path == str(tmp_path / "audit.worker1.jsonl")
    first, second = settings.signer(), copy.signer()
    assert first is not None and second is not None
    assert first.header_jwk() == second.header_jwk()
