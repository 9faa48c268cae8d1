"""`rvps_config` of the KBS's `[attestation_service]` and of the AS's own file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustee.config.errors import ConfigError
from trustee.config.model import RvpsConfig
from trustee.config.reader import Table
from trustee.config.stores import STORAGE_TYPES

if TYPE_CHECKING:
    from trustee.config.loader import Notes

# upstream's default for `rvps_config.address` (GrpcRemote)
DEFAULT_RVPS_ADDRESS = "127.0.0.1:50003"


def rvps_config(rv: Table, notes: Notes) -> RvpsConfig:
    """`[attestation_service.rvps_config]`: the built-in RVPS (default) or GrpcRemote."""
    rv_type = rv.get("type", str, "BuiltIn")
    if rv_type.lower() == "grpcremote":
        address = rv.get("address", str, DEFAULT_RVPS_ADDRESS)
        if not is_rvps_address(address):
            raise ConfigError(
                rv.key("address"), f"{address!r} is not host:port (http:// or https:// allowed)"
            )
        return RvpsConfig(type="GrpcRemote", address=address)
    if rv_type.lower() != "builtin":
        raise ConfigError(
            rv.key("type"), f"RVPS type {rv_type!r} is not supported; BuiltIn or GrpcRemote"
        )
    cfg = RvpsConfig(type="BuiltIn")
    if rv.has("storage_type"):
        cfg.storage_type = rv.choice("storage_type", STORAGE_TYPES)
    storage = rv.table("storage")
    if storage is not None:
        notes.legacy.append(storage.path)
        kind = storage.get("type", str, "LocalFs")
        if kind == "LocalJson":
            cfg.legacy_file = storage.get(
                "file_path",
                str,
                "/opt/confidential-containers/attestation-service/reference_values.json",
            )
        else:
            notes.ignored.append(
                f"{storage.key('type')} = {kind!r} (the sled database is not supported; "
                "reference values use the storage backend)"
            )
    notes.ignore(rv, "extractors", "extractor settings are built in")
    return cfg


def is_rvps_address(address: str) -> bool:
    """host:port, optionally behind http:// or https:// (upstream adds http:// when absent)."""
    rest = address.removeprefix("http://").removeprefix("https://").rstrip("/")
    host, sep, port = rest.rpartition(":")
    return bool(sep and host and "/" not in host and port.isdigit() and 0 < int(port) < 65536)
