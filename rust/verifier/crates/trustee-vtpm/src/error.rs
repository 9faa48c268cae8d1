//! One variant per failing check, each naming what failed and why.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VtpmError {
    #[error("HCL report too short: {needed} bytes needed, {actual} given")]
    HclTooShort { needed: usize, actual: usize },
    #[error("HCL report too large: {actual} bytes exceeds the limit of {limit}")]
    HclTooLarge { actual: usize, limit: usize },
    #[error("HCL report type {0} is neither SNP (2) nor TDX (4)")]
    HclReportType(u32),
    #[error("HCL report is a {actual} report, {expected} expected")]
    HclWrongHardware {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("HCL report data hash type {0} is not SHA-256 (1), SHA-384 (2) or SHA-512 (3)")]
    HclHashType(u32),
    #[error("HCL variable data size {size} exceeds the {available} bytes after its header")]
    HclVarDataSize { size: usize, available: usize },
    #[error("HCL runtime claims are not a JSON object with `keys`: {0}")]
    RuntimeClaims(String),
    #[error("HCL runtime claims have no RSA key with kid \"HCLAkPub\"")]
    AkNotFound,
    #[error("HCL runtime claims: the HCLAkPub key is malformed: {0}")]
    AkJwk(String),
    #[error("HCL runtime claims: `user-data` is missing or not hex: {0}")]
    UserData(String),
    #[error("TPM quote message (TPMS_ATTEST) is malformed: {0}")]
    QuoteMessage(String),
    #[error("TPM quote message magic {0:#010x} is not TPM_GENERATED_VALUE (0xff544347)")]
    QuoteMagic(u32),
    #[error("TPM quote message type {0:#06x} is not TPM_ST_ATTEST_QUOTE (0x8018)")]
    NotAQuote(u16),
    #[error("TPM quote PCR selection is not usable: {0}")]
    PcrSelection(String),
    #[error("TPM quote carries {given} PCR values but selects {selected} SHA-256 PCRs")]
    PcrCount { given: usize, selected: usize },
    #[error("TPM PCR value {index} is {len} bytes, 32 (SHA-256) expected")]
    PcrLength { index: usize, len: usize },
    #[error(
        "digest of the PCR values ({actual}) does not match the quote's pcrDigest ({expected})"
    )]
    PcrDigest { expected: String, actual: String },
    #[error("TPM signature (TPMT_SIGNATURE) is malformed: {0}")]
    SignatureMalformed(String),
    #[error("TPM signature algorithm {alg:#06x} with hash {hash:#06x} is not supported (RSASSA or ECDSA with SHA-256)")]
    SignatureUnsupported { alg: u16, hash: u16 },
    #[error("TPM quote signature does not verify with the {key} key")]
    SignatureInvalid { key: &'static str },
    #[error("AK public key is not a usable RSA or P-256 SubjectPublicKeyInfo: {0}")]
    AkPublic(String),
    #[error("init-data hash must be 32 bytes for the PCR{pcr} binding, got {len}")]
    InitDataLength { pcr: usize, len: usize },
    #[error("PCR{pcr} is not in the quote, so the init data cannot be checked")]
    InitDataPcrMissing { pcr: usize },
    #[error(
        "PCR{pcr} ({actual}) does not match the expected init-data hash (extends to {expected})"
    )]
    InitDataMismatch {
        pcr: usize,
        expected: String,
        actual: String,
    },
    #[error("AK certificate {which} is {len} bytes, at most {limit}")]
    AkCertTooLarge {
        which: String,
        len: usize,
        limit: usize,
    },
    #[error("ak_cert_chain has {count} certificates, at most {limit}")]
    AkCertChainLength { count: usize, limit: usize },
    #[error("AK certificate {which} is not a DER X.509 certificate: {reason}")]
    AkCertMalformed { which: String, reason: String },
    #[error("AK certificate's public key is not the quote's AK (ak_public)")]
    AkCertKeyMismatch,
    #[error(
        "AK certificate {which} is not valid at {now} (valid from {not_before} to {not_after})"
    )]
    AkCertValidity {
        which: String,
        now: String,
        not_before: String,
        not_after: String,
    },
    #[error("AK certificate {which} issues a certificate but is not a CA (basicConstraints cA)")]
    AkCertNotCa { which: String },
    #[error("AK certificate {which} names issuer {issuer}, but {next} is {next_subject}")]
    AkCertIssuer {
        which: String,
        issuer: String,
        next: String,
        next_subject: String,
    },
    #[error("AK certificate {which} has an unsupported signature: {reason}")]
    AkCertAlgorithm { which: String, reason: String },
    #[error("AK certificate {which}: signature does not verify with the key of {issuer}")]
    AkCertSignature { which: String, issuer: String },
    #[error("the AK is not certified by a configured root: {0}")]
    AkNotCertified(String),
    #[error("TPM AK root certificate is not usable: {0}")]
    AkRoot(String),
}
