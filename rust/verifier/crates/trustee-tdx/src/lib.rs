//! Intel TDX quote parser (quote v4 and v5) and the claims JSON upstream
//! Trustee derives from the quote.
//!
//! Written from Intel's TDX DCAP quote format and upstream Trustee's behaviour.
//! [`parse_quote`] only *parses*; [`verify_signatures`] adds the offline
//! signature checks (PCK chain to a pinned root, QE report signature, QE
//! report-data binding, quote signature);
//! [`verify_quote`] / [`DcapVerifier`] perform the full DCAP appraisal
//! against collateral (Intel's QVL rules). Every length is checked before
//! slicing; nothing panics on any input.

mod appraisal;
mod cache;
mod claims;
mod collateral;
mod crl;
mod dcap;
mod ecdsa;
mod error;
mod intel_root;
mod pck;
mod reader;
mod sgx;
mod tcb_info;
mod time;
mod verify;

use reader::Reader;

pub use cache::{CacheStats, DcapVerifier};
pub use claims::claims;
pub use collateral::{Collateral, CollateralError, CollateralParts};
pub use crl::{crl_der_from_any, normalize_serial, Crl};
pub use dcap::{
    check_collateral_alone, collateral_key, verify_quote, CollateralKey, CollateralValidity,
    DcapTee, PckCaType, Verified, VerifyOptions,
};
pub use error::DcapError;
pub use intel_root::intel_sgx_root_ca_der;
pub use pck::{pck_extension, pem_certificates, platform_instance_id, PckExtension};
pub use sgx::{
    parse_sgx_quote, sgx_claims, verify_sgx_quote, verify_sgx_signatures, SgxQuote, SgxVerified,
    TEE_TYPE_SGX,
};
pub use tcb_info::{IsvLevel, ModuleIdentity, QeIdentity, TcbInfo, TcbLevel, TcbStatus};
pub use time::{format_rfc3339, parse_rfc3339};
pub use verify::{
    verify_pck_chain, verify_quote_with_chain, verify_signatures, PckChain, RootMatch,
    SignatureReport, VerifyError, INTEL_SGX_ROOT_CA_SHA256, PCK_CHAIN_LEN,
};

/// Quote header length.
pub const HEADER_LEN: usize = 48;
/// TD report 1.0 body length.
pub const TD_REPORT10_LEN: usize = 584;
/// TD report 1.5 body length.
pub const TD_REPORT15_LEN: usize = 648;
/// SGX report body (QE report) length.
pub const ENCLAVE_REPORT_LEN: usize = 384;
/// `tee_type` value of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x0000_0081;
/// Attestation key type ECDSA-256-with-P-256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// Certification data type "QE report certification data".
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// Certification data type "PCK certificate chain (PEM)".
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;

/// Errors returned by [`parse_quote`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "quote truncated: {what} needs {needed} bytes at offset {offset}, {available} available"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("unsupported quote version {0} (only TDX quote v4 and v5 are supported){hint}", hint = if *.0 == 3 { "; version 3 is an SGX quote, for the sgx verifier" } else { "" })]
    UnsupportedVersion(u16),
    #[error("unsupported quote version {0} (only SGX quote v3 is supported){hint}", hint = if *.0 == 4 || *.0 == 5 { "; versions 4 and 5 are TDX quotes, for the tdx verifier" } else { "" })]
    UnsupportedSgxVersion(u16),
    #[error("unsupported attestation key type {0} (expected 2, ECDSA-256-with-P-256)")]
    UnsupportedAttKeyType(u16),
    #[error("unsupported tee_type {0:#010x} (expected 0x00000081, TDX)")]
    UnsupportedTeeType(u32),
    #[error("unsupported tee_type {0:#010x} in an SGX quote (expected 0x00000000, SGX)")]
    UnsupportedSgxTeeType(u32),
    #[error("parse QuoteV5 Type failed. {0} not defined.")]
    UnsupportedBodyType(u16),
    #[error(
        "quote v5 body size {size} does not match body type {body_type} (expected {expected})"
    )]
    BodySizeMismatch {
        body_type: u16,
        size: u32,
        expected: usize,
    },
    #[error("unexpected certification data type {found} (expected {expected})")]
    CertificationDataType { expected: u16, found: u16 },
    #[error("inconsistent length field {field}: declared {declared}, structure needs {actual}")]
    LengthMismatch {
        field: &'static str,
        declared: usize,
        actual: usize,
    },
}

