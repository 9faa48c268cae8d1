"""v0.11-era kbs-config.toml.

The seed's config (trustee-operator v0.3.0, KBS v0.11.0) must load as the `legacy` dialect with
every key either mapped onto the one Config model or named as ignored; HEAD configs stay `head`;
the legacy admin forms (`insecure_api`/`auth_public_key`, `type` + personas/roles) parse into
AdminConfig modes and their mistakes are errors naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared import seed_file
from trustee.config import Config, ConfigError, load_embedded_default, load_file, parse
from trustee.config.loader import LEGACY_DEFAULT_POLICY_DIR
from trustee.config.model import PolicyEngineConfig

BASE = "[http_server]\ninsecure_http = true\n[admin]\n"

# The seed's text, inlined so the dialect/mapping rules are also checked where the shared seed
# directory is absent. test_inline_copy_matches_the_seed keeps it honest.
SEED_TEXT = """\
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = false
private_key = "/etc/https-key/https.key"
certificate = "/etc/https-cert/https.crt"

[admin]
insecure_api = true
auth_public_key = "/etc/auth-secret/publicKey"

[attestation_token]
insecure_key = true
attestation_token_type = "CoCo"

[attestation_service]
type = "coco_as_builtin"
work_dir = "/opt/confidential-containers/attestation-service"
policy_engine = "opa"

  [attestation_service.attestation_token_broker]
  type = "Ear"
  policy_dir = "/opt/confidential-containers/attestation-service/policies"

  [attestation_service.attestation_token_config]
  duration_min = 5

  [attestation_service.rvps_config]
  type = "BuiltIn"

    [attestation_service.rvps_config.storage]
    type = "LocalJson"
    file_path = "/opt/confidential-containers/rvps/reference-values/reference-values.json"

[[plugins]]
name = "resource"
type = "LocalFs"
dir_path = "/opt/confidential-containers/kbs/repository"

[policy_engine]
policy_path = "/opt/confidential-containers/opa/policy.rego"
"""

HEAD_CONFIG = """
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = true

[admin]
authorization_mode = "AuthenticatedAuthorization"

[[admin.authentication.bearer_jwt.identity_providers]]
issuer = "issuer"
public_key_uri = "file:///etc/kbs/admin.pem"

[[admin.authorization.regex_acl.acls]]
role = "admin"
allowed_endpoints = "^/kbs/.+$"

[attestation_token]
insecure_header_jwk = true

[attestation_service]
type = "coco_as_builtin"

[attestation_service.attestation_token_broker]
duration_min = 5

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

# The three keys v0.11 no longer reads: accepted and ignored.
DEAD_KEYS = (
    "attestation_token.attestation_token_type",
    "attestation_service.policy_engine",
    "attestation_service.attestation_token_config",
)

Check = Callable[[Config], bool]


def _as(c: Config) -> Any:
    assert c.attestation_service is not None
    return c.attestation_service


