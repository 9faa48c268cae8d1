//! Offline signature checks of a parsed TDX quote (spec §2.1, §2.6 steps
//! 2, 4 (certificate signatures only), 5 and 7). Written from the spec.
//!
//! What is checked, in this order:
//! 1. the embedded PCK chain: exactly three PEM certificates (PCK leaf,
//!    PCK Platform/Processor CA, Intel SGX Root CA), each DER-decodable, each
//!    certificate's issuer name equal to the next one's subject, every
//!    signature ECDSA-P256-SHA256 by the next certificate's P-256 key, the
//!    root self-signed;
//! 2. the chain's root is **byte-for-byte** equal to the pinned
//!    `trusted_root_der` (a root carrying the same key but different bytes
//!    is rejected);
//! 3. optionally, each certificate's validity window contains `now`;
//! 4. the QE report signature (raw r‖s over the 384 QE-report bytes) by the
//!    PCK leaf key;
//! 5. the QE report-data binding: `report_data[0..32] ==
//!    SHA-256(attestation_key ‖ qe_auth_data)` and `report_data[32..64]` zero;
//! 6. the quote signature (raw r‖s over header [+ v5 descriptor] + body) by
//!    the attestation key.
//!
//! Not checked here: CRLs, TCB info / QE identity collateral, certificate
//! extensions (basic constraints, key usage), FMSPC/PCE-ID matching.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::Certificate;

use crate::pck::{pem_certificates, tlv};
use crate::Quote;

/// ecdsa-with-SHA256.
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-ecPublicKey.
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Number of certificates a PCK chain must carry (leaf, PCK CA, root).
pub const PCK_CHAIN_LEN: usize = 3;

/// Errors of [`verify_signatures`]; one variant per check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The pinned root passed by the caller is not a usable certificate.
    #[error("trusted root certificate invalid: {0}")]
    TrustedRootInvalid(String),
    /// PCK chain structure: PEM/DER decoding, certificate count, name chaining.
    #[error("PCK certificate chain structure check failed: {0}")]
    ChainStructure(String),
    /// A certificate signature (or its algorithm / issuer key) in the PCK chain.
    #[error(
        "PCK certificate chain signature check failed for certificate {index} ({role}): {reason}"
    )]
    ChainSignature {
        index: usize,
        role: &'static str,
        reason: String,
    },
    /// The chain's root is not byte-for-byte the pinned trusted root.
    #[error("PCK certificate chain root check failed: the chain's root certificate is not the trusted root (byte-for-byte comparison)")]
    UntrustedRoot,
    /// `now` is outside a certificate's validity window.
    #[error("PCK certificate chain validity check failed for certificate {index} ({role}): now={now} not in [{not_before}, {not_after}]")]
    CertificateValidity {
        index: usize,
        role: &'static str,
        now: i64,
        not_before: i64,
        not_after: i64,
    },
    #[error("QE report signature check failed: {0}")]
    QeReportSignature(String),
    #[error("QE report data binding check failed: {0}")]
    QeReportDataBinding(String),
    #[error("quote signature check failed: {0}")]
    QuoteSignature(String),
}

/// How the chain's root was matched against the pinned root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootMatch {
    /// The chain's root DER equals `trusted_root_der` byte for byte.
    ExactDer,
}

/// What [`verify_signatures`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureReport {
    /// Number of certificates in the PCK chain (always [`PCK_CHAIN_LEN`]).
    pub chain_len: usize,
    pub root_match: RootMatch,
    /// SHA-256 of the trusted root DER.
    pub root_sha256: [u8; 32],
    /// DER of the PCK leaf certificate.
    pub pck_leaf_der: Vec<u8>,
    /// Latest `notBefore` over the chain (unix seconds).
    pub chain_not_before: i64,
    /// Earliest `notAfter` over the chain (unix seconds).
    pub chain_not_after: i64,
    /// `Some(now)` when the validity windows were checked against `now`.
    pub validity_checked_at: Option<i64>,
}

const ROLES: [&str; PCK_CHAIN_LEN] = ["PCK leaf", "PCK CA", "root CA"];

