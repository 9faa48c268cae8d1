from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from trustee.audit import registry
from trustee.audit.build import dispatcher_from_settings
from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher
from trustee.audit.memory import MemorySink
from trustee.audit.settings import AuditSinkSettings, FileSinkOptions, audit_sinks
from trustee.audit.sinks_file import FileSink, StdoutSink
from trustee.config.errors import ConfigError
from trustee.config.reader import Table


def _settings(sinks: Any) -> tuple[AuditSinkSettings, ...]:
    return audit_sinks(Table({"sinks": sinks}, "audit"))


def _dispatcher(sinks: Any) -> AuditDispatcher | NullDispatcher:
    return dispatcher_from_settings(_settings(sinks))


def test_no_sinks_is_the_null_dispatcher() -> None:
    assert isinstance(_dispatcher([]), NullDispatcher)


def test_builtin_sinks_and_common_keys(tmp_path: Path) -> None:
    d = _dispatcher(
        [
            {"type": "stdout"},
            {
                "type": "file",
                "path": str(tmp_path / "a.jsonl"),
                "required": True,
                "queue_size": 5,
                "block_timeout": 0.5,
                "batch_size": 7,
            },
        ]
    )
    assert isinstance(d, AuditDispatcher)
    assert set(d.stats()) == {"stdout", f"file:{tmp_path / 'a.jsonl'}"}
    specs = [s.spec for s in d._states]
    assert isinstance(specs[0].sink, StdoutSink)
    assert isinstance(specs[1].sink, FileSink)
    assert (specs[1].required, specs[1].queue_size, specs[1].block_timeout) == (True, 5, 0.5)
    assert specs[1].batch_size == 7
    assert (specs[0].required, specs[0].queue_size, specs[0].batch_size) == (False, 10000, 100)


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"path": "x"}, r"audit\.sinks\[1\]\.type: None"),
        (
            {"type": "carrier-pigeon"},
            r"audit\.sinks\[1\]\.type: unknown sink type 'carrier-pigeon'",
        ),
        ({"type": "stdout", "required": "yes"}, r"audit\.sinks\[1\]\.required:"),
        ({"type": "stdout", "queue_size": 0}, r"audit\.sinks\[1\]\.queue_size: 0"),
        ({"type": "stdout", "queue_size": True}, r"audit\.sinks\[1\]\.queue_size: True"),
        ({"type": "stdout", "batch_size": 1.5}, r"audit\.sinks\[1\]\.batch_size: 1\.5"),
        ({"type": "stdout", "block_timeout": -1}, r"audit\.sinks\[1\]\.block_timeout: -1"),
        ({"type": "stdout", "block_timeout": float("inf")}, r"audit\.sinks\[1\]\.block_timeout"),
        ({"type": "file"}, r"audit\.sinks\[1\]\.path:"),
        ({"type": "stdout", "colour": True}, r"audit\.sinks\[1\]\.colour: unknown key"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=f"^{where}"):
        _settings([{"type": "stdout"}, table])


def test_non_table_entries_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[0\]: expected a table, got str"):
        _settings(["file"])
    with pytest.raises(ConfigError, match=r"^audit\.sinks: expected an array"):
        _settings({"type": "file"})


def _fake_entry_points(value: str) -> Any:
    points = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint(
                name="memory", value=value, group=registry.ENTRY_POINT_GROUP
            )
        ]
    )

    def entry_points(**params: Any) -> importlib.metadata.EntryPoints:
        return points.select(**params)

    return entry_points


def test_entry_point_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _fake_entry_points("trustee.audit.memory:MemorySink")
    )
    assert "memory" in registry.known_sink_types()
    d = _dispatcher([{"type": "memory", "name": "third-party"}])
    assert isinstance(d, AuditDispatcher)
    assert isinstance(d._states[0].spec.sink, MemorySink)
    assert set(d.stats()) == {"third-party"}


def test_entry_point_cannot_shadow_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    points = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint(
                name="stdout",
                value="trustee.audit.memory:MemorySink",
                group=registry.ENTRY_POINT_GROUP,
            )
        ]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **p: points.select(**p))
    assert registry.sink_factory("stdout", "k") is StdoutSink


def test_entry_point_load_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _fake_entry_points("no_such_module_xyz:Sink")
    )
    with pytest.raises(
        ConfigError, match=r"^audit\.sinks\[0\]\.type: sink type 'memory' could not"
    ):
        _settings([{"type": "memory"}])
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _fake_entry_points("trustee.audit:event")
    )
    with pytest.raises(ConfigError, match="has no from_config"):
        _settings([{"type": "memory"}])


def test_a_third_party_sink_checks_its_keys_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _fake_entry_points("trustee.audit.memory:MemorySink")
    )
    settings = _settings([{"type": "stdout"}, {"type": "memory", "name": 5}])
    with pytest.raises(ConfigError, match=r"^audit\.sinks\[1\]\.name: 5 is not a string"):
        dispatcher_from_settings(settings)


def test_every_builtin_type_has_a_reader() -> None:
    from trustee.audit import settings

    assert set(settings.BUILTIN_READERS) == set(registry.BUILTIN_SINKS)


def test_each_worker_writes_its_own_file(tmp_path: Path) -> None:
    from trustee.config.loader import parse
    from trustee.serving import _worker_config

    config = parse(
        '[http_server]\ninsecure_http = true\n[admin]\nauthorization_mode = "DenyAll"\n'
        f'[[audit.sinks]]\ntype = "file"\npath = "{tmp_path / "audit.jsonl"}"\nrequired = true\n'
        '[[audit.sinks]]\ntype = "stdout"\n'
    )
    worker = _worker_config(config, 1)
    file_sink, stdout_sink = worker.audit_sinks
    assert isinstance(file_sink.options, FileSinkOptions)
    assert file_sink.options.path == str(tmp_path / "audit.worker1.jsonl")
    assert file_sink.required and stdout_sink == config.audit_sinks[1]
    # The parent's settings stay as they were, for the next worker.
    assert config.audit_sinks[0].options == FileSinkOptions(str(tmp_path / "audit.jsonl"))