/// Quote header (48 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    /// 4 reserved bytes (QVL: qe_svn + pce_svn), raw.
    pub reserved: [u8; 4],
    /// QE vendor id.
    pub vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// Quote v5 body descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDescriptor {
    /// 2 = TD report 1.0, 3 = TD report 1.5.
    pub body_type: u16,
    /// Declared body size (raw u32).
    pub body_size: u32,
}

/// TD report 1.5 additional fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport15Ext {
    pub tee_tcb_svn2: [u8; 16],
    pub mr_servicetd: [u8; 48],
}

/// TD report body (1.0, optionally with the 1.5 extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mrsigner_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// Present for TD report 1.5 (quote v5 body type 3).
    pub v15: Option<TdReport15Ext>,
}

/// Decoded `td_attributes` bits that upstream reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdAttributes {
    pub debug: bool,
    pub septve_disable: bool,
    pub protection_keys: bool,
    pub key_locker: bool,
    pub perfmon: bool,
}

impl TdReport {
    /// `td_attributes` as a little-endian u64.
    pub fn td_attributes_u64(&self) -> u64 {
        u64::from_le_bytes(self.td_attributes)
    }

    /// Decode the `td_attributes` bits (0 debug, 28 septve_disable,
    /// 30 protection_keys, 31 key_locker, 63 perfmon).
    pub fn td_attributes_decoded(&self) -> TdAttributes {
        let v = self.td_attributes_u64();
        let bit = |n: u32| (v >> n) & 1 == 1;
        TdAttributes {
            debug: bit(0),
            septve_disable: bit(28),
            protection_keys: bit(30),
            key_locker: bit(31),
            perfmon: bit(63),
        }
    }
}

/// SGX report body (used for the QE report), 384 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub config_id: [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: [u8; 16],
    pub report_data: [u8; 64],
    /// The raw 384 bytes (what the QE report signature covers).
    pub raw: Vec<u8>,
}

/// ECDSA-256 quote signature data, with the type-6 / type-5 certification
/// data extracted (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureData {
    /// Quote signature r‖s (big-endian, 32 + 32).
    pub quote_signature: [u8; 64],
    /// Attestation public key x‖y (raw, SEC1 without the 0x04 prefix).
    pub attestation_key: [u8; 64],
    /// Outer certification data type: 6 (QE report certification data) in a
    /// TDX quote; an SGX v3 quote has no outer wrapper and carries 5 here.
    pub cert_data_type: u16,
    /// Outer certification data size as declared (v3: the PCK chain's size).
    pub cert_data_size: u32,
    pub qe_report: EnclaveReport,
    /// QE report signature r‖s (big-endian).
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: Vec<u8>,
    /// Inner certification data type (always 5 after a successful parse).
    pub pck_cert_chain_type: u16,
    /// PEM certificate chain bytes exactly as carried (usually NUL-terminated).
    pub pck_cert_chain: Vec<u8>,
}

impl SignatureData {
    /// The PEM chain as text with trailing NUL bytes removed, if it is UTF-8.
    pub fn pck_cert_chain_pem(&self) -> Option<&str> {
        let mut end = self.pck_cert_chain.len();
        while end > 0 && self.pck_cert_chain.get(end - 1) == Some(&0) {
            end -= 1;
        }
        std::str::from_utf8(self.pck_cert_chain.get(..end)?).ok()
    }
}

