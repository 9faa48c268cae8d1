"""kbs-config.toml (upstream v0.21 schema) → Config.

Unknown keys are ignored as upstream does, except in `[admin]` where upstream denies them.
"""

from __future__ import annotations

import logging
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from trustee.audit.settings import audit_sinks
from trustee.config.errors import ConfigError
from trustee.config.model import (
    AclRule,
    AdminConfig,
    AdminMode,
    AttestationServiceConfig,
    AttestationTokenConfig,
    Config,
    HttpServerConfig,
    IdentityProvider,
    Persona,
    PluginConfig,
    PolicyEngineConfig,
    PolicyLimitsConfig,
    ProtocolConfig,
    SignerConfig,
    TokenBrokerConfig,
)
from trustee.config.reader import Table
from trustee.config.remote_as import remote_as, remote_type
from trustee.config.rvps_section import rvps_config
from trustee.config.stores import (
    STORAGE_TYPES,
    default_worker_count,
    session_keys,
    storage,
    storage_environment,
)
from trustee.config.verifier import verifier_settings
from trustee.protocol.generations import WIRE_GENERATIONS

log = logging.getLogger(__name__)

ADMIN_MODES: dict[str, AdminMode] = {
    "InsecureAllowAll": "InsecureAllowAll",
    "DenyAll": "DenyAll",
    "AuthenticatedAuthorization": "AuthenticatedAuthorization",
}
TLS_PROFILES = ("old", "intermediate", "modern", "custom")
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
KNOWN_PLUGINS = ("resource", "sample")
SUPPORTED_PROTOCOL_VERSIONS = tuple(WIRE_GENERATIONS)
LEGACY_DEFAULT_POLICY_DIR = "/opt/confidential-containers/attestation-service/token/ear/policies"


class Notes:
    """What the loader learnt beyond the values: legacy markers and keys it ignores."""

    def __init__(self) -> None:
        self.legacy: list[str] = []
        self.ignored: list[str] = []

    def ignore(self, t: Table, name: str, why: str) -> None:
        if t.has(name):
            self.ignored.append(f"{t.key(name)} ({why})")


def read_config_text(path: str | Path, kind: str) -> str:
    """A config file's text; ConfigError naming the file when it cannot be read as text."""
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file: {exc.strerror}", source) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"not a {kind} text file: byte {exc.start} is not UTF-8", source
        ) from exc


def load_file(path: str | Path) -> Config:
    return parse(read_config_text(path, "TOML"), str(path))


def load_embedded_default() -> Config:
    text = resources.files("trustee.config").joinpath("default.toml").read_text()
    config = parse(text, "<embedded development config>")
    config.development = True
    config.admin.loopback_only = True
    return config


def parse(text: str, source: str | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"invalid TOML: {exc}", source) from exc
    try:
        return _build(Table(data, ""))
    except ConfigError as exc:
        raise exc.with_source(source) from None


def _build(root: Table) -> Config:
    for required in ("http_server", "admin"):
        if not root.has(required):
            raise ConfigError(required, "missing required table")
    notes = Notes()
    config = Config(
        http_server=_http_server(root.table("http_server")),
        admin=_admin(root.table("admin"), notes),
        attestation_token=_attestation_token(root.table("attestation_token"), notes),
        attestation_service=attestation_service_section(root.table("attestation_service"), notes),
        storage_backend=storage(root.table("storage_backend")),
        plugins=[_plugin(t, notes) for t in root.tables("plugins")],
        protocol=_protocol(root.table("protocol")),
        policy_engine=_policy_engine(root.table("policy_engine"), notes),
        policy_limits=policy_limits_section(root.table("policy_engine")),
    )
    if root.has("session_storage_type"):
        config.session_storage_type = root.choice("session_storage_type", STORAGE_TYPES)
    session_keys(root, config)
    if not config.http_server.worker_count_set:
        config.http_server.worker_count = default_worker_count(config)
    storage_environment(config)
    audit = root.table("audit")
    if audit is not None:
        config.audit_sinks = audit_sinks(audit)
    if notes.legacy:
        config.dialect = "v0.11"
        config.dialect_reason = ", ".join(notes.legacy)
        if config.policy_engine is None:
            config.policy_engine = PolicyEngineConfig()
    config.ignored_keys = notes.ignored
    return config


