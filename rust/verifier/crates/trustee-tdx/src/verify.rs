//! Offline signature checks of a parsed TDX quote: the signature part of Intel's DCAP quote
//! verification (certificate signatures only; collateral is `dcap.rs`'s).
//!
//! What is checked, in this order:
//! 1. the embedded PCK chain: exactly three PEM certificates (PCK leaf,
//!    PCK Platform/Processor CA, Intel SGX Root CA; a chain ending at a
//!    certificate issued by the Intel root gets the built-in root appended),
//!    each DER-decodable, each
//!    certificate's issuer name equal to the next one's subject, every
//!    signature ECDSA-P256-SHA256 by the next certificate's P-256 key, the
//!    root naming itself as issuer (its self-signature is not recomputed:
//!    the pinned fingerprint below is what makes it trusted);
//! 2. the SHA-256 of the chain's root DER is one of the pinned fingerprints
//!    (so a root carrying the same key but different bytes is rejected);
//! 3. optionally, each certificate's validity window contains `now`;
//! 4. the QE report signature (raw r‖s over the 384 QE-report bytes) by the
//!    PCK leaf key;
//! 5. the QE report-data binding: `report_data[0..32] ==
//!    SHA-256(attestation_key ‖ qe_auth_data)` and `report_data[32..64]` zero;
//! 6. the quote signature (raw r‖s over header [+ v5 descriptor] + body) by
//!    the attestation key.
//!
//! Not checked here: CRLs, TCB info / QE identity collateral, certificate
//! extensions (basic constraints, key usage), FMSPC/PCE-ID matching — see
//! the `dcap` module for the full appraisal.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::Certificate;

use crate::ecdsa::P256Key;
use crate::pck::{split_pem, tlv, PemSplit};
use crate::time::format_rfc3339;
use crate::{Quote, SignatureData};

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
    /// The SHA-256 of the chain's root DER is not a trusted fingerprint.
    #[error("PCK certificate chain root check failed: root certificate SHA-256 {sha256} is not a trusted root fingerprint")]
    UntrustedRoot { sha256: String },
    /// `now` is outside a certificate's validity window.
    #[error(
        "PCK certificate chain validity check failed for certificate {index} ({role}): not valid \
         at {} (valid from {} to {})",
        format_rfc3339(*.now),
        format_rfc3339(*.not_before),
        format_rfc3339(*.not_after)
    )]
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
    /// The SHA-256 of the chain's root DER is a pinned fingerprint (which
    /// binds the exact bytes, not just the key).
    PinnedSha256,
}

/// What [`verify_signatures`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureReport {
    /// Number of certificates in the PCK chain (always [`PCK_CHAIN_LEN`]).
    pub chain_len: usize,
    pub root_match: RootMatch,
    /// SHA-256 of the chain's (trusted) root DER.
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
pub(crate) fn tbs_bytes(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, outer, _) = tlv(cert_der)? else {
        return None;
    };
    let (0x30, _, rest) = tlv(outer)? else {
        return None;
    };
    outer.get(..outer.len().checked_sub(rest.len())?)
}

/// The P-256 verifying key of a certificate's SubjectPublicKeyInfo.
pub(crate) fn p256_key(cert: &Certificate) -> Result<P256Key, String> {
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
    P256Key::from_sec1(bytes)
}

/// The signed `tbsCertificate` bytes and DER signature of `cert`, once its
/// signature algorithm is known to be ecdsa-with-SHA256 on both sides.
fn signed_parts<'a>(
    cert: &'a Certificate,
    cert_der: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), String> {
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
    Ok((tbs, sig_der))
}

