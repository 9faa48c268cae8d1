"""The standalone Attestation Service's config file (upstream's `as-config.json`) → AsConfig.

Upstream's file is JSON; TOML with the same keys is taken too (the KBS's `[attestation_service]`
table, lifted to the top). The keys are the AS's: `storage_backend` (or the older `work_dir`,
a LocalFs directory), `rvps_config`, `attestation_token_broker`, `verifier_config`; ours on
top: `[[audit.sinks]]` and `[policy_engine]` evaluation limits. Unknown keys are ignored, as
upstream's reader does.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustee.audit.settings import AuditSinkSettings, audit_sinks
from trustee.config.errors import ConfigError
from trustee.config.loader import (
    Notes,
    attestation_service_section,
    policy_limits_section,
    read_config_text,
)
from trustee.config.model import (
    AttestationServiceConfig,
    Config,
    Dialect,
    PolicyLimitsConfig,
    StorageConfig,
)
from trustee.config.reader import Table
from trustee.config.stores import storage, storage_environment
from trustee.protocol import limits


@dataclass
class AsConfig:
    service: AttestationServiceConfig = field(default_factory=AttestationServiceConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    audit_sinks: tuple[AuditSinkSettings, ...] = ()
    policy_limits: PolicyLimitsConfig = field(default_factory=PolicyLimitsConfig)
    dialect: Dialect = "head"
    source: str | None = None
    ignored_keys: list[str] = field(default_factory=list)


def _document(text: str, source: str | None) -> dict[str, Any]:
    head = text.lstrip()[:1]
    doc: Any
    try:
        doc = limits.loads(text, "AS config")
    except ValueError as exc:
        if head == "{":
            raise ConfigError("", f"invalid JSON: {exc}", source) from exc
        try:
            doc = tomllib.loads(text)  # a TOML file may open with a `[table]` too
        except tomllib.TOMLDecodeError as toml_exc:
            raise ConfigError("", f"neither JSON nor TOML: {toml_exc}", source) from toml_exc
    if not isinstance(doc, dict):
        raise ConfigError("", "the AS config must be a JSON object", source)
    return doc


def _build(root: Table) -> AsConfig:
    notes = Notes()
    service = attestation_service_section(root, notes)
    assert service is not None  # the root table is always there
    if service.remote is not None:
        raise root.error("type", "a standalone Attestation Service runs the built-in service")
    cfg = AsConfig(
        service=service, policy_limits=policy_limits_section(root.table("policy_engine"))
    )
    backend = root.table("storage_backend")
    if backend is not None:
        cfg.storage = storage(backend)
    elif root.has("work_dir"):
        # Before `storage_backend`, the AS kept policies and reference values under work_dir.
        cfg.storage = StorageConfig(storage_type="LocalFs", local_fs_dir=root.req("work_dir", str))
    audit = root.table("audit")
    if audit is not None:
        cfg.audit_sinks = audit_sinks(audit)
    # Upstream's own AS config.json still carries `work_dir` (its HEAD ignores the key): in
    # this file it names the storage directory, not the v0.11 token and policy dialect.
    if [key for key in notes.legacy if key != "work_dir"]:
        cfg.dialect = "v0.11"
    cfg.ignored_keys = [k for k in notes.ignored if not k.startswith("work_dir ")]
    # The environment overrides (POSTGRES_URL, REDIS_URL) apply as they do to the KBS.
    shim = Config(storage_backend=cfg.storage)
    storage_environment(shim)
    return cfg


def parse(text: str, source: str | None = None) -> AsConfig:
    doc = _document(text, source)
    try:
        cfg = _build(Table(doc, ""))
    except ConfigError as exc:
        raise exc.with_source(source) from None
    cfg.source = source
    return cfg


def load_file(path: str | Path | None) -> AsConfig:
    """The file's settings; no file: upstream's defaults (Memory storage, built-in RVPS)."""
    if path is None:
        return AsConfig(source="<defaults>")
    return parse(read_config_text(path, "JSON or TOML"), str(path))
