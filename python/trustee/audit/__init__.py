"""Audit events: CloudEvents for every server decision, fanned out to pluggable sinks.

Names load their module on first use: reading the audit settings (trustee.audit.settings)
while loading a configuration needs neither trio nor the dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustee.lazy_names import lazy_names

if TYPE_CHECKING:
    from trustee.audit.build import dispatcher_from_settings
    from trustee.audit.dispatcher import (
        AuditDispatcher,
        AuditRequiredSinkError,
        NullDispatcher,
        SinkSpec,
    )
    from trustee.audit.event import AuditEvent
    from trustee.audit.settings import AuditSinkSettings
    from trustee.audit.sink import AuditSink, AuditSinkError

_MODULES = {
    "AuditDispatcher": "dispatcher",
    "AuditEvent": "event",
    "AuditRequiredSinkError": "dispatcher",
    "AuditSink": "sink",
    "AuditSinkError": "sink",
    "AuditSinkSettings": "settings",
    "NullDispatcher": "dispatcher",
    "SinkSpec": "dispatcher",
    "dispatcher_from_settings": "build",
}

__all__ = [
    "AuditDispatcher",
    "AuditEvent",
    "AuditRequiredSinkError",
    "AuditSink",
    "AuditSinkError",
    "AuditSinkSettings",
    "NullDispatcher",
    "SinkSpec",
    "dispatcher_from_settings",
]

__getattr__ = lazy_names(__name__, _MODULES)