def is_socket_address(sock: str) -> bool:
    """`host:port` with a port from 1 to 65535 (`[v6]:port` too)."""
    host, sep, port = sock.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def _http_server(t: Table | None) -> HttpServerConfig:
    cfg = HttpServerConfig()
    if t is None:
        return cfg
    cfg.sockets = t.str_list("sockets", cfg.sockets)
    if not cfg.sockets:
        raise ConfigError(t.key("sockets"), "at least one socket address is required")
    for sock in cfg.sockets:
        if not is_socket_address(sock):
            raise ConfigError(t.key("sockets"), f"{sock!r} is not an ip:port address")
    cfg.insecure_http = t.get("insecure_http", bool, False)
    cfg.private_key = t.opt("private_key", str)
    cfg.certificate = t.opt("certificate", str)
    cfg.payload_request_size = t.get("payload_request_size", int, 2)
    if cfg.payload_request_size <= 0:
        raise ConfigError(t.key("payload_request_size"), "must be a positive number of MiB")
    if t.has("worker_count"):
        cfg.worker_count = t.req("worker_count", int)
        if cfg.worker_count < 1:
            raise ConfigError(t.key("worker_count"), "must be at least 1")
        cfg.worker_count_set = True
    profile = t.get("tls_profile", str, "intermediate").lower()
    if profile not in TLS_PROFILES:
        raise ConfigError(t.key("tls_profile"), f"expected one of {', '.join(TLS_PROFILES)}")
    cfg.tls_profile = profile
    for name in ("tls_min_version", "tls_max_version"):
        value = t.opt(name, str)
        if value is not None and value not in TLS_VERSIONS:
            raise ConfigError(t.key(name), f"expected one of {', '.join(TLS_VERSIONS)}")
    cfg.tls_min_version = t.opt("tls_min_version", str)
    cfg.tls_max_version = t.opt("tls_max_version", str)
    if (
        cfg.tls_min_version
        and cfg.tls_max_version
        and TLS_VERSIONS.index(cfg.tls_min_version) > TLS_VERSIONS.index(cfg.tls_max_version)
    ):
        raise ConfigError(t.key("tls_min_version"), "is greater than tls_max_version")
    cfg.tls_ciphers = t.opt("tls_ciphers", str)
    cfg.tls_groups = t.str_list("tls_groups")
    if not cfg.insecure_http:
        for name in ("private_key", "certificate"):
            if getattr(cfg, name) is None:
                raise ConfigError(t.key(name), "required unless insecure_http = true")
    return cfg


def _admin(t: Table | None, notes: Notes) -> AdminConfig:
    assert t is not None
    legacy_keys = [k for k in ("insecure_api", "auth_public_key", "type", "personas", "roles")
                   if t.has(k)]  # fmt: skip
    if legacy_keys:
        if t.has("authorization_mode"):
            raise ConfigError(
                t.key("authorization_mode"),
                f"cannot be combined with the older admin key {legacy_keys[0]!r}",
            )
        return _legacy_admin(t, notes)
    t.deny_unknown(["authorization_mode", "authentication", "authorization"])
    cfg = AdminConfig(mode=t.choice("authorization_mode", ADMIN_MODES, "InsecureAllowAll"))
    if cfg.mode != "AuthenticatedAuthorization":
        return cfg
    authn = t.table("authentication")
    authz = t.table("authorization")
    if authn is None:
        raise ConfigError(t.key("authentication"), "required by AuthenticatedAuthorization")
    if authz is None:
        raise ConfigError(t.key("authorization"), "required by AuthenticatedAuthorization")
    authn.deny_unknown(["bearer_jwt"])
    bearer = authn.table("bearer_jwt")
    if bearer is None:
        raise ConfigError(authn.key("bearer_jwt"), "missing required table")
    bearer.deny_unknown(["identity_providers"])
    idps = bearer.tables("identity_providers")
    if not idps:
        raise ConfigError(bearer.key("identity_providers"), "at least one identity provider")
    for idp in idps:
        idp.deny_unknown(["issuer", "audience", "public_key_uri", "jwk_set_uri"])
        provider = IdentityProvider(
            issuer=idp.opt("issuer", str),
            audience=idp.opt("audience", str),
            public_key_uri=idp.opt("public_key_uri", str),
            jwk_set_uri=idp.opt("jwk_set_uri", str),
        )
        if provider.public_key_uri is None and provider.jwk_set_uri is None:
            raise ConfigError(idp.path, "needs public_key_uri or jwk_set_uri")
        cfg.identity_providers.append(provider)
    authz.deny_unknown(["regex_acl"])
    regex_acl = authz.table("regex_acl")
    if regex_acl is None:
        raise ConfigError(authz.key("regex_acl"), "missing required table")
    regex_acl.deny_unknown(["acls"])
    for acl in regex_acl.tables("acls"):
        acl.deny_unknown(["role", "allowed_endpoints"])
        cfg.acls.append(
            AclRule(
                role=acl.req("role", str), allowed_endpoints=_acl_regex(acl, "allowed_endpoints")
            )
        )
    return cfg


