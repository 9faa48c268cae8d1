"""The standalone RVPS's config file (upstream's `rvps.json`) → RvpsFileConfig.

Two forms of `storage`, as upstream's releases wrote them:
- today's: `{"storage_type": "LocalFs", "backends": {"local_fs": {"dir_path": …}}}`, the
  storage backend table of the AS and the KBS (Memory when absent);
- the older `{"type": "LocalFs" | "LocalJson", "file_path": …}`: a directory kept by this
  server, or the JSON array of records the v0.11-era RVPS wrote (read and written in place).
`extractors` is ignored (the extractors are built in). JSON or TOML, like the AS's file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trustee.config.as_file import _document as json_or_toml
from trustee.config.errors import ConfigError
from trustee.config.loader import read_config_text
from trustee.config.model import Config, StorageConfig
from trustee.config.reader import Table
from trustee.config.stores import storage, storage_environment

DEFAULT_PATH = "/etc/rvps.json"
LEGACY_KINDS = ("LocalFs", "LocalJson")


@dataclass
class RvpsFileConfig:
    storage: StorageConfig = field(default_factory=StorageConfig)
    # The older `{"type": "LocalJson", "file_path"}`: one JSON file of records.
    records_file: str | None = None
    source: str | None = None
    ignored_keys: list[str] = field(default_factory=list)


def _storage(t: Table, cfg: RvpsFileConfig) -> None:
    if not t.has("type"):
        cfg.storage = storage(t)
        return
    kind = t.req("type", str)
    if kind not in LEGACY_KINDS:
        raise ConfigError(t.key("type"), f"{kind!r} is not one of {', '.join(LEGACY_KINDS)}")
    path = t.req("file_path", str)
    if kind == "LocalJson":
        cfg.records_file = path
    else:
        cfg.storage = StorageConfig(storage_type="LocalFs", local_fs_dir=path)


def parse(text: str, source: str | None = None) -> RvpsFileConfig:
    root = Table(json_or_toml(text, source), "")
    cfg = RvpsFileConfig(source=source)
    try:
        table = root.table("storage")
        if table is not None:
            _storage(table, cfg)
        # POSTGRES_URL and REDIS_URL apply as they do to the KBS and the AS.
        storage_environment(Config(storage_backend=cfg.storage))
    except ConfigError as exc:
        raise exc.with_source(source) from None
    if root.has("extractors"):
        cfg.ignored_keys.append("extractors (the extractors are built in)")
    return cfg


def load_file(path: str | None) -> RvpsFileConfig:
    """The file's settings. Without `path`: DEFAULT_PATH when it exists, else Memory storage."""
    if path is None:
        if not Path(DEFAULT_PATH).exists():
            return RvpsFileConfig(source="<defaults>")
        path = DEFAULT_PATH
    return parse(read_config_text(path, "JSON or TOML"), path)