# Every seed key that is not ignored, with where it lands in the Config model.
SEED_MAPPING: dict[str, Check] = {
    "http_server.sockets": lambda c: c.http_server.sockets == ["0.0.0.0:8080"],
    "http_server.insecure_http": lambda c: c.http_server.insecure_http is False,
    "http_server.private_key": lambda c: c.http_server.private_key == "/etc/https-key/https.key",
    "http_server.certificate": lambda c: c.http_server.certificate == "/etc/https-cert/https.crt",
    "admin.insecure_api": lambda c: (
        c.admin.mode == "InsecureAllowAll"
        and c.admin.legacy_errors
        and c.admin.startup_warning == "insecure admin APIs are enabled"
        and not c.admin.loopback_only
    ),
    "attestation_token.insecure_key": lambda c: c.attestation_token.insecure_header_jwk is True,
    "attestation_service.type": lambda c: _as(c).type == "coco_as_builtin",
    # `Ear` is the only broker this server has; the key is validated (Simple is refused).
    "attestation_service.attestation_token_broker.type": lambda c: (
        _as(c).broker.profile_name == "tag:github.com,2024:confidential-containers/Trustee"
    ),
    "attestation_service.attestation_token_broker.policy_dir": lambda c: (
        _as(c).policy_dir == "/opt/confidential-containers/attestation-service/policies"
    ),
    "attestation_service.rvps_config.type": lambda c: _as(c).rvps.type == "BuiltIn",
    "attestation_service.rvps_config.storage.type": lambda c: _as(c).rvps.legacy_file is not None,
    "attestation_service.rvps_config.storage.file_path": lambda c: (
        _as(c).rvps.legacy_file
        == "/opt/confidential-containers/rvps/reference-values/reference-values.json"
    ),
    "plugins[0].name": lambda c: [p.name for p in c.plugins] == ["resource"],
    "plugins[0].type": lambda c: "dir_path" in c.plugins[0].params,
    "plugins[0].dir_path": lambda c: (
        c.plugins[0].params["dir_path"] == "/opt/confidential-containers/kbs/repository"
    ),
    "policy_engine.policy_path": lambda c: (
        c.policy_engine is not None
        and c.policy_engine.policy_path == "/opt/confidential-containers/opa/policy.rego"
    ),
}