/// A parsed TDX quote (v4 or v5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub header: Header,
    /// `Some` for v5 quotes.
    pub body_descriptor: Option<BodyDescriptor>,
    pub body: TdReport,
    /// Length of the bytes covered by the quote signature (header [+ descriptor] + body).
    pub signed_len: usize,
    /// Declared signature data length.
    pub signature_data_len: u32,
    pub signature: SignatureData,
    /// Number of bytes after the signature data (ignored, e.g. zero padding).
    pub trailing_len: usize,
}

impl Quote {
    /// True when the body is a TD report 1.5.
    pub fn is_td15(&self) -> bool {
        self.body.v15.is_some()
    }
}

/// Parse a TDX quote v4 / v5. Never panics.
pub fn parse_quote(bytes: &[u8]) -> Result<Quote, ParseError> {
    let mut r = Reader::new(bytes);
    let header = parse_header(&mut r)?;
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(ParseError::UnsupportedAttKeyType(header.att_key_type));
    }
    if header.version != 4 && header.version != 5 {
        return Err(ParseError::UnsupportedVersion(header.version));
    }
    if header.tee_type != TEE_TYPE_TDX {
        return Err(ParseError::UnsupportedTeeType(header.tee_type));
    }

    let (body_descriptor, with_v15) = if header.version == 5 {
        let body_type = r.u16("v5 body type")?;
        let body_size = r.u32("v5 body size")?;
        let expected = match body_type {
            2 => TD_REPORT10_LEN,
            3 => TD_REPORT15_LEN,
            other => return Err(ParseError::UnsupportedBodyType(other)),
        };
        if usize::try_from(body_size).ok() != Some(expected) {
            return Err(ParseError::BodySizeMismatch {
                body_type,
                size: body_size,
                expected,
            });
        }
        (
            Some(BodyDescriptor {
                body_type,
                body_size,
            }),
            body_type == 3,
        )
    } else {
        (None, false)
    };

    let body = parse_td_report(&mut r, with_v15)?;
    let signed_len = r.pos();

    let signature_data_len = r.u32("signature data length")?;
    let sig_len = to_usize(signature_data_len);
    let sig_bytes = r.take("signature data", sig_len)?;
    let trailing_len = r.remaining();
    let signature = parse_signature_data(sig_bytes, signed_len + 4, true)?;

    Ok(Quote {
        header,
        body_descriptor,
        body,
        signed_len,
        signature_data_len,
        signature,
        trailing_len,
    })
}

pub(crate) fn to_usize(v: u32) -> usize {
    // usize is at least 32 bits on every supported target; saturate otherwise.
    usize::try_from(v).unwrap_or(usize::MAX)
}

pub(crate) fn parse_header(r: &mut Reader<'_>) -> Result<Header, ParseError> {
    Ok(Header {
        version: r.u16("header.version")?,
        att_key_type: r.u16("header.att_key_type")?,
        tee_type: r.u32("header.tee_type")?,
        reserved: r.array("header.reserved")?,
        vendor_id: r.array("header.vendor_id")?,
        user_data: r.array("header.user_data")?,
    })
}

fn parse_td_report(r: &mut Reader<'_>, with_v15: bool) -> Result<TdReport, ParseError> {
    let mut body = TdReport {
        tee_tcb_svn: r.array("body.tee_tcb_svn")?,
        mr_seam: r.array("body.mr_seam")?,
        mrsigner_seam: r.array("body.mrsigner_seam")?,
        seam_attributes: r.array("body.seam_attributes")?,
        td_attributes: r.array("body.td_attributes")?,
        xfam: r.array("body.xfam")?,
        mr_td: r.array("body.mr_td")?,
        mr_config_id: r.array("body.mr_config_id")?,
        mr_owner: r.array("body.mr_owner")?,
        mr_owner_config: r.array("body.mr_owner_config")?,
        rtmr: [
            r.array("body.rtmr_0")?,
            r.array("body.rtmr_1")?,
            r.array("body.rtmr_2")?,
            r.array("body.rtmr_3")?,
        ],
        report_data: r.array("body.report_data")?,
        v15: None,
    };
    if with_v15 {
        body.v15 = Some(TdReport15Ext {
            tee_tcb_svn2: r.array("body.tee_tcb_svn2")?,
            mr_servicetd: r.array("body.mr_servicetd")?,
        });
    }
    Ok(body)
}

