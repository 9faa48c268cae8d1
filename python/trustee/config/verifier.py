"""`[attestation_service.verifier_config]` → VerifierSettings: where TDX collateral and SNP VEKs
come from (upstream's `dcap_verifier` and `snp_verifier` tables, and our keys beside them), the
test roots trusted as hardware roots, upstream's `snp_verifier.allow_nonzero_vmpl`, and the
roots TPM AK certificates must chain to (`tpm_ak_roots`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from trustee.collateral.settings import (
    AMD_KDS,
    INTEL_PCS,
    SnpCollateralSettings,
    TdxCollateralSettings,
    snp_collateral,
    tdx_collateral,
)
from trustee.config.errors import ConfigError
from trustee.config.reader import Table

if TYPE_CHECKING:
    from trustee.collateral.bundle_sources import LoadedBundle

# Keys naming another collateral source: a bundle serves everything, so none may be beside it.
_BESIDE_BUNDLE = ("collateral", "pccs_url", "vek_dir", "kds_url")


@dataclass(frozen=True)
class VerifierSettings:
    # Without a configured source, upstream's: Intel PCS and AMD KDS.
    tdx: TdxCollateralSettings = INTEL_PCS
    snp: SnpCollateralSettings = AMD_KDS
    insecure_test_roots: tuple[str, ...] = ()
    # The DER certificates of those files, read when the configuration is.
    test_anchors: tuple[bytes, ...] = field(default=(), repr=False)
    snp_allow_nonzero_vmpl: bool = False
    # CA certificate files a `tpm` guest's AK certificate must chain to, and their DER.
    tpm_ak_roots: tuple[str, ...] = ()
    tpm_ak_anchors: tuple[bytes, ...] = field(default=(), repr=False)
    # `collateral_bundle`, read and checked with the configuration; it replaces `tdx`/`snp`.
    bundle: LoadedBundle | None = field(default=None, repr=False, compare=False)


def verifier_settings(t: Table) -> VerifierSettings:
    tdx = tdx_collateral(t) or INTEL_PCS
    snp = snp_collateral(t) or AMD_KDS
    roots, anchors = _certificate_files(t, "insecure_test_roots")
    ak_roots, ak_anchors = _certificate_files(t, "tpm_ak_roots")
    if ak_anchors:
        _check_ak_roots(t, ak_anchors)
    vmpl = t.table("snp_verifier")
    return VerifierSettings(
        tdx=tdx,
        snp=snp,
        insecure_test_roots=tuple(roots),
        test_anchors=tuple(anchors),
        snp_allow_nonzero_vmpl=vmpl is not None and vmpl.get("allow_nonzero_vmpl", bool, False),
        tpm_ak_roots=tuple(ak_roots),
        tpm_ak_anchors=tuple(ak_anchors),
        bundle=_bundle(t, anchors),
    )


def _check_ak_roots(t: Table, anchors: list[bytes]) -> None:
    """Refuse at start-up a root the verifier could not use (not DER, not a CA)."""
    from trustee import _core

    try:
        _core.Verifiers(tpm_ak_roots=anchors)
    except ValueError as exc:
        raise t.error("tpm_ak_roots", str(exc)) from None


def _certificate_files(t: Table, key: str) -> tuple[list[str], list[bytes]]:
    """The file paths listed at `key` and the DER certificates they hold (PEM or DER)."""
    paths = t.get(key, list, [])
    for index, path in enumerate(paths):
        if not isinstance(path, str):
            raise ConfigError(f"{t.key(key)}[{index}]", "expected a file path")
    if not paths:
        # A configuration without such files does not load the X.509 parser.
        return [], []
    from trustee.crypto.x509chain import load_certificate_files

    try:
        return paths, load_certificate_files(paths)
    except ValueError as exc:
        raise t.error(key, str(exc)) from exc


def _bundle(t: Table, anchors: list[bytes]) -> LoadedBundle | None:
    """The checked `collateral_bundle`; a damaged one is a configuration error naming the
    member, so the server does not start with collateral it cannot trust."""
    path = t.data.get("collateral_bundle")
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        raise t.error("collateral_bundle", f"expected a file path, got {path!r}")
    dcap, snp = t.table("dcap_verifier"), t.table("snp_verifier")
    beside = [t.key(name) for name in _BESIDE_BUNDLE if t.has(name)]
    if dcap is not None and dcap.has("collateral_service"):
        beside.append(dcap.key("collateral_service"))
    if snp is not None and snp.has("vcek_sources"):
        beside.append(snp.key("vcek_sources"))
    if beside:
        raise t.error(
            "collateral_bundle",
            f"serves all TDX collateral and SNP VCEKs; remove {', '.join(beside)}",
        )
    from trustee.collateral.bundle import BundleError
    from trustee.collateral.bundle_sources import LoadedBundle

    try:
        return LoadedBundle.load(path, anchors)
    except BundleError as exc:
        raise t.error("collateral_bundle", str(exc)) from None
