//! TEE evidence verification for trustee-py.
//!
//! One entry point, [`Verifiers::verify`], turns a TEE name plus JSON evidence into the
//! claims the Attestation Service feeds to its policies. Each TEE family implements
//! [`Verifier`]; the hardware ones (TDX, SNP and the Azure vTPM variants) also take the
//! [`Inputs`] their caller fetched (collateral, certificates), which the others ignore, so
//! every family fits one contract.

use serde_json::Value;

mod azure;
mod collateral_check;
mod error;
mod hardware;
mod sample;
mod sgx;
mod tee;
mod tpm;
mod verifiers;

pub use collateral_check::{check_dcap_collateral, check_snp_certificate, Validity};
pub use error::VerifyError;
pub use hardware::{snp_needs, tdx_collateral_key, tdx_parsed_claims, SnpNeeds};
pub use tee::Tee;
pub use trustee_vtpm::AkRoots as TpmAkRoots;
pub use verifiers::{HardwareOptions, Verifiers};

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

/// What one verification needs beside the evidence; only the hardware TEEs
/// ([`Tee::is_hardware`]) read more than the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs<'a> {
    /// Time at which certificates and collateral are judged (unix seconds).
    pub now_unix: i64,
    /// DCAP collateral in the dcap-qvl JSON form: TDX documents for `tdx`, SGX TCB info and
    /// QE identity for `sgx`.
    pub tdx_collateral: Option<&'a [u8]>,
    /// SNP certificates (DER or PEM): the VEK and/or ASK/ASVK/ARK fetched by the caller.
    pub snp_certs: &'a [Vec<u8>],
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
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError>;
}

/// One vendor certificate this build trusts and ships.
#[derive(Debug, Clone, Copy)]
pub struct VendorAnchor {
    /// `Intel` or the AMD product (`Milan`, `Genoa`, `Turin`).
    pub product: &'static str,
    /// `root` (Intel SGX Root CA), `ARK`, `ASK` or `ASVK`.
    pub role: &'static str,
    pub der: &'static [u8],
}

/// The built-in vendor certificates that passed their fingerprint check at load: what other
/// components (collateral bundle checks) trust, so the pins live in one place.
pub fn vendor_anchors() -> Vec<VendorAnchor> {
    let intel = trustee_tdx::intel_sgx_root_ca_der().map(|der| VendorAnchor {
        product: "Intel",
        role: "root",
        der,
    });
    intel
        .into_iter()
        .chain(
            trustee_snp::embedded_anchors()
                .iter()
                .map(|a| VendorAnchor {
                    product: a.generation.name(),
                    role: a.role.name(),
                    der: &a.der,
                }),
        )
        .collect()
}

/// TEE names (wire spelling) that have a verifier in this build.
pub fn supported_tees() -> Vec<&'static str> {
    names(Tee::has_verifier)
}

/// TEE names (wire spelling) whose verification needs [`Inputs`] fetched by the caller.
pub fn hardware_tees() -> Vec<&'static str> {
    names(Tee::is_hardware)
}

fn names(keep: fn(Tee) -> bool) -> Vec<&'static str> {
    Tee::ALL
        .iter()
        .copied()
        .filter(|&t| keep(t))
        .map(Tee::name)
        .collect()
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

/// One shared instance for the unit tests of the sample verifiers.
#[cfg(test)]
pub(crate) fn verify(
    tee: &str,
    evidence: &[u8],
    expected_report_data: Option<&[u8]>,
    expected_init_data_hash: Option<&[u8]>,
) -> Result<Vec<ClaimsEntry>, VerifyError> {
    static VERIFIERS: std::sync::OnceLock<Verifiers> = std::sync::OnceLock::new();
    VERIFIERS.get_or_init(Verifiers::default).verify(
        tee,
        evidence,
        expected_report_data,
        expected_init_data_hash,
        &Inputs::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_but_unimplemented_tees_are_unsupported() {
        for name in ["cca", "csv", "se", "nvidia", "hygondcu", "nvidiadpu"] {
            match verify(name, b"{}", None, None) {
                Err(VerifyError::Unsupported(t)) => assert_eq!(t, name),
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn hardware_tees_are_verified_not_unsupported() {
        for name in ["tdx", "snp", "sgx", "az-snp-vtpm", "az-tdx-vtpm", "tpm"] {
            let err = verify(name, b"{}", Some(b"nonce"), None).unwrap_err();
            assert!(!matches!(err, VerifyError::Unsupported(_)), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        assert_eq!(
            hardware_tees(),
            vec!["tdx", "snp", "az-snp-vtpm", "az-tdx-vtpm", "sgx"]
        );
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
            vec![
                "sample",
                "sampledevice",
                "tdx",
                "snp",
                "az-snp-vtpm",
                "az-tdx-vtpm",
                "sgx",
                "tpm"
            ]
        );
        let verifiers = Verifiers::default();
        for tee in Tee::ALL {
            assert_eq!(verifiers.has(tee), tee.has_verifier(), "{tee}");
        }
    }

    #[test]
    fn vendor_anchors_are_the_intel_root_and_amds_nine() {
        let anchors = vendor_anchors();
        assert_eq!(anchors.len(), 10);
        assert_eq!((anchors[0].product, anchors[0].role), ("Intel", "root"));
        for product in ["Milan", "Genoa", "Turin"] {
            for role in ["ARK", "ASK", "ASVK"] {
                assert!(
                    anchors
                        .iter()
                        .any(|a| a.product == product && a.role == role),
                    "{product} {role}"
                );
            }
        }
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
