"""The KBS core and the attestation service depend on interfaces, never on a concrete backend:
which store, session backend, audit sink or collateral fetcher runs is the assembly's choice."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "trustee"

# Modules that implement an interface (a store, a session backend, a sink, a fetcher).
CONCRETE_BACKENDS = (
    "trustee.storage.localfs",
    "trustee.storage.localjson",
    "trustee.storage.memory",
    "trustee.storage.plaintree",
    "trustee.storage.postgres_kv",
    "trustee.storage.redis_kv",
    "trustee.storage.redis_sessions",
    "trustee.storage.rvfile",
    "trustee.storage.sealed_sessions",
    "trustee.storage.factory",
    "trustee.redis",
    "trustee.audit.memory",
    "trustee.audit.sink_redis",
    "trustee.audit.sink_syslog",
    "trustee.audit.sink_webhook",
    "trustee.audit.sinks_file",
    "trustee.audit.registry",
    "trustee.collateral.tdx_sources",
    "trustee.collateral.http",
    "trustee.assemble",
    # The remote Attestation Service clients and the gRPC stubs they use.
    "trustee.remote_as",
    "trustee.grpc_api",
)


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["kbs", "attestation"])
def test_no_concrete_backend_is_imported(package: str) -> None:
    offending = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in _imports(path)
        if any(name == b or name.startswith(b + ".") for b in CONCRETE_BACKENDS)
    ]
    assert offending == []


def test_the_check_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from trustee.storage.sealed_sessions import SealedSessions\n")
    assert "trustee.storage.sealed_sessions" in _imports(module)
