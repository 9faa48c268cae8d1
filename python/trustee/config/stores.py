"""Where a server keeps its state, from the configuration and the environment: the storage
backend, the session keys, and how many workers that allows by default."""

from __future__ import annotations

import os
import re

from trustee.config.errors import ConfigError
from trustee.config.model import Config, StorageConfig, StorageType
from trustee.config.reader import Table
from trustee.storage.session_keys import read_keys

STORAGE_TYPES: dict[str, StorageType] = {
    "Memory": "Memory",
    "LocalFs": "LocalFs",
    "LocalJson": "LocalJson",
    "Postgres": "Postgres",
    "Redis": "Redis",
}


def storage(t: Table | None) -> StorageConfig:
    cfg = StorageConfig()
    if t is None:
        return cfg
    cfg.storage_type = t.choice("storage_type", STORAGE_TYPES, "Memory")
    backends = t.table("backends")
    if backends is not None:
        local_fs = backends.table("local_fs")
        if local_fs is not None:
            cfg.local_fs_dir = local_fs.get("dir_path", str, cfg.local_fs_dir)
        local_json = backends.table("local_json")
        if local_json is not None:
            cfg.local_json_dir = local_json.get("file_dir_path", str, cfg.local_json_dir)
        postgres = backends.table("postgres")
        if postgres is not None:
            for name, kind in (("host", str), ("username", str), ("password", str), ("db", str)):
                if postgres.has(name):
                    cfg.postgres[name] = postgres.req(name, kind)
            if postgres.has("port"):
                cfg.postgres["port"] = postgres.req("port", int)
            if postgres.has("table"):
                table = postgres.req("table", str)
                if not re.match(r"^[a-z_][a-z0-9_]{0,50}$", table):
                    raise ConfigError(postgres.key("table"), f"{table!r} is not a plain table name")
                cfg.postgres["table"] = table
        redis = backends.table("redis")
        if redis is not None:
            cfg.redis_url = redis.get("url", str, cfg.redis_url)
            if redis.has("ca_file"):
                cfg.redis_ca_file = redis.req("ca_file", str)
                from trustee.redis.connect import tls_context

                try:
                    tls_context(cfg.redis_ca_file)
                except ValueError as exc:
                    raise ConfigError(redis.key("ca_file"), f"cannot use {exc}") from None
    return cfg


# Storage every worker process sees the same way; with it, the default is a worker per core.
SHARED_STORAGE = frozenset({"LocalFs", "LocalJson", "Postgres", "Redis"})


def default_worker_count(config: Config) -> int:
    """A worker per usable core when the stores are shared between processes and sessions
    are not kept in one process's memory; one otherwise."""
    if config.storage_backend.storage_type not in SHARED_STORAGE:
        return 1
    if config.session_kind() == "Memory":
        return 1
    as_cfg = config.attestation_service
    if as_cfg is not None:
        main = config.storage_backend.storage_type
        for kind in (as_cfg.storage_type, as_cfg.rvps.storage_type):
            if (kind or main) not in SHARED_STORAGE:
                return 1
    return max(1, len(os.sched_getaffinity(0)))


# The session key file(s) when the config names none: how the operator hands its replicas
# their shared key without touching the user's config file.
SESSION_KEY_ENV = "KBS_SESSION_KEY_FILE"


def session_keys(root: Table, config: Config) -> None:
    key = "session_key"
    if root.has(key):
        value = root.data[key]
        paths = [value] if isinstance(value, str) else root.str_list(key)
    elif os.environ.get(SESSION_KEY_ENV):
        key = SESSION_KEY_ENV
        paths = [p.strip() for p in os.environ[key].split(",")]
    else:
        return
    if not paths or not all(paths):
        raise ConfigError(key, "names no file")
    try:
        config.session_key_material = read_keys(paths)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    config.session_key_files = paths


def storage_environment(config: Config) -> None:
    """POSTGRES_URL / REDIS_URL override the tables (with or without a [storage_backend]); the
    Redis URL is checked when something uses Redis."""
    storage = config.storage_backend
    storage.postgres_url = os.environ.get("POSTGRES_URL") or None
    storage.redis_url = os.environ.get("REDIS_URL") or storage.redis_url
    if "Redis" not in (storage.storage_type, config.session_kind()):
        return
    from trustee.redis.connect import parse_redis_url

    try:
        parse_redis_url(storage.redis_url, "url")
    except ValueError as exc:
        key = "REDIS_URL" if os.environ.get("REDIS_URL") else "storage_backend.backends.redis.url"
        raise ConfigError(key, str(exc).removeprefix("url: ")) from None
