use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("unknown TEE type `{0}`")]
    UnknownTee(String),

    #[error("TEE `{0}` is not supported by this build (no verifier compiled in)")]
    Unsupported(String),

    #[error("{what} too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },

    #[error("malformed {tee} evidence: {reason}")]
    Malformed { tee: &'static str, reason: String },

    #[error("{tee} report data mismatch: evidence has {actual_hex}, expected {expected_hex}")]
    ReportDataMismatch {
        tee: &'static str,
        expected_hex: String,
        actual_hex: String,
    },

    #[error("{tee} evidence cannot be verified without {what}")]
    Missing { tee: &'static str, what: String },

    #[error("{tee} verification failed: {reason}")]
    Rejected { tee: &'static str, reason: String },

    #[error("{tee} {field} mismatch: evidence has {actual_hex}, expected {expected_hex}")]
    BindingMismatch {
        tee: &'static str,
        field: &'static str,
        expected_hex: String,
        actual_hex: String,
    },
}