/// What one appraisal has already established, shared by its chains: the
/// collateral chains and the quote's PCK chain repeat certificates (the root
/// in all three, the PCK CA in the quote and in the PCK CRL issuer chain).
///
/// * certificate signatures shown valid, as (certificate DER, issuer DER)
///   pairs: an ECDSA check is a deterministic function of these bytes, so
///   repeating it proves nothing new;
/// * certificates already decoded, keyed by their DER, so each distinct
///   certificate is decoded once.
#[derive(Debug, Default)]
pub(crate) struct SeenSignatures {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
    decoded: Vec<(Vec<u8>, Arc<Certificate>)>,
}

impl SeenSignatures {
    fn contains(&self, cert_der: &[u8], issuer_der: &[u8]) -> bool {
        self.pairs
            .iter()
            .any(|(c, i)| c.as_slice() == cert_der && i.as_slice() == issuer_der)
    }
    fn record(&mut self, cert_der: &[u8], issuer_der: &[u8]) {
        self.pairs.push((cert_der.to_vec(), issuer_der.to_vec()));
    }
    fn decode(&mut self, der: &[u8]) -> Result<Arc<Certificate>, x509_cert::der::Error> {
        if let Some((_, c)) = self.decoded.iter().find(|(d, _)| d.as_slice() == der) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Certificate::from_der(der)?);
        self.decoded.push((der.to_vec(), Arc::clone(&c)));
        Ok(c)
    }
}

pub(crate) fn unix(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// Verify a raw r‖s ECDSA-P256-SHA256 signature.
pub(crate) fn check_raw_signature(key: &P256Key, msg: &[u8], rs: &[u8; 64]) -> Result<(), String> {
    key.verify_fixed(msg, rs)
}

/// SHA-256 of the Intel SGX Root CA certificate (DER): whether it arrives with
/// the quote's PCK chain and the collateral issuer chains or is the built-in
/// copy ([`crate::intel_sgx_root_ca_der`]), only these exact bytes are trusted.
pub const INTEL_SGX_ROOT_CA_SHA256: [u8; 32] = [
    0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
    0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
];

/// Why a certificate chain was rejected (shared by the PCK chain and the
/// collateral issuer chains, which map it onto their own error variants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainFailure {
    Structure(String),
    Signature {
        index: usize,
        role: &'static str,
        reason: String,
    },
    UntrustedRoot {
        sha256: String,
    },
}

impl std::fmt::Display for ChainFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainFailure::Structure(s) => write!(f, "structure: {s}"),
            ChainFailure::Signature {
                index,
                role,
                reason,
            } => write!(f, "signature of certificate {index} ({role}): {reason}"),
            ChainFailure::UntrustedRoot { sha256 } => write!(
                f,
                "root certificate SHA-256 {sha256} is not a trusted root fingerprint"
            ),
        }
    }
}

/// A certificate chain whose names chain, whose signatures verify and whose
/// last certificate is a self-signed root with a trusted SHA-256.
/// Validity windows are NOT judged here (they depend on the time of use).
#[derive(Debug, Clone)]
pub(crate) struct CheckedChain {
    pub(crate) ders: Vec<Vec<u8>>,
    pub(crate) certs: Vec<Arc<Certificate>>,
    pub(crate) root_sha256: [u8; 32],
}

impl CheckedChain {
    /// (notBefore, notAfter) of every certificate, unix seconds.
    pub(crate) fn windows(&self) -> Vec<(i64, i64)> {
        self.certs
            .iter()
            .map(|c| {
                let v = &c.tbs_certificate.validity;
                (unix(v.not_before), unix(v.not_after))
            })
            .collect()
    }
}

