"""Audit events: CloudEvents for every server decision, fanned out to pluggable sinks."""

from trustee.audit.config import dispatcher_from_config
from trustee.audit.dispatcher import (
    AuditDispatcher,
    AuditRequiredSinkError,
    NullDispatcher,
    SinkSpec,
)
from trustee.audit.event import AuditEvent
from trustee.audit.sink import AuditSink, AuditSinkError

__all__ = [
    "AuditDispatcher",
    "AuditEvent",
    "AuditRequiredSinkError",
    "AuditSink",
    "AuditSinkError",
    "NullDispatcher",
    "SinkSpec",
    "dispatcher_from_config",
]