def _leaf_keys(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_keys(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            yield from _leaf_keys(v, f"{prefix}[{i}]")
    else:
        yield prefix


def _ignored_names(c: Config) -> list[str]:
    return [entry.split(" (", 1)[0] for entry in c.ignored_keys]


def _is_ignored(key: str, ignored: list[str]) -> bool:
    return any(key == name or key.startswith(name + ".") for name in ignored)


def seed_text() -> str:
    return seed_file("kbs-config.toml").read_text()


# --- the seed ----------------------------------------------------------------------------------


def test_inline_copy_matches_the_seed() -> None:
    assert tomllib.loads(seed_text()) == tomllib.loads(SEED_TEXT)


def test_seed_file_loads_as_legacy() -> None:
    c = load_file(seed_file("kbs-config.toml"))
    assert c.dialect == "v0.11"
    assert not c.development


@pytest.mark.parametrize("source", ["inline", "seed"])
def test_seed_is_legacy_and_names_why(source: str) -> None:
    c = parse(seed_text() if source == "seed" else SEED_TEXT, "kbs-config.toml")
    assert c.dialect == "v0.11"
    # The reason names the v0.11 markers it found, so the start-up log can say why.
    for marker in ("admin.insecure_api", "policy_engine", "attestation_token.insecure_key"):
        assert marker in c.dialect_reason


@pytest.mark.parametrize("source", ["inline", "seed"])
def test_seed_dead_keys_are_named_ignored_with_a_reason(source: str) -> None:
    c = parse(seed_text() if source == "seed" else SEED_TEXT)
    ignored = _ignored_names(c)
    for dead in DEAD_KEYS:
        assert dead in ignored, c.ignored_keys
    for entry in c.ignored_keys:
        _name, sep, why = entry.partition(" (")
        assert sep and why.endswith(")") and len(why) > 2, entry
    # auth_public_key is not read while insecure_api = true, so it is reported unused.
    assert "admin.auth_public_key" in ignored
    assert c.admin.legacy_public_key is None


@pytest.mark.parametrize("source", ["inline", "seed"])
def test_seed_maps_every_key(source: str) -> None:
    text = seed_text() if source == "seed" else SEED_TEXT
    c = parse(text)
    ignored = _ignored_names(c)
    unaccounted = []
    for key in _leaf_keys(tomllib.loads(text)):
        if key in SEED_MAPPING:
            assert not _is_ignored(key, ignored), f"{key} is mapped but reported ignored"
            assert SEED_MAPPING[key](c), f"{key} is not mapped as expected"
        elif not _is_ignored(key, ignored):
            unaccounted.append(key)
    assert unaccounted == []
    # The dead v0.10 duration does not leak into the broker; its default (5) is the same value.
    assert _as(c).broker.duration_min == 5


def test_seed_without_policy_engine_table_still_gets_the_upstream_default_path() -> None:
    text = SEED_TEXT.split("[policy_engine]")[0]
    c = parse(text)
    assert c.dialect == "v0.11"
    assert c.policy_engine is not None
    assert c.policy_engine.policy_path == PolicyEngineConfig.policy_path
    assert c.policy_engine.policy_path == "/opt/confidential-containers/kbs/policy.rego"


# --- HEAD stays HEAD ---------------------------------------------------------------------------


def test_head_config_stays_head() -> None:
    c = parse(HEAD_CONFIG)
    assert c.dialect == "head"
    assert c.dialect_reason == ""
    assert c.ignored_keys == []
    assert c.policy_engine is None
    assert c.admin.mode == "AuthenticatedAuthorization"
    assert not c.admin.legacy_errors
    assert c.attestation_service is not None
    assert c.attestation_service.policy_dir is None
    assert c.attestation_service.rvps.legacy_file is None
    assert "dir_path" not in c.plugins[0].params
    assert c.attestation_token.insecure_header_jwk is True


def test_embedded_default_is_head() -> None:
    c = load_embedded_default()
    assert c.dialect == "head"
    assert c.policy_engine is None


@pytest.mark.parametrize(
    ("snippet", "marker"),
    [
        ("[admin]\ninsecure_api = true\n", "admin.insecure_api"),
        ('[admin]\nauth_public_key = "/k.pem"\n', "admin.auth_public_key"),
        ('[admin]\ntype = "DenyAll"\n', "admin.type"),
        ("[admin]\n[attestation_token]\ninsecure_key = true\n", "attestation_token.insecure_key"),
        ('[admin]\n[policy_engine]\npolicy_path = "/p.rego"\n', "policy_engine"),
        (
            '[admin]\n[[plugins]]\nname = "resource"\ntype = "LocalFs"\ndir_path = "/r"\n',
            "plugins[0].type",
        ),
        (
            "[admin]\n[attestation_service]\n[attestation_service.attestation_token_broker]\n"
            'policy_dir = "/p"\n',
            "attestation_service.attestation_token_broker.policy_dir",
        ),
        (
            "[admin]\n[attestation_service]\n[attestation_service.rvps_config]\n"
            '[attestation_service.rvps_config.storage]\ntype = "LocalJson"\n',
            "attestation_service.rvps_config.storage",
        ),
    ],
)
def test_each_legacy_marker_alone_selects_legacy(snippet: str, marker: str) -> None:
    c = parse("[http_server]\ninsecure_http = true\n" + snippet)
    assert c.dialect == "v0.11"
    assert marker in c.dialect_reason


# --- [admin], v0.11–v0.15 form -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "false"])
def test_authorization_mode_with_insecure_api_is_an_error_naming_the_key(value: str) -> None:
    text = (
        BASE + f'insecure_api = {value}\nauth_public_key = "/k"\nauthorization_mode = "DenyAll"\n'
    )
    with pytest.raises(ConfigError) as info:
        parse(text, "kbs.toml")
    assert info.value.key == "admin.authorization_mode"
    assert str(info.value).startswith("kbs.toml: admin.authorization_mode")
    assert "insecure_api" in info.value.message


def test_authorization_mode_with_auth_public_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + 'auth_public_key = "/k"\nauthorization_mode = "InsecureAllowAll"\n')
    assert info.value.key == "admin.authorization_mode"
    assert "auth_public_key" in info.value.message


def test_insecure_api_false_without_key_names_auth_public_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + "insecure_api = false\n", "kbs.toml")
    assert info.value.key == "admin.auth_public_key"
    assert "not set" in info.value.message


