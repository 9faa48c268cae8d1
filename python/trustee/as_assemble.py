"""The Attestation Service a configuration describes: policy store, RVPS, token broker and
hardware verifiers, for the KBS's built-in AS and for a standalone one alike."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustee.attestation.ear import EarBroker, EarError, Signer, load_signer
from trustee.attestation.hardware import HardwareVerifier
from trustee.attestation.observers import EventSink, VerifierMetrics
from trustee.attestation.policies import (
    DEFAULT_POLICY_IDS,
    LEGACY_DEFAULT_POLICY_IDS,
    AttestationPolicyStore,
)
from trustee.attestation.rvps import ReferenceValues, ReferenceValueStore
from trustee.attestation.service import AttestationService
from trustee.audit.build import dispatcher_from_settings
from trustee.audit.dispatcher import AuditDispatcher, NullDispatcher
from trustee.collateral.build import tdx_source_from_settings, vek_source_from_settings
from trustee.config.as_file import AsConfig
from trustee.config.errors import ConfigError
from trustee.config.model import AttestationServiceConfig
from trustee.config.verifier import VerifierSettings
from trustee.metrics import Metrics
from trustee.policy.engine import PolicyCache, PolicyLimits
from trustee.storage.factory import StoreRegistry
from trustee.storage.kv import KeyValueStore, StorageError
from trustee.storage.localfs import LocalFsStore
from trustee.storage.rvfile import ReferenceValueFile

if TYPE_CHECKING:
    from trustee.collateral.snp import VekSource
    from trustee.collateral.tdx import TdxCollateralSource

log = logging.getLogger("trustee.assemble")


def build_hardware_verifier(
    settings: VerifierSettings,
    *,
    audit: EventSink | None = None,
    metrics: VerifierMetrics | None = None,
) -> HardwareVerifier:
    """TDX/SNP verifiers from `[attestation_service.verifier_config]`.

    Without configured sources, upstream's defaults apply: Intel PCS for DCAP collateral and
    AMD KDS for VCEKs (both fetched only when such evidence arrives, then cached).
    """
    key = "attestation_service.verifier_config"
    allow_vmpl = settings.snp_allow_nonzero_vmpl
    for path in settings.insecure_test_roots:
        log.warning(
            "INSECURE: %s.insecure_test_roots trusts %s as a TDX/SNP root; evidence signed by "
            "this test PKI is accepted as genuine hardware evidence. Never use in production.",
            key,
            path,
        )
    if settings.tpm_ak_roots:
        log.info(
            "%s.tpm_ak_roots: tpm evidence needs an AK certificate chaining to %s",
            key,
            ", ".join(settings.tpm_ak_roots),
        )
    if allow_vmpl:
        log.warning("%s.snp_verifier.allow_nonzero_vmpl: SNP reports from VMPL > 0 accepted", key)
    tdx_source: TdxCollateralSource = tdx_source_from_settings(settings.tdx)
    vek_source: VekSource = vek_source_from_settings(settings.snp)
    if settings.bundle is not None:
        from trustee.collateral.bundle_sources import BundleTdxSource, BundleVekSource

        tdx_source, vek_source = BundleTdxSource(settings.bundle), BundleVekSource(settings.bundle)
        log.info(
            "%s.collateral_bundle: DCAP collateral and SNP VCEKs come from %s only (%d TDX, "
            "%d SGX, %d VCEK); nothing is fetched",
            key,
            settings.bundle.path,
            sum(tee == "tdx" for tee, _, _ in settings.bundle.dcap),
            sum(tee == "sgx" for tee, _, _ in settings.bundle.dcap),
            len(settings.bundle.vceks),
        )
    return HardwareVerifier(
        tdx_source=tdx_source,
        vek_source=vek_source,
        test_anchors=settings.test_anchors,
        snp_allow_nonzero_vmpl=allow_vmpl,
        tpm_ak_roots=settings.tpm_ak_anchors,
        audit=audit,
        metrics=metrics,
    )


async def _policy_store(
    as_cfg: AttestationServiceConfig, as_store: KeyValueStore, cache: PolicyCache, legacy: bool
) -> AttestationPolicyStore:
    defaults = LEGACY_DEFAULT_POLICY_IDS if legacy else DEFAULT_POLICY_IDS
    if as_cfg.policy_dir is not None:
        store = LocalFsStore(as_cfg.policy_dir)
        policies = AttestationPolicyStore(
            store, cache, namespace="opa", defaults=defaults, per_claim_rules=legacy
        )
    else:
        policies = AttestationPolicyStore(
            as_store, cache, defaults=defaults, per_claim_rules=legacy
        )
    installed = await policies.install_defaults()
    if installed:
        log.info("default attestation policies installed: %s", ", ".join(installed))
    return policies


async def attestation_service(
    as_cfg: AttestationServiceConfig,
    stores: StoreRegistry,
    cache: PolicyCache,
    *,
    audit: EventSink | None,
    metrics: VerifierMetrics | None,
    legacy: bool,
    source: str | None,
    key: str = "attestation_service",
    signer: Signer | None = None,
) -> AttestationService:
    """The AS a configuration table describes (the KBS's `[attestation_service]` or a
    standalone AS's file); `key` prefixes the keys named in errors. `signer` stands in for
    the ephemeral key of a broker configured without one (shared by a server's workers)."""
    as_store = stores.get(as_cfg.storage_type)
    log.info("Attestation Service storage backend: %s", as_cfg.storage_type or "(global)")
    try:
        policies = await _policy_store(as_cfg, as_store, cache, legacy)
    except StorageError as exc:
        raise ConfigError(key, str(exc), source) from exc
    rvps = _reference_values(as_cfg, stores, policies)
    try:
        if signer is None or as_cfg.broker.signer is not None:
            signer = load_signer(as_cfg.broker)
        broker = EarBroker(as_cfg.broker, signer)
    except EarError as exc:
        raise ConfigError(
            f"{key}.attestation_token_broker.signer".lstrip("."), str(exc), source
        ) from exc
    hardware = build_hardware_verifier(as_cfg.verifier_config, audit=audit, metrics=metrics)
    return AttestationService(
        policies, rvps, broker, as_cfg.broker, legacy=legacy, hardware=hardware, metrics=metrics
    )


def _reference_values(
    as_cfg: AttestationServiceConfig, stores: StoreRegistry, policies: AttestationPolicyStore
) -> ReferenceValues:
    if as_cfg.rvps.type == "GrpcRemote":
        from trustee.remote_as.rvps_client import RemoteReferenceValues

        assert as_cfg.rvps.address is not None  # the loader sets upstream's default
        log.info("connect to remote RVPS: %s", as_cfg.rvps.address)
        return RemoteReferenceValues(as_cfg.rvps.address, policies.sources)
    rv_store: KeyValueStore = stores.get(as_cfg.rvps.storage_type or as_cfg.storage_type)
    if as_cfg.rvps.legacy_file is not None:
        rv_store = ReferenceValueFile(as_cfg.rvps.legacy_file)
    log.info("launch a built-in RVPS.")
    return ReferenceValueStore(rv_store)


@dataclass
class StandaloneAs:
    """A standalone Attestation Service and what its front ends serve besides it."""

    config: AsConfig
    service: AttestationService
    metrics: Metrics
    audit: AuditDispatcher | NullDispatcher
    stores: StoreRegistry


async def assemble_as(config: AsConfig, *, signer: Signer | None = None) -> StandaloneAs:
    """Everything an AS server process needs from its config file, built in order; `signer`
    replaces the ephemeral token key when the file configures none."""
    for key in config.ignored_keys:
        log.info("config key ignored: %s", key)
    log.info("AS storage backend: %s", config.storage.storage_type)
    stores = StoreRegistry(config.storage)
    metrics = Metrics()
    try:
        audit = dispatcher_from_settings(config.audit_sinks)
    except ConfigError as exc:
        raise exc.with_source(config.source) from None
    metrics.set_audit_stats(audit.stats)
    limits = config.policy_limits
    cache = PolicyCache(
        limits=PolicyLimits(limits.evaluation_timeout_ms, limits.evaluation_memory_mib)
    )
    service = await attestation_service(
        config.service,
        stores,
        cache,
        audit=audit,
        metrics=metrics,
        legacy=config.dialect == "v0.11",
        source=config.source,
        key="",
        signer=signer,
    )
    return StandaloneAs(config, service, metrics, audit, stores)
