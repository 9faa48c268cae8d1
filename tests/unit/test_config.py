from __future__ import annotations

import os
from pathlib import Path

import pytest

from trustee.config import ConfigError, load_embedded_default, load_file, parse

BASE = "[http_server]\ninsecure_http = true\n[admin]\n"
AUTHN = BASE + 'authorization_mode = "AuthenticatedAuthorization"\n'

HEAD_CONFIG = """
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = false
private_key = "/etc/kbs/key.pem"
certificate = "/etc/kbs/cert.pem"
payload_request_size = 4
tls_profile = "modern"

[admin]
authorization_mode = "AuthenticatedAuthorization"

[[admin.authentication.bearer_jwt.identity_providers]]
issuer = "issuer"
audience = "kbs"
public_key_uri = "file:///etc/kbs/admin.pem"

[[admin.authorization.regex_acl.acls]]
role = "admin"
allowed_endpoints = "^/kbs/.+$"

[attestation_token]
trusted_certs_paths = ["/etc/kbs/ca.pem"]
insecure_header_jwk = false

[attestation_service]
type = "coco_as_builtin"
timeout = 7

[attestation_service.attestation_token_broker]
duration_min = 9
[attestation_service.attestation_token_broker.signer]
key_path = "/etc/kbs/token.key"
cert_path = "/etc/kbs/token.pem"

[attestation_service.rvps_config]
type = "BuiltIn"

[storage_backend]
storage_type = "LocalFs"
[storage_backend.backends.local_fs]
dir_path = "/var/lib/kbs"

[[plugins]]
name = "resource"
storage_backend_type = "kvstorage"
"""


def test_head_config_loads_every_section() -> None:
    c = parse(HEAD_CONFIG)
    assert c.http_server.sockets == ["0.0.0.0:8080"]
    assert c.http_server.payload_request_size == 4 and c.http_server.tls_profile == "modern"
    assert c.admin.mode == "AuthenticatedAuthorization"
    assert c.admin.identity_providers[0].issuer == "issuer"
    assert c.admin.acls[0].role == "admin"
    assert c.attestation_token.trusted_certs_paths == ["/etc/kbs/ca.pem"]
    assert c.attestation_service is not None
    assert c.attestation_service.timeout == 7
    assert c.attestation_service.broker.duration_min == 9
    assert c.attestation_service.broker.signer is not None
    assert c.attestation_service.broker.signer.cert_path == "/etc/kbs/token.pem"
    assert c.storage_backend.storage_type == "LocalFs"
    assert c.storage_backend.local_fs_dir == "/var/lib/kbs"
    assert [p.name for p in c.plugins] == ["resource"]


def test_missing_attestation_service_means_resource_only() -> None:
    c = parse(BASE + "[attestation_token]\ninsecure_header_jwk = true\n")
    assert c.attestation_service is None
    assert c.admin.mode == "InsecureAllowAll"


