//! AMD SEV-SNP support for trustee-py.
//!
//! * [`parse_report`] — decode the 1184-byte `ATTESTATION_REPORT` (versions 2, 3/4 and 5+).
//! * [`claims`] — upstream Trustee's SNP claim set (names and encodings per the spec, §4.3).
//! * [`verify_report_signature`] — ECDSA P-384 / SHA-384 over bytes `0x000..0x2A0` of the
//!   *canonical* re-encoding (reserved bytes zeroed, as upstream does), with the VCEK/VLEK key.
//! * [`verify_chain`] — leaf (VCEK or VLEK) → ASK / ASVK → ARK (self-signed), RSASSA-PSS SHA-384.
//! * [`parse_vek_extensions`] / [`verify_report_tcb`] — the AMD X.509 extensions of a VEK and
//!   the REPORTED_TCB / chip-ID comparison.
//!
//! Nothing in this crate panics on any input: every offset is checked.

mod cert;
mod report;

pub use cert::{
    parse_vek_extensions, verify_anchors, verify_chain, verify_report_signature, verify_report_tcb,
    CertInfo, ChainInfo, LeafKind, VekExtensions,
};
pub use report::{claims, parse_report, Generation, Report, TcbVersion, REPORT_LEN, SIGNED_LEN};

/// Errors from [`parse_report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("SNP report must be {expected} bytes, got {actual}")]
    Length { expected: usize, actual: usize },
    #[error("unsupported SNP report version {0}")]
    UnsupportedVersion(u32),
}

/// Errors from signature / chain / TCB verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("report: {0}")]
    Report(#[from] ParseError),
    #[error("processor model not supported (family {family:#x}, model {model:#x})")]
    UnsupportedProcessor { family: u8, model: u8 },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("anchors: {0}")]
    Anchors(String),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("malformed report signature: {0}")]
    MalformedSignature(String),
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    #[error("{0}")]
    TcbMismatch(String),
    #[error("certificate {subject} not valid at {now} (valid {not_before}..={not_after})")]
    Expired {
        subject: String,
        now: u64,
        not_before: u64,
        not_after: u64,
    },
}

#[cfg(test)]
mod tests;