def _acl_regex(t: Table, name: str) -> str:
    pattern = t.req(name, str)
    if not pattern.startswith("^/kbs") or not pattern.endswith("$"):
        raise ConfigError(t.key(name), f"{pattern!r} must start with ^/kbs and end with $")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(t.key(name), f"invalid regex: {exc}") from exc
    return pattern


LEGACY_ADMIN_TYPES: dict[str, AdminMode] = {
    "Simple": "Simple",
    "InsecureAllowAll": "InsecureAllowAll",
    "DenyAll": "DenyAll",
}


def _legacy_admin(t: Table, notes: Notes) -> AdminConfig:
    """v0.11–v0.15 `insecure_api`/`auth_public_key` and v0.16–v0.20 `type` + personas/roles."""
    t.deny_unknown(["insecure_api", "auth_public_key", "type", "personas", "roles"])
    cfg = AdminConfig(legacy_errors=True)
    if t.has("type"):
        notes.legacy.append(t.key("type"))
        cfg.mode = t.choice("type", LEGACY_ADMIN_TYPES)
        for persona in t.tables("personas"):
            persona.deny_unknown(["id", "public_key_path"])
            cfg.personas.append(
                Persona(persona.req("id", str), persona.req("public_key_path", str))
            )
        for role in t.tables("roles"):
            role.deny_unknown(["id", "allowed_endpoints"])
            cfg.acls.append(
                AclRule(
                    role=role.req("id", str),
                    allowed_endpoints=_acl_regex(role, "allowed_endpoints"),
                )
            )
        if cfg.mode == "InsecureAllowAll":
            cfg.startup_warning = (
                "The Allow All admin backend is being used. "
                "Admin endpoints will be accessible to anyone."
            )
        return cfg
    notes.legacy.append(t.key("insecure_api" if t.has("insecure_api") else "auth_public_key"))
    if t.get("insecure_api", bool, False):
        cfg.mode = "InsecureAllowAll"
        cfg.startup_warning = "insecure admin APIs are enabled"
        notes.ignore(t, "auth_public_key", "not read while insecure_api = true")
        return cfg
    key = t.opt("auth_public_key", str)
    if key is None:
        raise ConfigError(t.key("auth_public_key"), "is not set in the config file")
    cfg.mode = "LegacyPublicKey"
    cfg.legacy_public_key = key
    return cfg


def _attestation_token(t: Table | None, notes: Notes) -> AttestationTokenConfig:
    cfg = AttestationTokenConfig()
    if t is None:
        return cfg
    cfg.trusted_jwk_sets = t.str_list("trusted_jwk_sets")
    cfg.trusted_certs_paths = t.str_list("trusted_certs_paths")
    cfg.extra_teekey_paths = t.str_list("extra_teekey_paths")
    cfg.insecure_header_jwk = t.get("insecure_header_jwk", bool, False)
    if t.has("insecure_key"):
        # The ≤v0.20 name of insecure_header_jwk.
        notes.legacy.append(t.key("insecure_key"))
        cfg.insecure_header_jwk = cfg.insecure_header_jwk or t.req("insecure_key", bool)
    notes.ignore(t, "attestation_token_type", "a v0.9/v0.10 verifier selector, unused since v0.11")
    return cfg


def attestation_service_section(t: Table | None, notes: Notes) -> AttestationServiceConfig | None:
    if t is None:
        return None
    cfg = AttestationServiceConfig()
    kind = t.get("type", str, "coco_as_builtin")
    remote = remote_type(kind)
    if remote is None and kind.lower() not in ("coco_as_builtin", "cocoasbuiltin", "builtin"):
        raise ConfigError(
            t.key("type"),
            f"attestation service type {kind!r} is not supported; use coco_as_builtin, "
            "coco_as_grpc or coco_as_restful",
        )
    cfg.timeout = t.get("timeout", int, 5)
    if cfg.timeout <= 0:
        raise ConfigError(t.key("timeout"), "must be a positive number of minutes")
    if remote is not None:
        cfg.type = remote
        cfg.remote, ignored = remote_as(t, remote)
        notes.ignored += ignored
        return cfg
    notes.ignore(t, "policy_engine", "a v0.10 key; policies are Rego")
    notes.ignore(t, "attestation_token_config", "a v0.10 table; use attestation_token_broker")
    notes.ignore(t, "policy_ids", "unused")
    if t.has("work_dir"):
        notes.legacy.append(t.key("work_dir"))
        t.req("work_dir", str)  # a path, as upstream reads it, though unused here
        notes.ignored.append(f"{t.key('work_dir')} (this server keeps AS data as configured)")
    if t.has("storage_type"):
        cfg.storage_type = t.choice("storage_type", STORAGE_TYPES)
    rv = t.table("rvps_config")
    if rv is not None:
        cfg.rvps = rvps_config(rv, notes)
    verifiers = t.table("verifier_config")
    if verifiers is not None:
        cfg.verifier_config = verifier_settings(verifiers)
    broker = t.table("attestation_token_broker")
    if broker is not None:
        cfg.broker = _broker(broker)
        if broker.has("policy_dir") or broker.has("type"):
            notes.legacy.append(broker.key("policy_dir" if broker.has("policy_dir") else "type"))
            cfg.policy_dir = broker.get("policy_dir", str, LEGACY_DEFAULT_POLICY_DIR)
            kind = broker.get("type", str, "Ear")
            if kind != "Ear":
                raise ConfigError(broker.key("type"), f"token type {kind!r} is not supported; Ear")
    return cfg


