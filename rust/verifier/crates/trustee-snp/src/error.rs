//! Error types: one variant per check, each naming the check and the values involved.

use std::time::Duration;

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
    #[error(
        "no trusted {role} for {product} among the supplied and built-in certificates ({detail})"
    )]
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
    #[error(
        "certificate {subject} not valid at {} (valid from {} to {})",
        utc(*.now),
        utc(*.not_before),
        utc(*.not_after)
    )]
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

/// Unix seconds as an RFC 3339 UTC time for messages; outside the years 1970..=9999 the
/// number itself, so no value is ever lost from a message.
fn utc(t: impl Into<i128>) -> String {
    let t = t.into();
    u64::try_from(t)
        .ok()
        .and_then(|secs| der::DateTime::from_unix_duration(Duration::from_secs(secs)).ok())
        .map_or_else(|| format!("unix time {t}"), |time| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::VerifyError;

    #[test]
    fn validity_errors_name_times_in_rfc3339() {
        let err = VerifyError::Expired {
            subject: "SEV-VCEK".into(),
            now: 1_796_628_808,
            not_before: 1_733_868_861,
            not_after: 1_765_404_861,
        };
        assert_eq!(
            err.to_string(),
            "certificate SEV-VCEK not valid at 2026-12-07T07:33:28Z (valid from \
             2024-12-10T22:14:21Z to 2025-12-10T22:14:21Z)"
        );
        // Before 1970 there is no RFC 3339 form der can give: the number is kept.
        let err = VerifyError::Expired {
            subject: "ARK".into(),
            now: -5,
            not_before: 0,
            not_after: 1,
        };
        assert_eq!(
            err.to_string(),
            "certificate ARK not valid at unix time -5 (valid from 1970-01-01T00:00:00Z to \
             1970-01-01T00:00:01Z)"
        );
    }
}
