//! Error types: one variant per check, each naming the check and the values involved.

/// Errors from [`crate::parse_report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("SNP report must be {expected} bytes, got {actual}")]
    Length { expected: usize, actual: usize },
    #[error("unsupported SNP report version {0} (versions 2 and later are accepted)")]
    UnsupportedVersion(u32),
}

/// Errors from evidence decoding and from every verification step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("report: {0}")]
    Report(#[from] ParseError),
    #[error("evidence: {0}")]
    Evidence(String),
    #[error("processor model not supported (family {family:#x}, model {model:#x})")]
    UnsupportedProcessor { family: u8, model: u8 },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("anchors: {0}")]
    Anchors(String),
    #[error(
        "supplied {role} certificate {subject:?} (SHA-256 {sha256}) is not a pinned AMD \
         ARK/ASK/ASVK nor in the caller's trusted test fingerprints"
    )]
    UntrustedCertificate {
        role: &'static str,
        subject: String,
        sha256: String,
    },
    #[error("no trusted {role} for {product} among the supplied certificates ({detail})")]
    MissingAnchor {
        role: &'static str,
        product: String,
        detail: String,
    },
    #[error("no VCEK/VLEK: {0}")]
    MissingVek(String),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("malformed report signature: {0}")]
    MalformedSignature(String),
    #[error("invalid certificate signature: {0}")]
    InvalidSignature(String),
    #[error("report signature check failed: {0}")]
    ReportSignature(String),
    #[error("{field} version mismatch (certificate {certificate}, report {report})")]
    TcbMismatch {
        field: &'static str,
        certificate: u8,
        report: u8,
    },
    #[error("{field} SPL extension missing from the {kind} certificate")]
    TcbExtensionMissing {
        field: &'static str,
        kind: &'static str,
    },
    #[error("Chip ID mismatch: VCEK hwID {certificate}, report CHIP_ID {report}")]
    ChipIdMismatch { certificate: String, report: String },
    #[error("certificate {subject} not valid at {now} (valid {not_before}..={not_after})")]
    Expired {
        subject: String,
        now: i64,
        not_before: u64,
        not_after: u64,
    },
    #[error("VMPL Check Failed: report VMPL is {vmpl}, 0 required")]
    Vmpl { vmpl: u32 },
    #[error("Report Data Mismatch: expected {expected}, report has {actual}")]
    ReportDataMismatch { expected: String, actual: String },
    #[error("Host Data Mismatch: expected {expected}, report has {actual}")]
    HostDataMismatch { expected: String, actual: String },
    #[error("MASK_CHIP_ID is set (CHIP_ID is all zero): a VCEK cannot be requested")]
    MaskedChipId,
}