/// Check a chain given as PEM text: exactly `roles.len()` certificates,
/// leaf first, root last.
pub(crate) fn check_pem_chain(
    pem: &[u8],
    roles: &[&'static str],
    trusted_roots_sha256: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<CheckedChain, ChainFailure> {
    check_split_chain(split_pem(pem), roles, trusted_roots_sha256, seen)
}

/// [`check_pem_chain`] of a chain already split into blocks.
pub(crate) fn check_split_chain(
    split: PemSplit,
    roles: &[&'static str],
    trusted_roots_sha256: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<CheckedChain, ChainFailure> {
    let (pem_blocks, mut ders) = (split.blocks, split.ders);
    if ders.len() != pem_blocks {
        return Err(ChainFailure::Structure(format!(
            "{} of {pem_blocks} PEM certificate blocks have invalid base64",
            pem_blocks.saturating_sub(ders.len())
        )));
    }
    crate::intel_root::complete_chain(&mut ders, roles.len());
    if ders.len() != roles.len() {
        return Err(ChainFailure::Structure(format!(
            "expected {} certificates ({}), found {}",
            roles.len(),
            roles.join(", "),
            ders.len()
        )));
    }
    check_der_chain(ders, roles, trusted_roots_sha256, seen)
}

pub(crate) fn check_der_chain(
    ders: Vec<Vec<u8>>,
    roles: &[&'static str],
    trusted_roots_sha256: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<CheckedChain, ChainFailure> {
    let role = |i: usize| roles.get(i).copied().unwrap_or("?");
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        let c = seen.decode(der).map_err(|e| {
            ChainFailure::Structure(format!(
                "certificate {i} ({}) does not decode: {e}",
                role(i)
            ))
        })?;
        certs.push(c);
    }
    let last = ders
        .len()
        .checked_sub(1)
        .ok_or_else(|| ChainFailure::Structure("certificate chain is empty".into()))?;
    let root_sha256: [u8; 32] = ders
        .get(last)
        .map(|d| Sha256::digest(d).into())
        .unwrap_or_default();
    for i in 0..ders.len() {
        let (Some(cert), Some(der)) = (certs.get(i), ders.get(i)) else {
            return Err(ChainFailure::Structure("internal index".into()));
        };
        // The last certificate is its own issuer (self-signed root).
        let issuer = certs.get(i + 1).unwrap_or(cert);
        let issuer_der = ders.get(i + 1).unwrap_or(der);
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(ChainFailure::Structure(format!(
                "certificate {i} ({}) issuer \"{}\" is not the subject \"{}\" of the next certificate",
                role(i),
                cert.tbs_certificate.issuer,
                issuer.tbs_certificate.subject
            )));
        }
        // Never use the root's key before the root itself is known trusted.
        if i + 1 >= last && !trusted_roots_sha256.contains(&root_sha256) {
            return Err(ChainFailure::UntrustedRoot {
                sha256: hex::encode(root_sha256),
            });
        }
        let failure = |reason: String| ChainFailure::Signature {
            index: i,
            role: role(i),
            reason,
        };
        let (tbs, sig_der) = signed_parts(cert, der).map_err(failure)?;
        // The root is trusted because the SHA-256 of its exact DER is pinned
        // (checked above), not because it signs itself: its self-signature is
        // a fixed property of those pinned bytes, and any altered root fails
        // the fingerprint. So the root's ECDSA self-check is skipped (its
        // algorithm fields are still checked above); its key is still
        // decoded and used for the certificate below it.
        if i == last && last > 0 {
            continue;
        }
        if seen.contains(der, issuer_der) {
            continue;
        }
        let key = p256_key(issuer).map_err(|reason| failure(format!("issuer key: {reason}")))?;
        key.verify_der(tbs, sig_der).map_err(failure)?;
        seen.record(der, issuer_der);
    }
    Ok(CheckedChain {
        ders,
        certs,
        root_sha256,
    })
}

/// A verified PCK chain (leaf, PCK CA, root) with the leaf key ready for the
/// per-quote signature checks. Independent of time and of the quote, so it
/// can be cached by the chain's content hash.
#[derive(Debug, Clone)]
pub struct PckChain {
    pub(crate) chain: CheckedChain,
    pub(crate) leaf_key: P256Key,
}

impl PckChain {
    /// DER of the PCK leaf certificate.
    pub fn leaf_der(&self) -> &[u8] {
        self.chain.ders.first().map(Vec::as_slice).unwrap_or(&[])
    }
    /// DER of the PCK CA certificate.
    pub fn ca_der(&self) -> &[u8] {
        self.chain.ders.get(1).map(Vec::as_slice).unwrap_or(&[])
    }
    /// DER of the root certificate.
    pub fn root_der(&self) -> &[u8] {
        self.chain.ders.get(2).map(Vec::as_slice).unwrap_or(&[])
    }
    /// SHA-256 of the root certificate DER.
    pub fn root_sha256(&self) -> [u8; 32] {
        self.chain.root_sha256
    }
    pub(crate) fn cert(&self, i: usize) -> Option<&Certificate> {
        self.chain.certs.get(i).map(Arc::as_ref)
    }
}

fn map_pck_failure(f: ChainFailure) -> VerifyError {
    match f {
        ChainFailure::Structure(s) => VerifyError::ChainStructure(s),
        ChainFailure::Signature {
            index,
            role,
            reason,
        } => VerifyError::ChainSignature {
            index,
            role,
            reason,
        },
        ChainFailure::UntrustedRoot { sha256 } => VerifyError::UntrustedRoot { sha256 },
    }
}

/// Verify the quote's embedded PCK chain: three certificates, names chained,
/// ECDSA-P256-SHA256 signatures, the root self-issued and its DER SHA-256 in
/// `trusted_roots_sha256`. Validity windows are not judged here.
pub fn verify_pck_chain(
    chain_pem: &[u8],
    trusted_roots_sha256: &[[u8; 32]],
) -> Result<PckChain, VerifyError> {
    pck_chain_with(
        chain_pem,
        trusted_roots_sha256,
        &mut SeenSignatures::default(),
    )
}

/// [`verify_pck_chain`] sharing the signatures already checked in this
/// appraisal.
pub(crate) fn pck_chain_with(
    chain_pem: &[u8],
    trusted_roots_sha256: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<PckChain, VerifyError> {
    let chain =
        check_pem_chain(chain_pem, &ROLES, trusted_roots_sha256, seen).map_err(map_pck_failure)?;
    let leaf = chain
        .certs
        .first()
        .ok_or_else(|| VerifyError::ChainStructure("empty chain".into()))?;
    let leaf_key =
        p256_key(leaf).map_err(|e| VerifyError::QeReportSignature(format!("PCK leaf key: {e}")))?;
    Ok(PckChain { chain, leaf_key })
}

/// The per-quote checks once the PCK chain is verified: QE report signature
/// by the PCK leaf key, QE report-data binding, quote signature by the
/// attestation key.
pub fn verify_quote_with_chain(quote: &Quote, pck: &PckChain) -> Result<(), VerifyError> {
    check_qe_report_signature(&quote.signature, pck)?;
    let att_key = check_qe_binding(&quote.signature)?;
    check_quote_signature(
        &quote.signed_bytes(),
        quote.signed_len,
        &quote.signature,
        &att_key,
    )
}

/// The QE report signature by the PCK leaf key.
pub(crate) fn check_qe_report_signature(
    sd: &SignatureData,
    pck: &PckChain,
) -> Result<(), VerifyError> {
    check_raw_signature(&pck.leaf_key, &sd.qe_report.raw, &sd.qe_report_signature)
        .map_err(|e| VerifyError::QeReportSignature(format!("by the PCK leaf key: {e}")))
}

/// The QE report-data binding of the attestation key; returns that key
/// decoded.
pub(crate) fn check_qe_binding(sd: &SignatureData) -> Result<P256Key, VerifyError> {
    let mut h = Sha256::new();
    h.update(sd.attestation_key);
    h.update(&sd.qe_auth_data);
    let digest: [u8; 32] = h.finalize().into();
    let rd = &sd.qe_report.report_data;
    if rd.get(..32) != Some(&digest[..]) {
        return Err(VerifyError::QeReportDataBinding(format!(
            "QE report_data[0..32] {} != SHA-256(attestation_key || qe_auth_data) {}",
            hex::encode(rd.get(..32).unwrap_or(&[])),
            hex::encode(digest)
        )));
    }
    if rd.get(32..).is_none_or(|z| z.iter().any(|&b| b != 0)) {
        return Err(VerifyError::QeReportDataBinding(format!(
            "QE report_data[32..64] is not all zero: {}",
            hex::encode(rd.get(32..).unwrap_or(&[]))
        )));
    }

    attestation_key(sd)
}

fn attestation_key(sd: &SignatureData) -> Result<P256Key, VerifyError> {
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(&sd.attestation_key);
    P256Key::from_sec1(&sec1).map_err(|_| {
        VerifyError::QuoteSignature("attestation key is not a valid P-256 point".into())
    })
}

/// The quote signature by the (already decoded) attestation key.
pub(crate) fn check_quote_signature(
    signed: &[u8],
    signed_len: usize,
    sd: &SignatureData,
    att_key: &P256Key,
) -> Result<(), VerifyError> {
    if signed.len() != signed_len {
        return Err(VerifyError::QuoteSignature(format!(
            "signed bytes length {} does not match the parsed length {signed_len}",
            signed.len(),
        )));
    }
    check_raw_signature(att_key, signed, &sd.quote_signature)
        .map_err(|e| VerifyError::QuoteSignature(format!("by the attestation key: {e}")))
}

/// Offline signature checks of a TDX quote (see the module docs for the
/// exact list and order). The chain's root must be self-issued and the
/// SHA-256 of its DER must be one of `trusted_roots_sha256` (pass
/// [`INTEL_SGX_ROOT_CA_SHA256`] for Intel). When `now_unix` is `Some`, every
/// chain certificate must be valid at that time (inclusive). Never panics.
pub fn verify_signatures(
    quote: &Quote,
    trusted_roots_sha256: &[[u8; 32]],
    now_unix: Option<i64>,
) -> Result<SignatureReport, VerifyError> {
    signatures_of(
        &quote.signature,
        &quote.signed_bytes(),
        quote.signed_len,
        trusted_roots_sha256,
        now_unix,
    )
}

/// [`verify_signatures`] of any DCAP quote: its signature data and the bytes
/// its quote signature covers.
pub(crate) fn signatures_of(
    sd: &SignatureData,
    signed: &[u8],
    signed_len: usize,
    trusted_roots_sha256: &[[u8; 32]],
    now_unix: Option<i64>,
) -> Result<SignatureReport, VerifyError> {
    let pck = verify_pck_chain(&sd.pck_cert_chain, trusted_roots_sha256)?;

    let mut chain_not_before = i64::MIN;
    let mut chain_not_after = i64::MAX;
    for (i, (nb, na)) in pck.chain.windows().into_iter().enumerate() {
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

    check_qe_report_signature(sd, &pck)?;
    let att_key = check_qe_binding(sd)?;
    check_quote_signature(signed, signed_len, sd, &att_key)?;

    Ok(SignatureReport {
        chain_len: pck.chain.certs.len(),
        root_match: RootMatch::PinnedSha256,
        root_sha256: pck.chain.root_sha256,
        pck_leaf_der: pck.leaf_der().to_vec(),
        chain_not_before,
        chain_not_after,
        validity_checked_at: now_unix,
    })
}

#[cfg(test)]
mod tests {
    use super::VerifyError;

    #[test]
    fn validity_errors_name_times_in_rfc3339() {
        let err = VerifyError::CertificateValidity {
            index: 0,
            role: "PCK leaf",
            now: 1_796_628_808,
            not_before: 1_733_868_861,
            not_after: 1_765_404_861,
        };
        assert_eq!(
            err.to_string(),
            "PCK certificate chain validity check failed for certificate 0 (PCK leaf): not valid at \
             2026-12-07T07:33:28Z (valid from 2024-12-10T22:14:21Z to 2025-12-10T22:14:21Z)"
        );
    }
}