def test_unknown_keys_outside_admin_are_ignored() -> None:
    c = parse("[http_server]\ninsecure_http = true\nfuture_key = 1\n[admin]\n[whatever]\nx = 1\n")
    assert c.http_server.insecure_http


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[admin]\n", "http_server"),
        ("[http_server]\ninsecure_http = true\n", "admin"),
        ("[http_server]\n[admin]\n", "http_server.private_key"),
        ('[http_server]\ninsecure_http = "yes"\n[admin]\n', "http_server.insecure_http"),
        (
            '[http_server]\ninsecure_http = true\nsockets = ["nope"]\n[admin]\n',
            "http_server.sockets",
        ),
        (BASE + "bogus = 1\n", "admin.bogus"),
        (BASE + 'type = "Simple"\nauthorization_mode = "DenyAll"\n', "admin.authorization_mode"),
        (BASE + "insecure_api = false\n", "admin.auth_public_key"),
        (
            BASE + 'authorization_mode = "Maybe"\n',
            "admin.authorization_mode",
        ),
        (
            BASE + 'authorization_mode = "AuthenticatedAuthorization"\n'
            "[admin.authentication.bearer_jwt]\nidentity_providers = []\n"
            "[admin.authorization.regex_acl]\nacls = []\n",
            "admin.authentication.bearer_jwt.identity_providers",
        ),
        (
            BASE + 'authorization_mode = "AuthenticatedAuthorization"\n'
            '[[admin.authentication.bearer_jwt.identity_providers]]\npublic_key_uri = "k"\n'
            '[[admin.authorization.regex_acl.acls]]\nrole = "a"\nallowed_endpoints = "/kbs/.*"\n',
            "admin.authorization.regex_acl.acls[0].allowed_endpoints",
        ),
        (
            '[http_server]\ninsecure_http = true\ntls_min_version = "1.3"\n'
            'tls_max_version = "1.2"\n[admin]\n',
            "http_server.tls_min_version",
        ),
        (
            BASE + '[storage_backend]\nstorage_type = "Floppy"\n',
            "storage_backend.storage_type",
        ),
        (
            BASE + '[[plugins]]\nname = "nope"\n',
            "plugins[0].name",
        ),
        (
            BASE + '[[plugins]]\nname = "sample"\n',
            "plugins[0].item",
        ),
        (
            BASE + '[protocol]\naccepted_versions = ["0.3.0"]\n',
            "protocol.accepted_versions",
        ),
    ],
)
def test_invalid_configs_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "kbs.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"kbs.toml: {key}")
    assert "\n" not in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse("[http_server", "x.toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_file(tmp_path / "absent.toml")


def test_embedded_default_is_a_loopback_development_setup() -> None:
    c = load_embedded_default()
    assert c.development and c.admin.loopback_only
    assert c.http_server.sockets == ["127.0.0.1:8080"] and c.http_server.insecure_http
    assert c.attestation_token.insecure_header_jwk
    assert c.storage_backend.storage_type == "Memory"
    assert c.attestation_service is not None and c.attestation_service.broker.signer is None


REDIS_SESSIONS = 'session_storage_type = "Redis"\n' + BASE


def test_redis_url_from_the_environment_without_a_storage_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@cache.example:6380/2")
    config = parse(REDIS_SESSIONS)
    assert config.session_kind() == "Redis"
    assert config.storage_backend.redis_url == "rediss://:pw@cache.example:6380/2"


def test_a_bad_redis_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:99999/0")
    with pytest.raises(ConfigError) as info:
        parse(REDIS_SESSIONS, "kbs.toml")
    assert info.value.key == "REDIS_URL"
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    # Unused (no Redis sessions or storage), the variable is not judged.
    assert parse(BASE).storage_backend.storage_type == "Memory"
    monkeypatch.delenv("REDIS_URL")
    bad_table = REDIS_SESSIONS + '[storage_backend.backends.redis]\nurl = "redis://h/not-a-db"\n'
    with pytest.raises(ConfigError) as info:
        parse(bad_table, "kbs.toml")
    assert info.value.key == "storage_backend.backends.redis.url"
    assert "database 'not-a-db'" in str(info.value)


def test_redis_ca_file_must_hold_certificates(tmp_path: Path) -> None:
    from tests.support.receivers import make_redis_tls

    ca = make_redis_tls(tmp_path / "tls").ca
    table = REDIS_SESSIONS + '[storage_backend.backends.redis]\nurl = "rediss://h/0"\n'
    config = parse(table + f'ca_file = "{ca}"\n')
    assert config.storage_backend.redis_ca_file == str(ca)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nxx\n")
    for path in (tmp_path / "absent.pem", garbage):
        with pytest.raises(ConfigError) as info:
            parse(table + f'ca_file = "{path}"\n', "kbs.toml")
        assert info.value.key == "storage_backend.backends.redis.ca_file"
        assert f"cannot use ca_file {path}: " in str(info.value)


@pytest.mark.parametrize(
    ("text", "per_core"),
    [
        ("", False),  # Memory storage: one process holds the data
        ('[storage_backend]\nstorage_type = "LocalFs"\n', True),
        ('[storage_backend]\nstorage_type = "LocalJson"\n', True),
        ('[storage_backend]\nstorage_type = "Redis"\n', True),
        ('session_storage_type = "Memory"\n[storage_backend]\nstorage_type = "LocalFs"\n', False),
        (
            '[attestation_service]\nstorage_type = "Memory"\n'
            '[storage_backend]\nstorage_type = "LocalFs"\n',
            False,
        ),
        ('[storage_backend]\nstorage_type = "LocalFs"\n[http_server]\nworker_count = 3\n', None),
    ],
)
def test_worker_count_defaults_to_every_core_on_shared_storage(
    text: str, per_core: bool | None
) -> None:
    head = "[admin]\n[attestation_token]\ninsecure_header_jwk = true\n"
    if "[http_server]" not in text:
        head += "[http_server]\ninsecure_http = true\n"
    # Top-level keys go before the first table.
    top, sep, tables = text.partition("\n[")
    if top.startswith("["):
        top, tables = "", text
    else:
        tables = "[" + tables if sep else ""
    tables = tables.replace("[http_server]\n", "[http_server]\ninsecure_http = true\n")
    config = parse(top + "\n" + head + tables)
    cores = len(os.sched_getaffinity(0))
    expected = 3 if per_core is None else (cores if per_core else 1)
    assert config.http_server.worker_count == expected
    assert config.http_server.worker_count_set is (per_core is None)