def _broker(t: Table) -> TokenBrokerConfig:
    d = TokenBrokerConfig()
    cfg = TokenBrokerConfig(
        duration_min=t.get("duration_min", int, d.duration_min),
        issuer_name=t.get("issuer_name", str, d.issuer_name),
        developer_name=t.get("developer_name", str, d.developer_name),
        build_name=t.get("build_name", str, d.build_name),
        profile_name=t.get("profile_name", str, d.profile_name),
        verbose_token=t.get("verbose_token", bool, d.verbose_token),
    )
    if cfg.duration_min <= 0:
        raise ConfigError(t.key("duration_min"), "must be a positive number of minutes")
    signer = t.table("signer")
    if signer is not None:
        cfg.signer = SignerConfig(
            key_path=signer.req("key_path", str),
            cert_path=signer.opt("cert_path", str),
            cert_url=signer.opt("cert_url", str),
        )
    return cfg


def _plugin(t: Table, notes: Notes) -> PluginConfig:
    name = t.req("name", str)
    if name not in KNOWN_PLUGINS:
        raise ConfigError(
            t.key("name"), f"unknown plugin {name!r}; known: {', '.join(KNOWN_PLUGINS)}"
        )
    params: dict[str, Any] = {k: v for k, v in t.data.items() if k != "name"}
    if name == "resource" and t.has("type"):
        # ≤v0.18: `type = "LocalFs"` + `dir_path` is a plain <repo>/<type>/<tag> tree.
        notes.legacy.append(t.key("type"))
        kind = t.req("type", str)
        if kind != "LocalFs":
            raise ConfigError(t.key("type"), f"resource backend {kind!r} is not supported; LocalFs")
        params["dir_path"] = t.get("dir_path", str, "/opt/confidential-containers/kbs/repository")
    elif name == "resource":
        backend = str(params.get("storage_backend_type", "kvstorage"))
        if backend.lower() != "kvstorage":
            raise ConfigError(
                t.key("storage_backend_type"), f"resource backend {backend!r} is not supported"
            )
    if name == "sample":
        t.req("item", str)
    return PluginConfig(name=name, params=params)


def _protocol(t: Table | None) -> ProtocolConfig:
    cfg = ProtocolConfig()
    if t is None:
        return cfg
    versions = t.str_list("accepted_versions", cfg.accepted_versions)
    for v in versions:
        if v not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ConfigError(
                t.key("accepted_versions"),
                f"protocol {v!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}",
            )
    if not versions:
        raise ConfigError(t.key("accepted_versions"), "at least one protocol version")
    cfg.accepted_versions = versions
    cfg.submod_alias = t.get("submod_alias", bool, True)
    return cfg


# Evaluation limits share upstream's `[policy_engine]` table; a table holding only these is
# not the v0.11 resource-policy-file form.
_LIMIT_KEYS = {
    "evaluation_timeout_ms": (10, 60_000),
    "evaluation_memory_mib": (1, 4096),
}


def _policy_engine(t: Table | None, notes: Notes) -> PolicyEngineConfig | None:
    if t is None:
        return None
    if not t.has("policy_path") and set(t.data) & set(_LIMIT_KEYS):
        return None
    notes.legacy.append(t.path)
    return PolicyEngineConfig(policy_path=t.get("policy_path", str, PolicyEngineConfig.policy_path))


def policy_limits_section(t: Table | None) -> PolicyLimitsConfig:
    cfg = PolicyLimitsConfig()
    if t is None:
        return cfg
    for name, (low, high) in _LIMIT_KEYS.items():
        value = t.get(name, int, getattr(cfg, name))
        if not low <= value <= high:
            raise ConfigError(t.key(name), f"{value} is outside {low}..{high}")
        setattr(cfg, name, value)
    return cfg
