"""The one typed configuration every component reads (built from kbs-config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trustee.audit.settings import AuditSinkSettings
from trustee.config.verifier import VerifierSettings

StorageType = Literal["Memory", "LocalFs", "LocalJson", "Postgres", "Redis"]
AdminMode = Literal[
    "InsecureAllowAll", "DenyAll", "AuthenticatedAuthorization", "LegacyPublicKey", "Simple"
]
# Which generation of upstream's config a file is written for: "v0.11" for the config dialect of
# trustee v0.11 and before. It decides server-side shapes (resource-policy document, token submod
# names, AS policy dialect), never the wire protocol (that is protocol/generations.py).
Dialect = Literal["head", "v0.11"]

DEFAULT_LOCAL_FS_DIR = "/opt/confidential-containers/storage/local_fs"
DEFAULT_LOCAL_JSON_DIR = "/opt/confidential-containers/storage/local_json"


SessionKind = Literal["Sealed", "Redis", "Memory"]


@dataclass
class HttpServerConfig:
    sockets: list[str] = field(default_factory=lambda: ["127.0.0.1:8080"])
    insecure_http: bool = False
    private_key: str | None = None
    certificate: str | None = None
    payload_request_size: int = 2  # MiB
    worker_count: int = 1
    worker_count_set: bool = False  # written in the config, not the default
    tls_profile: str = "intermediate"
    tls_min_version: str | None = None
    tls_max_version: str | None = None
    tls_ciphers: str | None = None
    tls_groups: list[str] = field(default_factory=list)


@dataclass
class IdentityProvider:
    issuer: str | None = None
    audience: str | None = None
    public_key_uri: str | None = None
    jwk_set_uri: str | None = None


@dataclass
class AclRule:
    role: str
    allowed_endpoints: str


@dataclass
class Persona:
    id: str
    public_key_path: str


@dataclass
class AdminConfig:
    mode: AdminMode = "InsecureAllowAll"
    identity_providers: list[IdentityProvider] = field(default_factory=list)
    acls: list[AclRule] = field(default_factory=list)
    # Restrict InsecureAllowAll to loopback peers (the embedded development default).
    loopback_only: bool = False
    # Legacy forms: `auth_public_key` (v0.11–v0.15) and `type = "Simple"` personas (v0.16–v0.20).
    legacy_public_key: str | None = None
    personas: list[Persona] = field(default_factory=list)
    # Which upstream generation's admin error variant to answer with (AdminAuth before v0.21).
    legacy_errors: bool = False
    startup_warning: str | None = None


@dataclass
class AttestationTokenConfig:
    trusted_jwk_sets: list[str] = field(default_factory=list)
    trusted_certs_paths: list[str] = field(default_factory=list)
    extra_teekey_paths: list[str] = field(default_factory=list)
    insecure_header_jwk: bool = False


@dataclass
class SignerConfig:
    key_path: str
    cert_path: str | None = None
    cert_url: str | None = None


@dataclass
class TokenBrokerConfig:
    duration_min: int = 5
    issuer_name: str = "CoCo-Attestation-Service"
    developer_name: str = "https://confidentialcontainers.org"
    build_name: str = "attestation-service 0.1.0"
    profile_name: str = "tag:github.com,2024:confidential-containers/Trustee"
    verbose_token: bool = True
    signer: SignerConfig | None = None


@dataclass
class RvpsConfig:
    type: str = "BuiltIn"  # or "GrpcRemote": an RVPS server at `address`
    storage_type: StorageType | None = None
    # GrpcRemote: host:port, with or without http:// (https:// for TLS)
    address: str | None = None
    # v0.11-era `[rvps_config.storage] type = "LocalJson", file_path`: a JSON array of records.
    legacy_file: str | None = None


RemoteAsType = Literal["coco_as_grpc", "coco_as_restful"]


@dataclass
class RemoteAsConfig:
    """An Attestation Service in another process (trustee.config.remote_as)."""

    type: RemoteAsType
    address: str  # `as_addr` (gRPC) or `url` (REST), as written
    pool_size: int = 100
    timeout_ms: int = 5000  # one request to the AS, connection included
    ca_cert: str | None = None  # PEM roots for an https address; else the system's


@dataclass
class AttestationServiceConfig:
    type: str = "coco_as_builtin"
    timeout: int = 5  # minutes; also the RCAR session lifetime
    # Set for `coco_as_grpc` / `coco_as_restful`: every other field but `timeout` is unused.
    remote: RemoteAsConfig | None = None
    rvps: RvpsConfig = field(default_factory=RvpsConfig)
    broker: TokenBrokerConfig = field(default_factory=TokenBrokerConfig)
    storage_type: StorageType | None = None
    # v0.11-era: AS policies live in `<policy_dir>/opa/<id>.rego`.
    policy_dir: str | None = None
    # `[verifier_config]`: collateral sources, test roots, SNP VMPL (trustee.config.verifier).
    verifier_config: VerifierSettings = field(default_factory=VerifierSettings)


@dataclass
class StorageConfig:
    storage_type: StorageType = "Memory"
    local_fs_dir: str = DEFAULT_LOCAL_FS_DIR
    local_json_dir: str = DEFAULT_LOCAL_JSON_DIR
    # [storage_backend.backends.postgres]: host, port, username, password, db, table; or a URL
    # (env POSTGRES_URL, which overrides the table).
    postgres: dict[str, Any] = field(default_factory=dict)
    postgres_url: str | None = None
    # [storage_backend.backends.redis] url (env REDIS_URL overrides), and for rediss:// the
    # CA certificates (PEM) that vouch for the server instead of the system trust store.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_ca_file: str | None = None


@dataclass
class PluginConfig:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProtocolConfig:
    accepted_versions: list[str] = field(default_factory=lambda: ["0.1.1", "0.2.0", "0.4.0"])
    # Give resource policies both `submods.cpu` and `submods.cpu0` (input only, never the token),
    # so policies written for either upstream generation judge every client alike.
    submod_alias: bool = True


@dataclass
class PolicyEngineConfig:
    """v0.11–v0.18 `[policy_engine]`: the resource policy as a file, re-read when it changes."""

    policy_path: str = "/opt/confidential-containers/kbs/policy.rego"


@dataclass
class PolicyLimitsConfig:
    """What one Rego evaluation (attestation or resource policy) may use before it is stopped:
    `[policy_engine] evaluation_timeout_ms` and `evaluation_memory_mib`, in either dialect."""

    evaluation_timeout_ms: int = 1000
    evaluation_memory_mib: int = 64


@dataclass
class Config:
    http_server: HttpServerConfig = field(default_factory=HttpServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    attestation_token: AttestationTokenConfig = field(default_factory=AttestationTokenConfig)
    attestation_service: AttestationServiceConfig | None = field(
        default_factory=AttestationServiceConfig
    )
    storage_backend: StorageConfig = field(default_factory=StorageConfig)
    session_storage_type: StorageType | None = None
    # `session_key` files and their keys (the first seals); none: a key made at start.
    session_key_files: list[str] = field(default_factory=list)
    session_key_material: list[bytes] = field(default_factory=list, repr=False)
    plugins: list[PluginConfig] = field(default_factory=list)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    policy_engine: PolicyEngineConfig | None = None
    policy_limits: PolicyLimitsConfig = field(default_factory=PolicyLimitsConfig)
    # `[[audit.sinks]]`, read; trustee.audit.build makes the dispatcher from them.
    audit_sinks: tuple[AuditSinkSettings, ...] = ()
    dialect: Dialect = "head"
    dialect_reason: str = ""
    ignored_keys: list[str] = field(default_factory=list)
    source: str | None = None
    development: bool = False

    def session_kind(self) -> SessionKind:
        """Where RCAR sessions live: in Redis or this process's memory when
        `session_storage_type` says so, else in the sealed cookie (no store)."""
        if self.session_storage_type == "Redis":
            return "Redis"
        if self.session_storage_type == "Memory":
            return "Memory"
        return "Sealed"
