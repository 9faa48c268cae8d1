"""Find a sink class by its `type` name: built-ins first, then the `trustee.audit_sinks`
entry-point group, so a third-party package cannot shadow a built-in sink."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from trustee.audit.sink import AuditSinkFactory
from trustee.config.errors import ConfigError

if TYPE_CHECKING:
    import importlib.metadata

ENTRY_POINT_GROUP = "trustee.audit_sinks"

# Imported lazily: a deployment without Redis or webhooks never imports those modules.
BUILTIN_SINKS: dict[str, str] = {
    "file": "trustee.audit.sinks_file:FileSink",
    "stdout": "trustee.audit.sinks_file:StdoutSink",
    "syslog": "trustee.audit.sink_syslog:SyslogSink",
    "webhook": "trustee.audit.sink_webhook:WebhookSink",
    "redis-stream": "trustee.audit.sink_redis:RedisStreamSink",
}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    # Scanning installed distributions costs milliseconds at start; only a sink type that is
    # not built in needs it.
    import importlib.metadata

    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in found}


def known_sink_types() -> list[str]:
    return sorted(set(BUILTIN_SINKS) | set(_entry_points()))


def _import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def sink_factory(type_name: str, key: str) -> AuditSinkFactory:
    """The class for `type_name`; `key`, where the type is configured, names it in errors."""
    try:
        if type_name in BUILTIN_SINKS:
            where = BUILTIN_SINKS[type_name]
            obj = _import_target(where)
        else:
            entry = _entry_points().get(type_name)
            if entry is None:
                known = ", ".join(known_sink_types())
                raise ConfigError(key, f"unknown sink type {type_name!r} (known: {known})")
            where = f"entry point {ENTRY_POINT_GROUP}:{entry.name} = {entry.value}"
            obj = entry.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(key, f"sink type {type_name!r} could not be loaded: {exc}") from exc
    if not callable(getattr(obj, "from_config", None)):
        raise ConfigError(
            key, f"sink type {type_name!r} ({where}) has no from_config(table, key) method"
        )
    return cast(AuditSinkFactory, obj)
