"""The standalone AS's config file: upstream's JSON as it is, the same keys in TOML, errors
that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trustee.config import as_file
from trustee.config.errors import ConfigError

UPSTREAM_JSON = {
    "storage_backend": {
        "storage_type": "LocalFs",
        "backends": {"local_fs": {"dir_path": "/var/lib/attestation-service/storage"}},
    },
    "rvps_config": {"type": "BuiltIn"},
    "attestation_token_broker": {
        "duration_min": 7,
        "signer": {"key_path": "/keys/token.key", "cert_path": "/keys/chain.pem"},
    },
    "verifier_config": {"tpm_verifier": {"trusted_ak_keys_dir": "/etc/tpm"}},
}


def test_upstream_json_loads_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "as-config.json"
    path.write_text(json.dumps(UPSTREAM_JSON, indent=4))
    cfg = as_file.load_file(path)
    assert cfg.storage.storage_type == "LocalFs"
    assert cfg.storage.local_fs_dir == "/var/lib/attestation-service/storage"
    assert cfg.service.broker.duration_min == 7
    assert cfg.service.broker.signer is not None
    assert cfg.service.broker.signer.key_path == "/keys/token.key"
    assert cfg.dialect == "head"


def test_toml_with_the_same_keys_and_ours(tmp_path: Path) -> None:
    path = tmp_path / "as.toml"
    path.write_text(
        "[attestation_token_broker]\nduration_min = 3\n"
        "[policy_engine]\nevaluation_timeout_ms = 300\n"
        '[[audit.sinks]]\ntype = "file"\npath = "/tmp/audit.jsonl"\n'
    )
    cfg = as_file.load_file(path)
    assert cfg.service.broker.duration_min == 3
    assert cfg.policy_limits.evaluation_timeout_ms == 300
    assert [s.type for s in cfg.audit_sinks] == ["file"]
    assert cfg.storage.storage_type == "Memory"


def test_work_dir_of_older_files_is_a_local_directory(tmp_path: Path) -> None:
    path = tmp_path / "as.json"
    path.write_text(json.dumps({"work_dir": str(tmp_path / "as"), "rvps_config": {}}))
    cfg = as_file.load_file(path)
    assert (cfg.storage.storage_type, cfg.storage.local_fs_dir) == ("LocalFs", str(tmp_path / "as"))
    # Upstream's shipped config.json has it: tokens and policies stay in today's dialect.
    assert cfg.dialect == "head"


def test_no_file_means_upstream_defaults() -> None:
    cfg = as_file.load_file(None)
    assert cfg.storage.storage_type == "Memory"
    assert cfg.service.rvps.type == "BuiltIn"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"attestation_token_broker": {"duration_min": "five"}}', "duration_min"),
        ('{"storage_backend": {"storage_type": "Floppy"}}', "storage_type"),
        ("{not json", "invalid JSON"),
        ("= nor toml", "neither JSON nor TOML"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "as.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        as_file.load_file(path)
    assert needle in str(caught.value)
    assert str(path) in str(caught.value)
