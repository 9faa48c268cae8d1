//! TEE evidence verification for trustee-py.
//!
//! One entry point, [`verify`], turns a TEE name plus JSON evidence into the claims the
//! Attestation Service feeds to its policies. Each TEE family lives in its own module behind
//! the [`Verifier`] trait so hardware verifiers (TDX, SNP, …) can be added without touching
//! the dispatch contract that the Python layer relies on.

use serde_json::Value;

mod error;
mod hardware;
mod sample;
mod tee;

pub use error::VerifyError;
pub use hardware::{
    snp_needs, tdx_collateral_key, tdx_parsed_claims, HardwareInputs, HardwareOptions, SnpNeeds,
    Verifiers,
};
pub use tee::Tee;

/// Evidence larger than this is rejected before parsing. A TDX quote with an untrimmed 1 MiB
/// CCEL table (base64 in JSON) stays below it; the bound only exists so hostile input cannot
/// make us allocate without limit.
pub const MAX_EVIDENCE_BYTES: usize = 4 * 1024 * 1024;

/// Expected binding values are digests or small structures; anything larger is a caller bug.
pub const MAX_EXPECTED_BYTES: usize = 4096;

/// What the caller expects the evidence to be bound to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expectations<'a> {
    pub report_data: Option<&'a [u8]>,
    pub init_data_hash: Option<&'a [u8]>,
}

/// One appraised component: its claims (a JSON object) and its TEE class (`cpu`, `gpu`, …).
pub type ClaimsEntry = (Value, String);

/// A verifier for one TEE family.
///
/// Implementations must treat `evidence` as hostile: bound every size before allocating,
/// never panic, and check signatures before doing expensive work.
pub trait Verifier: Sync {
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError>;
}

/// Returns the verifier compiled into this build for `tee`, if any.
pub fn verifier_for(tee: Tee) -> Option<&'static dyn Verifier> {
    match tee {
        Tee::Sample => Some(&sample::Sample),
        Tee::SampleDevice => Some(&sample::SampleDevice),
        // TDX and SNP need collateral and certificates: see [`Verifiers`].
        Tee::Tdx
        | Tee::Snp
        | Tee::AzSnpVtpm
        | Tee::AzTdxVtpm
        | Tee::Sgx
        | Tee::Cca
        | Tee::Csv
        | Tee::Se
        | Tee::Tpm
        | Tee::Nvidia
        | Tee::HygonDcu
        | Tee::NvidiaDpu => None,
    }
}

/// TEE names (wire spelling) that have a verifier in this build ([`verify`] or
/// [`Verifiers::verify`]).
pub fn supported_tees() -> Vec<&'static str> {
    Tee::ALL
        .iter()
        .copied()
        .filter(|t| verifier_for(*t).is_some() || matches!(t, Tee::Tdx | Tee::Snp))
        .map(Tee::name)
        .collect()
}

/// Verifies `evidence` (JSON bytes) for the TEE named `tee` (wire spelling, e.g. `sample`,
/// `az-snp-vtpm`) and returns one `(claims, tee_class)` entry per appraised component.
pub fn verify(
    tee: &str,
    evidence: &[u8],
    expected_report_data: Option<&[u8]>,
    expected_init_data_hash: Option<&[u8]>,
) -> Result<Vec<ClaimsEntry>, VerifyError> {
    let tee_kind = Tee::from_name(tee).ok_or_else(|| VerifyError::UnknownTee(tee.to_owned()))?;
    let verifier =
        verifier_for(tee_kind).ok_or_else(|| VerifyError::Unsupported(tee_kind.name().into()))?;
    check_inputs(evidence, expected_report_data, expected_init_data_hash)?;
    verifier.verify(
        evidence,
        Expectations {
            report_data: expected_report_data,
            init_data_hash: expected_init_data_hash,
        },
    )
}

fn check_inputs(
    evidence: &[u8],
    expected_report_data: Option<&[u8]>,
    expected_init_data_hash: Option<&[u8]>,
) -> Result<(), VerifyError> {
    check_size("evidence", evidence.len(), MAX_EVIDENCE_BYTES)?;
    for (what, value) in [
        ("expected report data", expected_report_data),
        ("expected init-data hash", expected_init_data_hash),
    ] {
        if let Some(v) = value {
            check_size(what, v.len(), MAX_EXPECTED_BYTES)?;
        }
    }
    Ok(())
}

fn check_size(what: &'static str, size: usize, limit: usize) -> Result<(), VerifyError> {
    if size > limit {
        return Err(VerifyError::TooLarge { what, size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_but_unimplemented_tees_are_unsupported() {
        for name in [
            "tdx",
            "snp",
            "az-snp-vtpm",
            "az-tdx-vtpm",
            "sgx",
            "cca",
            "csv",
            "se",
            "tpm",
            "nvidia",
            "hygondcu",
            "nvidiadpu",
        ] {
            match verify(name, b"{}", None, None) {
                Err(VerifyError::Unsupported(t)) => assert_eq!(t, name),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_tee_names_are_rejected() {
        for name in ["", "SAMPLE", "sev", "az_snp_vtpm", "sample "] {
            assert!(
                matches!(verify(name, b"{}", None, None), Err(VerifyError::UnknownTee(ref t)) if t == name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn supported_list_matches_dispatch() {
        assert_eq!(
            supported_tees(),
            vec!["sample", "sampledevice", "tdx", "snp"]
        );
    }

    #[test]
    fn oversized_inputs_are_rejected_before_parsing() {
        let big = vec![b' '; MAX_EVIDENCE_BYTES + 1];
        assert!(matches!(
            verify("sample", &big, None, None),
            Err(VerifyError::TooLarge {
                what: "evidence",
                ..
            })
        ));
        let big_expected = vec![0u8; MAX_EXPECTED_BYTES + 1];
        assert!(matches!(
            verify("sample", br#"{"svn":"1"}"#, Some(&big_expected), None),
            Err(VerifyError::TooLarge { .. })
        ));
    }
}
