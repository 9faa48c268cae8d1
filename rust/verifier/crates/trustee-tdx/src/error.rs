//! The DCAP appraisal's error: one variant per failing check.

use crate::{ParseError, VerifyError};

/// One variant per failing check; the message names the check and values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    #[error("quote parse failed: {0}")]
    Parse(#[from] ParseError),
    /// PCK chain, QE report signature, QE report-data binding or quote signature.
    #[error("{0}")]
    Signature(#[from] VerifyError),
    #[error("QE vendor ID check failed: {found} is not Intel's QE vendor ID {expected}")]
    QeVendorId { expected: String, found: String },
    #[error("PCK leaf SGX extension check failed: {0}")]
    PckExtension(String),
    #[error("PCK CA type check failed: {0}")]
    PckCaType(String),
    #[error("TCB info issuer chain check failed: {0}")]
    TcbInfoIssuerChain(String),
    #[error("QE identity issuer chain check failed: {0}")]
    QeIdentityIssuerChain(String),
    #[error("PCK CRL issuer chain check failed: {0}")]
    PckCrlIssuerChain(String),
    #[error("root CA CRL check failed: {0}")]
    RootCaCrl(String),
    #[error("PCK CRL check failed: {0}")]
    PckCrl(String),
    #[error("collateral root check failed: PCK chain root SHA-256 {pck_root} differs from the collateral issuer chains' root {collateral_root}")]
    RootMismatch {
        pck_root: String,
        collateral_root: String,
    },
    #[error("revocation check failed: {certificate} serial {serial} is listed in the root CA CRL")]
    RevokedByRootCrl {
        certificate: &'static str,
        serial: String,
    },
    #[error("revocation check failed: PCK leaf serial {serial} is listed in the PCK CRL")]
    RevokedPckLeaf { serial: String },
    #[error("TCB info signature check failed: {0}")]
    TcbInfoSignature(String),
    #[error("QE identity signature check failed: {0}")]
    QeIdentitySignature(String),
    #[error("TCB info content check failed: {0}")]
    TcbInfoFormat(String),
    #[error("QE identity content check failed: {0}")]
    QeIdentityFormat(String),
    #[error("FMSPC check failed: PCK leaf FMSPC {pck} != TCB info fmspc {tcb_info}")]
    FmspcMismatch { pck: String, tcb_info: String },
    #[error("PCE-ID check failed: PCK leaf PCE-ID {pck} != TCB info pceId {tcb_info}")]
    PceIdMismatch { pck: String, tcb_info: String },
    #[error("QE identity check failed: QE report {field} {found} does not match {expected}")]
    QeIdentityMismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("QE identity TCB check failed: no QE identity TCB level for QE ISVSVN {isv_svn}")]
    QeTcbNotSupported { isv_svn: u16 },
    #[error("TCB level check failed: no TCB level matches PCK SGX components {sgx_components} with PCESVN {pce_svn}")]
    NoSgxTcbLevel {
        sgx_components: String,
        pce_svn: u16,
    },
    #[error("TCB level check failed: no SGX-matching TCB level matches TEE_TCB_SVN {tee_tcb_svn}")]
    NoTdxTcbLevel { tee_tcb_svn: String },
    #[error("TDX module identity check failed: no tdxModuleIdentities entry with id {id}")]
    TdxModuleIdentityNotFound { id: String },
    #[error("TDX module identity check failed: {field} {found} does not match {expected}")]
    TdxModuleMismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("TDX module TCB check failed: no {id} TCB level for module ISVSVN {isv_svn}")]
    TdxModuleTcbNotSupported { id: String, isv_svn: u8 },
    #[error("TCB status check failed: the matched {component} is Revoked")]
    TcbRevoked { component: &'static str },
}
