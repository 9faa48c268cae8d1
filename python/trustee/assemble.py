"""Assemble a Kbs from a Config: stores, attestation service, token verifier, plugins, admin."""

from __future__ import annotations

import logging

from trustee.admin.auth import AdminAuthorizer, AdminConfigError
from trustee.as_assemble import attestation_service
from trustee.attestation.backend import AttestationBackend
from trustee.audit.build import dispatcher_from_settings
from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher
from trustee.config.errors import ConfigError
from trustee.config.model import Config
from trustee.kbs import Kbs
from trustee.metrics import Metrics
from trustee.plugins.base import Plugin
from trustee.plugins.resource import ResourcePlugin, SamplePlugin
from trustee.plugins.resource_policy import (
    FilePolicySource,
    KvPolicySource,
    PolicySource,
    ResourcePolicy,
)
from trustee.policy.engine import PolicyCache, PolicyLimits
from trustee.storage import session_keys
from trustee.storage.factory import StoreRegistry
from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.plaintree import PlainTreeStore
from trustee.storage.sealed_sessions import SealedSessions
from trustee.storage.sessions import MemorySessionStore, Sessions
from trustee.token.signer_keys import PublishedSignerKeys
from trustee.token.verifier import (
    AttestationTokenVerifier,
    TokenVerifierConfig,
    TokenVerifierConfigError,
)

log = logging.getLogger("trustee.assemble")


async def fetch_url(url: str) -> bytes:
    # Only remote JWK sets need it, and only while the server starts: loaded on demand.
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


def _resource_store(params: dict[str, object], main_store: KeyValueStore) -> KeyValueStore:
    if "dir_path" not in params:
        return main_store
    tree = PlainTreeStore(str(params["dir_path"]))
    try:
        tree.prepare()
    except StorageError as exc:
        raise ConfigError("plugins.dir_path", str(exc)) from exc
    return tree


def _session_store(config: Config, stores: StoreRegistry) -> Sessions:
    kind = config.session_kind()
    if kind == "Redis":
        from trustee.storage.redis_sessions import RedisSessionStore

        log.info("RCAR sessions in Redis (%s)", stores.redis().name)
        return RedisSessionStore(stores.redis())
    if kind == "Memory":
        log.info("RCAR sessions in this process's memory (one worker, one replica)")
        return MemorySessionStore()
    if not config.session_key_material:
        # Workers get the key their parent made; a lone process makes its own.
        config.session_key_material = [session_keys.generate()]
    sealed = SealedSessions(config.session_key_material)
    origin = ", ".join(config.session_key_files) or "made at start, lost at restart"
    log.info("RCAR sessions sealed in the cookie (session key %s: %s)", sealed.key_id, origin)
    return sealed


def _log_config(config: Config) -> None:
    if config.dialect == "v0.11":
        log.info(
            "configuration of the v0.11 era (%s): legacy server-side shapes", config.dialect_reason
        )
    for key in config.ignored_keys:
        log.info("config key ignored: %s", key)
    log.info("KBS storage backend: %s", config.storage_backend.storage_type)


def _audit(config: Config) -> AuditDispatcher | NullDispatcher:
    try:
        audit = dispatcher_from_settings(config.audit_sinks)
    except ConfigError as exc:
        raise exc.with_source(config.source) from None
    for sink in config.audit_sinks:
        log.info("audit sink: %s%s", sink.type, " (required)" if sink.required else "")
    return audit


def _plugins(config: Config, main_store: KeyValueStore) -> dict[str, Plugin]:
    plugins: dict[str, Plugin] = {}
    for plugin in config.plugins:
        if plugin.name == "resource":
            plugins["resource"] = ResourcePlugin(_resource_store(plugin.params, main_store))
        elif plugin.name == "sample":
            plugins["sample"] = SamplePlugin(str(plugin.params["item"]))
    return plugins


async def _token_verifier(
    config: Config, signer_keys: PublishedSignerKeys | None
) -> AttestationTokenVerifier:
    tv = config.attestation_token
    try:
        verifier = AttestationTokenVerifier(
            TokenVerifierConfig(
                trusted_jwk_sets=tv.trusted_jwk_sets,
                trusted_certs_paths=tv.trusted_certs_paths,
                insecure_header_jwk=tv.insecure_header_jwk,
                extra_teekey_paths=tv.extra_teekey_paths,
            ),
            fetch_url,
            signer_keys=signer_keys,
        )
        await verifier.load_remote_jwk_sets()
    except TokenVerifierConfigError as exc:
        raise ConfigError("attestation_token", str(exc), config.source) from exc
    return verifier


async def _resource_policy(
    config: Config, main_store: KeyValueStore, cache: PolicyCache
) -> ResourcePolicy:
    source: PolicySource = KvPolicySource(main_store)
    if config.policy_engine is not None:
        source = FilePolicySource(config.policy_engine.policy_path)
    resource_policy = ResourcePolicy(
        source,
        cache,
        legacy=config.dialect == "v0.11",
        submod_alias=config.protocol.submod_alias,
    )
    try:
        if await resource_policy.install_default():
            log.info("default resource policy installed")
    except StorageError as exc:
        raise ConfigError("policy_engine.policy_path", str(exc), config.source) from exc
    return resource_policy


async def _admin(config: Config) -> AdminAuthorizer:
    admin = AdminAuthorizer(config.admin)
    try:
        await admin.load(fetch_url)
    except AdminConfigError as exc:
        raise ConfigError("admin", str(exc), config.source) from exc
    return admin


async def _attestation(
    config: Config,
    stores: StoreRegistry,
    cache: PolicyCache,
    audit: AuditDispatcher | NullDispatcher,
    metrics: Metrics,
) -> tuple[AttestationBackend | None, PublishedSignerKeys | None]:
    """The KBS's AS, and the token keys it publishes when the verifier must fetch them."""
    as_cfg = config.attestation_service
    if as_cfg is None:
        log.info("no [attestation_service]: resource-only (passport) KBS")
        return None, None
    if as_cfg.remote is not None:
        from trustee.remote_as.build import remote_backend

        return await remote_backend(as_cfg.remote)
    built_in = await attestation_service(
        as_cfg,
        stores,
        cache,
        audit=audit,
        metrics=metrics,
        legacy=config.dialect == "v0.11",
        source=config.source,
    )
    return built_in, None


async def assemble(config: Config, stores: StoreRegistry | None = None) -> Kbs:
    """The KBS a configuration describes, every collaborator built before the one that uses
    it, so nothing is patched in afterwards."""
    _log_config(config)
    stores = stores or StoreRegistry(config.storage_backend)
    main_store = stores.get()
    metrics = Metrics()
    audit = _audit(config)
    metrics.set_audit_stats(audit.stats)
    cache = PolicyCache(
        limits=PolicyLimits(
            config.policy_limits.evaluation_timeout_ms, config.policy_limits.evaluation_memory_mib
        )
    )
    attestation, signer_keys = await _attestation(config, stores, cache, audit, metrics)
    return Kbs(
        config=config,
        sessions=_session_store(config, stores),
        attestation=attestation,
        token_verifier=await _token_verifier(config, signer_keys),
        resource_policy=await _resource_policy(config, main_store, cache),
        plugins=_plugins(config, main_store),
        admin=await _admin(config),
        metrics=metrics,
        audit=audit,
        stores=[main_store],
    )