impl Quote {
    /// Re-serialize the bytes covered by the quote signature
    /// (header [+ v5 body descriptor] + TD report body). Every field of
    /// these structures is kept by the parser, so this is lossless.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let b = &self.body;
        let mut v = Vec::with_capacity(self.signed_len);
        v.extend_from_slice(&h.version.to_le_bytes());
        v.extend_from_slice(&h.att_key_type.to_le_bytes());
        v.extend_from_slice(&h.tee_type.to_le_bytes());
        v.extend_from_slice(&h.reserved);
        v.extend_from_slice(&h.vendor_id);
        v.extend_from_slice(&h.user_data);
        if let Some(d) = &self.body_descriptor {
            v.extend_from_slice(&d.body_type.to_le_bytes());
            v.extend_from_slice(&d.body_size.to_le_bytes());
        }
        v.extend_from_slice(&b.tee_tcb_svn);
        v.extend_from_slice(&b.mr_seam);
        v.extend_from_slice(&b.mrsigner_seam);
        v.extend_from_slice(&b.seam_attributes);
        v.extend_from_slice(&b.td_attributes);
        v.extend_from_slice(&b.xfam);
        v.extend_from_slice(&b.mr_td);
        v.extend_from_slice(&b.mr_config_id);
        v.extend_from_slice(&b.mr_owner);
        v.extend_from_slice(&b.mr_owner_config);
        for r in &b.rtmr {
            v.extend_from_slice(r);
        }
        v.extend_from_slice(&b.report_data);
        if let Some(e) = &b.v15 {
            v.extend_from_slice(&e.tee_tcb_svn2);
            v.extend_from_slice(&e.mr_servicetd);
        }
        v
    }
}

/// The full DER bytes (tag + length + content) of the first TLV inside the
/// outer SEQUENCE of a certificate, i.e. the signed `tbsCertificate`.
fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, outer, _) = tlv(cert_der)? else {
        return None;
    };
    let (0x30, _, rest) = tlv(outer)? else {
        return None;
    };
    outer.get(..outer.len().checked_sub(rest.len())?)
}

/// The P-256 verifying key of a certificate's SubjectPublicKeyInfo.
fn p256_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(format!(
            "public key algorithm {} is not id-ecPublicKey",
            spki.algorithm.oid
        ));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(OID_P256) {
        return Err("public key curve is not P-256 (prime256v1)".into());
    }
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or("public key BIT STRING has unused bits")?;
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| "public key is not a valid P-256 point".into())
}

/// Verify `cert` (whose DER is `cert_der`) was signed by `issuer_key`.
fn check_cert_signature(
    cert: &Certificate,
    cert_der: &[u8],
    issuer_key: &VerifyingKey,
) -> Result<(), String> {
    if cert.signature_algorithm.oid != OID_ECDSA_SHA256
        || cert.tbs_certificate.signature.oid != OID_ECDSA_SHA256
    {
        return Err(format!(
            "signature algorithm {} is not ecdsa-with-SHA256",
            cert.signature_algorithm.oid
        ));
    }
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err("outer and TBS signature algorithms differ".into());
    }
    let tbs = tbs_bytes(cert_der).ok_or("cannot locate tbsCertificate bytes")?;
    let sig_der = cert
        .signature
        .as_bytes()
        .ok_or("signature BIT STRING has unused bits")?;
    let sig =
        Signature::from_der(sig_der).map_err(|_| "signature is not a valid DER ECDSA signature")?;
    issuer_key
        .verify(tbs, &sig)
        .map_err(|_| "ECDSA-P256-SHA256 signature does not verify".into())
}

fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Verify a raw r‖s ECDSA-P256-SHA256 signature.
fn check_raw_signature(key: &VerifyingKey, msg: &[u8], rs: &[u8; 64]) -> Result<(), String> {
    let sig =
        Signature::from_slice(rs).map_err(|_| "r or s is zero or not below the group order")?;
    key.verify(msg, &sig)
        .map_err(|_| "ECDSA-P256-SHA256 signature does not verify".into())
}