def test_auth_public_key_gives_legacy_public_key_mode() -> None:
    for text in (
        BASE + 'insecure_api = false\nauth_public_key = "/etc/kbs/admin.pub"\n',
        BASE + 'auth_public_key = "/etc/kbs/admin.pub"\n',  # insecure_api defaults to false
    ):
        c = parse(text)
        assert c.admin.mode == "LegacyPublicKey"
        assert c.admin.legacy_public_key == "/etc/kbs/admin.pub"
        assert c.admin.legacy_errors
        assert c.admin.startup_warning is None
        assert c.dialect == "v0.11"
        assert "admin.auth_public_key" not in _ignored_names(c)


def test_insecure_api_true_is_allow_all_for_remote_clients_with_the_upstream_warning() -> None:
    c = parse(BASE + "insecure_api = true\n")
    assert c.admin.mode == "InsecureAllowAll"
    assert c.admin.startup_warning == "insecure admin APIs are enabled"
    assert not c.admin.loopback_only
    assert c.admin.legacy_errors


@pytest.mark.parametrize(
    ("admin", "key"),
    [
        ('insecure_api = "yes"\n', "admin.insecure_api"),
        ("insecure_api = true\nbogus = 1\n", "admin.bogus"),
        ("auth_public_key = 7\n", "admin.auth_public_key"),
    ],
)
def test_legacy_admin_mistakes_name_the_key(admin: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + admin)
    assert info.value.key == key


# --- [admin], v0.16–v0.20 form -----------------------------------------------------------------

SIMPLE = (
    BASE
    + """type = "Simple"
[[admin.personas]]
id = "alice"
public_key_path = "/keys/alice.pub"
[[admin.personas]]
id = "bob"
public_key_path = "/keys/bob.pub"
[[admin.roles]]
id = "alice"
allowed_endpoints = "^/kbs/v0/resource/.+$"
[[admin.roles]]
id = "bob"
allowed_endpoints = "^/kbs/v0/resource-policy$"
"""
)


def test_simple_with_personas_and_roles() -> None:
    c = parse(SIMPLE)
    assert c.dialect == "v0.11" and "admin.type" in c.dialect_reason
    assert c.admin.mode == "Simple"
    assert c.admin.legacy_errors
    assert [(p.id, p.public_key_path) for p in c.admin.personas] == [
        ("alice", "/keys/alice.pub"),
        ("bob", "/keys/bob.pub"),
    ]
    assert [(r.role, r.allowed_endpoints) for r in c.admin.acls] == [
        ("alice", "^/kbs/v0/resource/.+$"),
        ("bob", "^/kbs/v0/resource-policy$"),
    ]


def test_simple_without_personas_parses_and_has_no_keys() -> None:
    c = parse(BASE + 'type = "Simple"\n')
    assert c.admin.mode == "Simple"
    assert c.admin.personas == [] and c.admin.acls == []


@pytest.mark.parametrize(
    ("kind", "mode", "warning"),
    [
        (
            "InsecureAllowAll",
            "InsecureAllowAll",
            "The Allow All admin backend is being used. "
            "Admin endpoints will be accessible to anyone.",
        ),
        ("DenyAll", "DenyAll", None),
    ],
)
def test_simple_family_other_types(kind: str, mode: str, warning: str | None) -> None:
    c = parse(BASE + f'type = "{kind}"\n')
    assert c.admin.mode == mode
    assert c.admin.startup_warning == warning
    assert not c.admin.loopback_only


