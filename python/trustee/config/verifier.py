"""`[attestation_service.verifier_config]` → VerifierSettings: where TDX collateral and SNP VEKs
come from (upstream's `dcap_verifier` and `snp_verifier` tables, and our keys beside them), the
test roots trusted as hardware roots, and upstream's `snp_verifier.allow_nonzero_vmpl`."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class VerifierSettings:
    # Without a configured source, upstream's: Intel PCS and AMD KDS.
    tdx: TdxCollateralSettings = INTEL_PCS
    snp: SnpCollateralSettings = AMD_KDS
    insecure_test_roots: tuple[str, ...] = ()
    # The DER certificates of those files, read when the configuration is.
    test_anchors: tuple[bytes, ...] = field(default=(), repr=False)
    snp_allow_nonzero_vmpl: bool = False


def verifier_settings(t: Table) -> VerifierSettings:
    tdx = tdx_collateral(t) or INTEL_PCS
    snp = snp_collateral(t) or AMD_KDS
    roots = t.get("insecure_test_roots", list, [])
    for index, path in enumerate(roots):
        if not isinstance(path, str):
            raise ConfigError(f"{t.key('insecure_test_roots')}[{index}]", "expected a file path")
    anchors: list[bytes] = []
    if roots:
        # Test PKIs only: a production configuration does not load the X.509 parser.
        from trustee.crypto.x509chain import load_certificate_files

        try:
            anchors = load_certificate_files(roots)
        except ValueError as exc:
            raise t.error("insecure_test_roots", str(exc)) from exc
    vmpl = t.table("snp_verifier")
    return VerifierSettings(
        tdx=tdx,
        snp=snp,
        insecure_test_roots=tuple(roots),
        test_anchors=tuple(anchors),
        snp_allow_nonzero_vmpl=vmpl is not None and vmpl.get("allow_nonzero_vmpl", bool, False),
    )