/// Offline signature checks of a TDX quote (see the module docs for the
/// exact list and order). `trusted_root_der` is the pinned Intel SGX Root
/// CA; the chain's root must equal it byte for byte. When `now_unix` is
/// `Some`, every chain certificate must be valid at that time (inclusive).
/// Never panics.
pub fn verify_signatures(
    quote: &Quote,
    trusted_root_der: &[u8],
    now_unix: Option<i64>,
) -> Result<SignatureReport, VerifyError> {
    // --- 1. chain structure and certificate signatures -------------------
    let trusted = Certificate::from_der(trusted_root_der)
        .map_err(|e| VerifyError::TrustedRootInvalid(format!("DER decode: {e}")))?;
    // The pinned root's own self-signature is checked below, as the chain's
    // last certificate (which must be byte-identical to it).
    let trusted_key = p256_key(&trusted).map_err(VerifyError::TrustedRootInvalid)?;

    let chain = &quote.signature.pck_cert_chain;
    let pem_blocks = count(chain, b"-----BEGIN CERTIFICATE-----");
    let ders = pem_certificates(chain);
    if ders.len() != pem_blocks {
        return Err(VerifyError::ChainStructure(format!(
            "{} of {pem_blocks} PEM certificate blocks have invalid base64",
            pem_blocks.saturating_sub(ders.len())
        )));
    }
    if ders.len() != PCK_CHAIN_LEN {
        return Err(VerifyError::ChainStructure(format!(
            "expected {PCK_CHAIN_LEN} certificates (PCK leaf, PCK CA, root CA), found {}",
            ders.len()
        )));
    }
    let mut certs = Vec::with_capacity(PCK_CHAIN_LEN);
    for (i, der) in ders.iter().enumerate() {
        let c = Certificate::from_der(der).map_err(|e| {
            VerifyError::ChainStructure(format!(
                "certificate {i} ({}) does not decode: {e}",
                ROLES.get(i).copied().unwrap_or("?")
            ))
        })?;
        certs.push(c);
    }
    for i in 0..PCK_CHAIN_LEN {
        let (Some(cert), Some(der)) = (certs.get(i), ders.get(i)) else {
            return Err(VerifyError::ChainStructure("internal index".into()));
        };
        // Issuer of the last certificate is itself (self-signed root).
        let (issuer, issuer_der) = match (certs.get(i + 1), ders.get(i + 1)) {
            (Some(c), Some(d)) => (c, d.as_slice()),
            _ => (cert, der.as_slice()),
        };
        let role = ROLES.get(i).copied().unwrap_or("?");
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(VerifyError::ChainStructure(format!(
                "certificate {i} ({role}) issuer \"{}\" is not the subject \"{}\" of the next certificate",
                cert.tbs_certificate.issuer, issuer.tbs_certificate.subject
            )));
        }
        // The root position is judged against the pinned root (step 2)
        // before trusting its key; intermediate keys are from the chain.
        let key = if issuer_der == trusted_root_der {
            trusted_key
        } else if i + 1 >= PCK_CHAIN_LEN {
            return Err(VerifyError::UntrustedRoot);
        } else {
            p256_key(issuer).map_err(|reason| VerifyError::ChainSignature {
                index: i,
                role,
                reason: format!("issuer key: {reason}"),
            })?
        };
        check_cert_signature(cert, der, &key).map_err(|reason| VerifyError::ChainSignature {
            index: i,
            role,
            reason,
        })?;
    }
    // --- 2. root pinning (byte-for-byte) ---------------------------------
    if ders.last().map(Vec::as_slice) != Some(trusted_root_der) {
        return Err(VerifyError::UntrustedRoot);
    }

    // --- 3. validity windows ---------------------------------------------
    let mut chain_not_before = i64::MIN;
    let mut chain_not_after = i64::MAX;
    for (i, c) in certs.iter().enumerate() {
        let v = &c.tbs_certificate.validity;
        let (nb, na) = (unix(v.not_before), unix(v.not_after));
        chain_not_before = chain_not_before.max(nb);
        chain_not_after = chain_not_after.min(na);
        if let Some(now) = now_unix {
            if now < nb || now > na {
                return Err(VerifyError::CertificateValidity {
                    index: i,
                    role: ROLES.get(i).copied().unwrap_or("?"),
                    now,
                    not_before: nb,
                    not_after: na,
                });
            }
        }
    }

    // --- 4. QE report signature by the PCK leaf key ----------------------
    let sd = &quote.signature;
    let leaf = certs
        .first()
        .ok_or_else(|| VerifyError::ChainStructure("empty chain".into()))?;
    let leaf_key =
        p256_key(leaf).map_err(|e| VerifyError::QeReportSignature(format!("PCK leaf key: {e}")))?;
    check_raw_signature(&leaf_key, &sd.qe_report.raw, &sd.qe_report_signature)
        .map_err(|e| VerifyError::QeReportSignature(format!("by the PCK leaf key: {e}")))?;

    // --- 5. QE report-data binding ---------------------------------------
    let mut h = Sha256::new();
    h.update(sd.attestation_key);
    h.update(&sd.qe_auth_data);
    let digest: [u8; 32] = h.finalize().into();
    let rd = &sd.qe_report.report_data;
    if rd.get(..32) != Some(&digest[..]) {
        return Err(VerifyError::QeReportDataBinding(
            "QE report_data[0..32] != SHA-256(attestation_key || qe_auth_data)".into(),
        ));
    }
    if rd.get(32..).is_none_or(|z| z.iter().any(|&b| b != 0)) {
        return Err(VerifyError::QeReportDataBinding(
            "QE report_data[32..64] is not all zero".into(),
        ));
    }

    // --- 6. quote signature by the attestation key -----------------------
    let signed = quote.signed_bytes();
    if signed.len() != quote.signed_len {
        return Err(VerifyError::QuoteSignature(format!(
            "signed bytes length {} does not match the parsed length {}",
            signed.len(),
            quote.signed_len
        )));
    }
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(&sd.attestation_key);
    let att_key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| {
        VerifyError::QuoteSignature("attestation key is not a valid P-256 point".into())
    })?;
    check_raw_signature(&att_key, &signed, &sd.quote_signature)
        .map_err(|e| VerifyError::QuoteSignature(format!("by the attestation key: {e}")))?;

    Ok(SignatureReport {
        chain_len: certs.len(),
        root_match: RootMatch::ExactDer,
        root_sha256: Sha256::digest(trusted_root_der).into(),
        pck_leaf_der: ders.into_iter().next().unwrap_or_default(),
        chain_not_before,
        chain_not_after,
        validity_checked_at: now_unix,
    })
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