pub(crate) fn parse_enclave_report(raw: &[u8], base: usize) -> Result<EnclaveReport, ParseError> {
    let mut r = Reader::with_base(raw, base);
    let cpu_svn = r.array("qe_report.cpu_svn")?;
    let misc_select = r.u32("qe_report.misc_select")?;
    r.take("qe_report.reserved1", 28)?;
    let attributes = r.array("qe_report.attributes")?;
    let mr_enclave = r.array("qe_report.mr_enclave")?;
    r.take("qe_report.reserved2", 32)?;
    let mr_signer = r.array("qe_report.mr_signer")?;
    r.take("qe_report.reserved3", 32)?;
    let config_id = r.array("qe_report.config_id")?;
    let isv_prod_id = r.u16("qe_report.isv_prod_id")?;
    let isv_svn = r.u16("qe_report.isv_svn")?;
    let config_svn = r.u16("qe_report.config_svn")?;
    r.take("qe_report.reserved4", 42)?;
    let isv_family_id = r.array("qe_report.isv_family_id")?;
    let report_data = r.array("qe_report.report_data")?;
    Ok(EnclaveReport {
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
        raw: raw.to_vec(),
    })
}

/// The signature data of a quote. TDX quotes (`wrapped`) carry the QE report
/// inside a type-6 certification data block; SGX v3 quotes carry it directly
/// after the attestation key.
pub(crate) fn parse_signature_data(
    sig: &[u8],
    base: usize,
    wrapped: bool,
) -> Result<SignatureData, ParseError> {
    let mut r = Reader::with_base(sig, base);
    let quote_signature = r.array("quote signature")?;
    let attestation_key = r.array("attestation key")?;
    let (mut cert_data_type, mut cert_data_size) = (CERT_TYPE_PCK_CHAIN, 0);
    if wrapped {
        cert_data_type = r.u16("certification data type")?;
        if cert_data_type != CERT_TYPE_QE_REPORT {
            return Err(ParseError::CertificationDataType {
                expected: CERT_TYPE_QE_REPORT,
                found: cert_data_type,
            });
        }
        cert_data_size = r.u32("certification data size")?;
    }
    let cert_start = r.pos();

    let qe_base = r.abs_pos();
    let qe_raw = r.take("QE report", ENCLAVE_REPORT_LEN)?;
    let qe_report = parse_enclave_report(qe_raw, qe_base)?;
    let qe_report_signature = r.array("QE report signature")?;
    let auth_len = usize::from(r.u16("QE auth data size")?);
    let qe_auth_data = r.take("QE auth data", auth_len)?.to_vec();
    let pck_cert_chain_type = r.u16("PCK certification data type")?;
    if pck_cert_chain_type != CERT_TYPE_PCK_CHAIN {
        return Err(ParseError::CertificationDataType {
            expected: CERT_TYPE_PCK_CHAIN,
            found: pck_cert_chain_type,
        });
    }
    let chain_size = r.u32("PCK certification data size")?;
    let pck_cert_chain = r
        .take("PCK certificate chain", to_usize(chain_size))?
        .to_vec();
    if !wrapped {
        cert_data_size = chain_size;
    }

    // Structural consistency: the outer type-6 size covers exactly the QE
    // certification data, and the signature data holds exactly that structure.
    let cert_actual = r.pos() - cert_start;
    if wrapped && to_usize(cert_data_size) != cert_actual {
        return Err(ParseError::LengthMismatch {
            field: "certification data size",
            declared: to_usize(cert_data_size),
            actual: cert_actual,
        });
    }
    if r.remaining() != 0 {
        return Err(ParseError::LengthMismatch {
            field: "signature data length",
            declared: sig.len(),
            actual: r.pos(),
        });
    }

    Ok(SignatureData {
        quote_signature,
        attestation_key,
        cert_data_type,
        cert_data_size,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_cert_chain_type,
        pck_cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal, synthetic, well-formed v4 quote (all-zero fields).
    pub(crate) fn synthetic_v4(chain: &[u8]) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&2u16.to_le_bytes());
        q.extend_from_slice(&TEE_TYPE_TDX.to_le_bytes());
        q.extend_from_slice(&[0u8; 40]);
        q.extend_from_slice(&[0u8; TD_REPORT10_LEN]);
        let cert_size = ENCLAVE_REPORT_LEN + 64 + 2 + 32 + 6 + chain.len();
        let sig_len = 134 + cert_size;
        q.extend_from_slice(&(sig_len as u32).to_le_bytes());
        q.extend_from_slice(&[0u8; 128]);
        q.extend_from_slice(&6u16.to_le_bytes());
        q.extend_from_slice(&(cert_size as u32).to_le_bytes());
        q.extend_from_slice(&[0u8; ENCLAVE_REPORT_LEN + 64]);
        q.extend_from_slice(&32u16.to_le_bytes());
        q.extend_from_slice(&[0u8; 32]);
        q.extend_from_slice(&5u16.to_le_bytes());
        q.extend_from_slice(&(chain.len() as u32).to_le_bytes());
        q.extend_from_slice(chain);
        q
    }

    #[test]
    fn synthetic_roundtrip() {
        let q = synthetic_v4(b"abc\0");
        let p = parse_quote(&q).expect("parse");
        assert_eq!(p.signed_len, 632);
        assert_eq!(p.signature.pck_cert_chain, b"abc\0");
        assert_eq!(p.signature.pck_cert_chain_pem(), Some("abc"));
        assert_eq!(p.trailing_len, 0);
        for n in 0..q.len() {
            assert!(parse_quote(&q[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn empty_and_tiny() {
        assert!(matches!(
            parse_quote(&[]),
            Err(ParseError::Truncated { .. })
        ));
        assert!(parse_quote(&[4, 0]).is_err());
    }

    #[test]
    fn rejects_versions_and_types() {
        let mut q = synthetic_v4(b"x");
        q[0] = 3;
        assert_eq!(parse_quote(&q), Err(ParseError::UnsupportedVersion(3)));
        let mut q = synthetic_v4(b"x");
        q[2] = 3;
        assert_eq!(parse_quote(&q), Err(ParseError::UnsupportedAttKeyType(3)));
        let mut q = synthetic_v4(b"x");
        q[4] = 0;
        assert_eq!(parse_quote(&q), Err(ParseError::UnsupportedTeeType(0)));
        let mut q = synthetic_v4(b"x");
        q[636 + 128] = 7;
        assert!(matches!(
            parse_quote(&q),
            Err(ParseError::CertificationDataType { expected: 6, .. })
        ));
    }

    #[test]
    fn huge_lengths_do_not_panic() {
        let mut q = synthetic_v4(b"x");
        q[632..636].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_quote(&q), Err(ParseError::Truncated { .. })));
        let mut q = synthetic_v4(b"x");
        let chain_size_off = 636 + 584 + 32 + 2;
        q[chain_size_off..chain_size_off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_quote(&q).is_err());
    }

    #[test]
    fn td_attribute_bits() {
        let q = synthetic_v4(b"x");
        let mut p = parse_quote(&q).unwrap();
        p.body.td_attributes = (1u64 | 1 << 28 | 1 << 30 | 1 << 31 | 1 << 63).to_le_bytes();
        let a = p.body.td_attributes_decoded();
        assert!(a.debug && a.septve_disable && a.protection_keys && a.key_locker && a.perfmon);
        p.body.td_attributes = [0; 8];
        let a = p.body.td_attributes_decoded();
        assert!(!(a.debug || a.septve_disable || a.protection_keys || a.key_locker || a.perfmon));
    }
}
