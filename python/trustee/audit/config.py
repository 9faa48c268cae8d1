"""Build the dispatcher from the `[[audit.sinks]]` tables of the server configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher, SinkSpec
from trustee.audit.registry import sink_factory

MAX_QUEUE_SIZE = 10_000_000
MAX_BATCH_SIZE = 100_000


def _int(table: Mapping[str, Any], key: str, name: str, default: int, most: int) -> int:
    value = table.get(name, default)
    # bool is an int subclass; `queue_size = true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValueError(f"{key}.{name}: {value!r} is not an integer from 1 to {most}")
    return value


def _spec(table: Any, key: str) -> SinkSpec:
    if not isinstance(table, Mapping):
        raise ValueError(f"{key}: expected a table, got {type(table).__name__}")
    type_name = table.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ValueError(f"{key}.type: {type_name!r} is not a sink type name")
    required = table.get("required", False)
    if not isinstance(required, bool):
        raise ValueError(f"{key}.required: {required!r} is not a boolean")
    queue_size = _int(table, key, "queue_size", 10000, MAX_QUEUE_SIZE)
    batch_size = _int(table, key, "batch_size", 100, MAX_BATCH_SIZE)
    block_timeout = table.get("block_timeout", 1.0)
    if (
        isinstance(block_timeout, bool)
        or not isinstance(block_timeout, int | float)
        or not math.isfinite(block_timeout)
        or block_timeout < 0
    ):
        raise ValueError(
            f"{key}.block_timeout: {block_timeout!r} is not a finite number of seconds >= 0"
        )
    factory = sink_factory(type_name, f"{key}.type")
    sink = factory.from_config(table, key)
    return SinkSpec(
        sink,
        required=required,
        queue_size=queue_size,
        block_timeout=float(block_timeout),
        batch_size=batch_size,
    )


def dispatcher_from_config(tables: Sequence[Mapping[str, Any]]) -> AuditDispatcher | NullDispatcher:
    """Raises ValueError("audit.sinks[i].<key>: why") for the first bad value."""
    if not isinstance(tables, list):
        raise ValueError(f"audit.sinks: expected an array of tables, got {type(tables).__name__}")
    if not tables:
        return NullDispatcher()
    return AuditDispatcher([_spec(table, f"audit.sinks[{i}]") for i, table in enumerate(tables)])
