//! [`Verifiers`]: every TEE family this build verifies, behind one dispatch.

use std::sync::Arc;

use crate::azure::{AzSnpVtpm, AzTdxVtpm};
use crate::hardware::{Dcap, Snp, Tdx};
use crate::sgx::Sgx;
use crate::{sample, tpm, ClaimsEntry, Expectations, Inputs, Tee, Verifier, VerifyError};

/// Trust settings fixed for the life of a [`Verifiers`].
#[derive(Debug, Clone, Default)]
pub struct HardwareOptions {
    /// SHA-256 of extra root certificates to trust beside the pinned Intel and AMD ones (a
    /// test PKI). Never set in production.
    pub extra_roots_sha256: Vec<[u8; 32]>,
    /// Accept SNP reports from VMPL > 0 (upstream refuses them).
    pub snp_allow_nonzero_vmpl: bool,
    /// Roots an AK certificate must chain to for `tpm` evidence; empty: none is required.
    pub tpm_ak_roots: crate::TpmAkRoots,
}

/// The verifiers of every supported TEE, with the memo caches of the hardware ones
/// (verified collateral, certificate chains): one long-lived instance serves every
/// attestation.
pub struct Verifiers {
    tdx: Arc<Tdx>,
    snp: Arc<Snp>,
    sgx: Sgx,
    // The Azure verifiers share the hardware verifiers' memo caches.
    az_snp: AzSnpVtpm,
    az_tdx: AzTdxVtpm,
    tpm: tpm::Tpm,
}

impl Default for Verifiers {
    fn default() -> Self {
        Self::new(HardwareOptions::default())
    }
}

impl Verifiers {
    pub fn new(options: HardwareOptions) -> Self {
        // One DCAP instance for TDX, SGX and the Azure TD quote: a platform's PCK chain and
        // collateral are checked once whichever TEE presents them.
        let dcap = Arc::new(Dcap::new(options.extra_roots_sha256.clone()));
        let tdx = Arc::new(Tdx::new(Arc::clone(&dcap)));
        let snp = Arc::new(Snp::new(
            options.extra_roots_sha256,
            options.snp_allow_nonzero_vmpl,
        ));
        Self {
            az_snp: AzSnpVtpm {
                snp: Arc::clone(&snp),
            },
            az_tdx: AzTdxVtpm {
                tdx: Arc::clone(&tdx),
            },
            sgx: Sgx::new(dcap),
            tpm: tpm::Tpm {
                roots: options.tpm_ak_roots,
            },
            tdx,
            snp,
        }
    }

    fn verifier(&self, tee: Tee) -> Option<&dyn Verifier> {
        match tee {
            Tee::Sample => Some(&sample::SAMPLE),
            Tee::SampleDevice => Some(&sample::SAMPLE_DEVICE),
            Tee::Tdx => Some(&*self.tdx),
            Tee::Snp => Some(&*self.snp),
            Tee::Sgx => Some(&self.sgx),
            Tee::AzSnpVtpm => Some(&self.az_snp),
            Tee::AzTdxVtpm => Some(&self.az_tdx),
            Tee::Tpm => Some(&self.tpm),
            Tee::Cca | Tee::Csv | Tee::Se | Tee::Nvidia | Tee::HygonDcu | Tee::NvidiaDpu => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn has(&self, tee: Tee) -> bool {
        self.verifier(tee).is_some()
    }

    /// Verifies `evidence` (JSON bytes) for the TEE named `tee` (wire spelling, e.g.
    /// `sample`, `az-snp-vtpm`) and returns one `(claims, tee_class)` entry per appraised
    /// component. The hardware TEEs also need what `inputs` carries.
    pub fn verify(
        &self,
        tee: &str,
        evidence: &[u8],
        report_data: Option<&[u8]>,
        init_data_hash: Option<&[u8]>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let kind = Tee::from_name(tee).ok_or_else(|| VerifyError::UnknownTee(tee.to_owned()))?;
        let verifier = self
            .verifier(kind)
            .ok_or_else(|| VerifyError::Unsupported(kind.name().into()))?;
        crate::check_inputs(evidence, report_data, init_data_hash)?;
        let expected = Expectations {
            report_data,
            init_data_hash,
        };
        verifier.verify(evidence, expected, inputs)
    }
}