@pytest.mark.parametrize(
    ("admin", "key"),
    [
        (
            'type = "Simple"\n[[admin.roles]]\nid = "a"\nallowed_endpoints = "^/kbs/v0/(x$"\n',
            "admin.roles[0].allowed_endpoints",
        ),
        (
            'type = "Simple"\n[[admin.roles]]\nid = "a"\nallowed_endpoints = "/kbs/v0/.*"\n',
            "admin.roles[0].allowed_endpoints",
        ),
        (
            'type = "Simple"\n[[admin.roles]]\nid = "a"\nallowed_endpoints = "^/kbs/v0/.*"\n',
            "admin.roles[0].allowed_endpoints",
        ),
        (
            'type = "Simple"\n[[admin.roles]]\nallowed_endpoints = "^/kbs/.*$"\n',
            "admin.roles[0].id",
        ),
        ('type = "Simple"\n[[admin.personas]]\nid = "a"\n', "admin.personas[0].public_key_path"),
        (
            'type = "Simple"\n[[admin.personas]]\nid = "a"\npublic_key_path = "/k"\nrole = "x"\n',
            "admin.personas[0].role",
        ),
        ('type = "Sometimes"\n', "admin.type"),
        ('type = "Simple"\nauthorization_mode = "DenyAll"\n', "admin.authorization_mode"),
    ],
)
def test_simple_mistakes_name_the_key(admin: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + admin, "kbs.toml")
    assert info.value.key == key
    assert str(info.value).startswith(f"kbs.toml: {key}")


# --- other v0.11 sections ----------------------------------------------------------------------


def test_insecure_key_is_insecure_header_jwk() -> None:
    assert parse(
        BASE + "[attestation_token]\ninsecure_key = true\n"
    ).attestation_token.insecure_header_jwk
    assert not parse(
        BASE + "[attestation_token]\ninsecure_key = false\n"
    ).attestation_token.insecure_header_jwk
    with pytest.raises(ConfigError) as info:
        parse(BASE + '[attestation_token]\ninsecure_key = "yes"\n')
    assert info.value.key == "attestation_token.insecure_key"


def test_broker_type_alone_gives_the_upstream_default_policy_dir() -> None:
    c = parse(
        BASE + "[attestation_service]\n[attestation_service.attestation_token_broker]\n"
        'type = "Ear"\nduration_min = 7\n'
    )
    assert c.dialect == "v0.11"
    assert _as(c).policy_dir == LEGACY_DEFAULT_POLICY_DIR
    assert LEGACY_DEFAULT_POLICY_DIR == (
        "/opt/confidential-containers/attestation-service/token/ear/policies"
    )
    assert _as(c).broker.duration_min == 7


def test_simple_token_broker_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            BASE + "[attestation_service]\n[attestation_service.attestation_token_broker]\n"
            'type = "Simple"\n'
        )
    assert info.value.key == "attestation_service.attestation_token_broker.type"


def test_local_json_file_path_default() -> None:
    c = parse(
        BASE + "[attestation_service]\n[attestation_service.rvps_config]\n"
        '[attestation_service.rvps_config.storage]\ntype = "LocalJson"\n'
    )
    assert _as(c).rvps.legacy_file == (
        "/opt/confidential-containers/attestation-service/reference_values.json"
    )


def test_rvps_sled_storage_is_named_ignored() -> None:
    c = parse(
        BASE + "[attestation_service]\n[attestation_service.rvps_config]\n"
        '[attestation_service.rvps_config.storage]\ntype = "LocalFs"\nfile_path = "/db"\n'
    )
    assert c.dialect == "v0.11"
    assert _as(c).rvps.legacy_file is None
    assert any(
        e.startswith("attestation_service.rvps_config.storage.type") and "sled" in e
        for e in c.ignored_keys
    )


def test_local_fs_plugin_other_backends_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse(BASE + '[[plugins]]\nname = "resource"\ntype = "Vault"\n')
    assert info.value.key == "plugins[0].type"


def test_policy_engine_without_path_uses_upstream_code_default() -> None:
    c = parse(BASE + "[policy_engine]\n")
    assert c.policy_engine is not None
    assert c.policy_engine.policy_path == "/opt/confidential-containers/kbs/policy.rego"


def test_load_file_names_the_file_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "kbs-config.toml"
    path.write_text(BASE + "insecure_api = false\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}: admin.auth_public_key")
