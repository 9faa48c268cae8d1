//! TPM 2.0 quotes and Azure HCL reports for trustee-py, in pure Rust.
//!
//! * [`HclReport`] — the Azure paravisor report: the SNP or TDX hardware report inside, the
//!   variable data (runtime claims) and its digest, the vTPM attestation key (`HCLAkPub`)
//!   and the guest's `user-data`.
//! * [`Quote`] / [`parse_attest`] — a TPM quote's TPMS_ATTEST, its signature
//!   ([`parse_signature`], [`AkPublic`]) and the PCR values against its pcrDigest.
//! * [`check_init_data`] — the init-data binding through PCR8.
//! * [`verify_ak_certificate`] — an AK certificate chained to configured [`AkRoots`].
//!
//! The TPM and HCL structures are small fixed or big-endian layouts, parsed here directly so
//! that no TPM software stack (a C library) or OpenSSL is linked, and so the hardware reports
//! are handed as bytes to the SNP and TDX crates instead of being parsed a second time.
//! Nothing here panics on any input: every read is bounds-checked and every size bounded.

mod akcert;
mod error;
mod hcl;
mod keys;
mod tpm2;

pub use akcert::{
    verify_ak_certificate, AkCertificate, AkRoots, MAX_AK_CERT, MAX_AK_INTERMEDIATES, MAX_AK_ROOTS,
};
pub use error::VtpmError;
pub use hcl::{
    user_data_starts_with, Hardware, HclReport, RuntimeClaims, MAX_HCL_REPORT, SNP_REPORT_LEN,
    TD_REPORT_LEN,
};
pub use keys::{parse_signature, AkPublic};
pub use tpm2::{
    check_init_data, parse_attest, pcr_from_bytes, pcr_value, pcrs_from_hex, Attest, Quote,
    TpmSignature, INIT_DATA_PCR, MAX_MESSAGE,
};

#[cfg(test)]
mod tests;
