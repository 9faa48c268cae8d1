"""The dispatcher and its sinks, built from the audit settings (trustee.audit.settings)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher, SinkSpec
from trustee.audit.registry import sink_factory
from trustee.audit.settings import (
    AuditSinkSettings,
    BuiltinSinkOptions,
    FileSinkOptions,
    PluginSinkOptions,
    RedisStreamSinkOptions,
    StdoutSinkOptions,
    SyslogSinkOptions,
    WebhookSinkOptions,
)
from trustee.audit.sink import AuditSink
from trustee.config.errors import ConfigError


def dispatcher_from_settings(
    sinks: Sequence[AuditSinkSettings],
) -> AuditDispatcher | NullDispatcher:
    """Opens nothing: each sink connects when it first delivers. ConfigError when a
    third-party sink refuses its keys."""
    if not sinks:
        return NullDispatcher()
    return AuditDispatcher(
        [
            SinkSpec(
                sink_from_settings(s),
                required=s.required,
                queue_size=s.queue_size,
                block_timeout=s.block_timeout,
                batch_size=s.batch_size,
            )
            for s in sinks
        ]
    )


def sink_from_settings(settings: AuditSinkSettings) -> AuditSink:
    options = settings.options
    if not isinstance(options, PluginSinkOptions):
        return _builtin_sink(options)
    factory = sink_factory(settings.type, f"{settings.key}.type")
    try:
        return factory.from_config(options.table, settings.key)
    except ValueError as exc:
        # from_config's contract: ValueError("<key>.<name>: why"), naming what it read.
        key, _, why = str(exc).partition(": ")
        raise ConfigError(key, why or str(exc)) from exc


def _builtin_sink(options: BuiltinSinkOptions) -> AuditSink:
    # Each sink module loads only when a sink of its type is configured.
    if isinstance(options, FileSinkOptions):
        from trustee.audit.sinks_file import FileSink

        return FileSink.from_options(options)
    if isinstance(options, StdoutSinkOptions):
        from trustee.audit.sinks_file import StdoutSink

        return StdoutSink()
    if isinstance(options, SyslogSinkOptions):
        from trustee.audit.sink_syslog import SyslogSink

        return SyslogSink.from_options(options)
    if isinstance(options, WebhookSinkOptions):
        from trustee.audit.sink_webhook import WebhookSink

        return WebhookSink.from_options(options)
    if isinstance(options, RedisStreamSinkOptions):
        from trustee.audit.sink_redis import RedisStreamSink

        return RedisStreamSink.from_options(options)
    assert_never(options)
