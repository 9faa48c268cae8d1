//! AK certificates: an X.509 chain from a TPM attestation key to roots the operator configured.
//!
//! The chain is `ak_cert` → `ak_cert_chain[0]` → … → a configured root, each link matched by
//! the issuer name and proven by the issuer's signature. Certificates are parsed strictly
//! (DER), bounded in size and number, and every check has its own error.

use std::time::Duration;

use aws_lc_rs::signature::{
    UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1,
    ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
};
use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::Certificate;

use crate::VtpmError;

/// A TPM vendor's EK/AK certificate is a few KiB; this leaves room for long extensions.
pub const MAX_AK_CERT: usize = 16 * 1024;
/// Intermediates between the AK certificate and a root (vendor CA → manufacturing CA …).
pub const MAX_AK_INTERMEDIATES: usize = 4;
/// Configured roots, read once at start-up.
pub const MAX_AK_ROOTS: usize = 64;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// The roots AK certificates must chain to: parsed and checked once, when configured.
#[derive(Debug, Clone, Default)]
pub struct AkRoots(Vec<Certificate>);

impl AkRoots {
    /// DER root certificates; each must be a CA (basicConstraints cA).
    pub fn from_der(roots: &[Vec<u8>]) -> Result<Self, VtpmError> {
        if roots.len() > MAX_AK_ROOTS {
            return Err(VtpmError::AkRoot(format!(
                "{} roots configured, at most {MAX_AK_ROOTS}",
                roots.len()
            )));
        }
        let parsed = roots
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let which = format!("root {i}");
                let cert = parse(&which, der).map_err(|e| VtpmError::AkRoot(e.to_string()))?;
                check_ca(&cert, &which).map_err(|e| VtpmError::AkRoot(e.to_string()))?;
                Ok(cert)
            })
            .collect::<Result<_, VtpmError>>()?;
        Ok(Self(parsed))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a verified AK certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkCertificate {
    /// Whether the chain ends at a configured root (never, when none is configured).
    pub certified: bool,
    /// The AK certificate's subject and issuer (RFC 4514).
    pub subject: String,
    pub issuer: String,
    /// The AK certificate's notAfter (RFC 3339).
    pub not_after: String,
}

/// Checks `cert` (DER) certifies the AK whose DER SubjectPublicKeyInfo is `ak_spki`, and the
/// chain through `intermediates` (the AK certificate's issuer first): sizes, key equality,
/// validity at `now_unix`, CA issuers and each signature; then, when `roots` is not empty,
/// that a root signed the last certificate (else [`VtpmError::AkNotCertified`]).
pub fn verify_ak_certificate(
    ak_spki: &[u8],
    cert: &[u8],
    intermediates: &[Vec<u8>],
    roots: &AkRoots,
    now_unix: i64,
) -> Result<AkCertificate, VtpmError> {
    if intermediates.len() > MAX_AK_INTERMEDIATES {
        return Err(VtpmError::AkCertChainLength {
            count: intermediates.len(),
            limit: MAX_AK_INTERMEDIATES,
        });
    }
    let mut path = vec![("ak_cert".to_owned(), parse("ak_cert", cert)?)];
    for (i, der) in intermediates.iter().enumerate() {
        let which = format!("ak_cert_chain[{i}]");
        let parsed = parse(&which, der)?;
        path.push((which, parsed));
    }
    let leaf = &path[0].1.tbs_certificate;
    let leaf_key = leaf
        .subject_public_key_info
        .to_der()
        .map_err(|e| malformed("ak_cert", &e))?;
    if leaf_key != ak_spki {
        return Err(VtpmError::AkCertKeyMismatch);
    }
    for (which, c) in &path {
        check_validity(c, which, now_unix)?;
    }
    for pair in path.windows(2) {
        let [(which, subject), (issuer_which, issuer)] = pair else {
            continue;
        };
        check_ca(issuer, issuer_which)?;
        if subject.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(VtpmError::AkCertIssuer {
                which: which.clone(),
                issuer: subject.tbs_certificate.issuer.to_string(),
                next: issuer_which.clone(),
                next_subject: issuer.tbs_certificate.subject.to_string(),
            });
        }
        verify_signed(subject, which, issuer)?;
    }
    let certified = !roots.is_empty() && {
        let (which, top) = &path[path.len() - 1];
        anchor(top, which, roots, now_unix)?;
        true
    };
    Ok(AkCertificate {
        certified,
        subject: leaf.subject.to_string(),
        issuer: leaf.issuer.to_string(),
        not_after: leaf.validity.not_after.to_date_time().to_string(),
    })
}

/// The configured root that named and signed `top`; the error says why none did.
fn anchor(top: &Certificate, which: &str, roots: &AkRoots, now_unix: i64) -> Result<(), VtpmError> {
    let issuer = &top.tbs_certificate.issuer;
    let mut refusals = Vec::new();
    for root in roots
        .0
        .iter()
        .filter(|r| &r.tbs_certificate.subject == issuer)
    {
        let name = format!("root {}", root.tbs_certificate.subject);
        match verify_signed(top, which, root).and_then(|()| check_validity(root, &name, now_unix)) {
            Ok(()) => return Ok(()),
            Err(e) => refusals.push(e.to_string()),
        }
    }
    Err(VtpmError::AkNotCertified(if refusals.is_empty() {
        format!("no configured root is the issuer of {which} ({issuer})")
    } else {
        refusals.join("; ")
    }))
}

fn malformed(which: &str, e: &dyn std::fmt::Display) -> VtpmError {
    VtpmError::AkCertMalformed {
        which: which.to_owned(),
        reason: e.to_string(),
    }
}

fn parse(which: &str, der: &[u8]) -> Result<Certificate, VtpmError> {
    if der.len() > MAX_AK_CERT {
        return Err(VtpmError::AkCertTooLarge {
            which: which.to_owned(),
            len: der.len(),
            limit: MAX_AK_CERT,
        });
    }
    Certificate::from_der(der).map_err(|e| malformed(which, &e))
}

fn check_validity(c: &Certificate, which: &str, now_unix: i64) -> Result<(), VtpmError> {
    let v = &c.tbs_certificate.validity;
    let secs = |d: Duration| i128::from(d.as_secs());
    let (from, to) = (
        secs(v.not_before.to_unix_duration()),
        secs(v.not_after.to_unix_duration()),
    );
    let now = i128::from(now_unix);
    if now < from || now > to {
        let now = u64::try_from(now_unix)
            .ok()
            .and_then(|s| der::DateTime::from_unix_duration(Duration::from_secs(s)).ok())
            .map_or_else(|| format!("unix time {now_unix}"), |t| t.to_string());
        return Err(VtpmError::AkCertValidity {
            which: which.to_owned(),
            now,
            not_before: v.not_before.to_date_time().to_string(),
            not_after: v.not_after.to_date_time().to_string(),
        });
    }
    Ok(())
}

fn check_ca(c: &Certificate, which: &str) -> Result<(), VtpmError> {
    let constraints = c
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_BASIC_CONSTRAINTS)
        .map(|e| BasicConstraints::from_der(e.extn_value.as_bytes()))
        .transpose()
        .map_err(|e| malformed(which, &format!("basicConstraints: {e}")))?;
    if constraints.is_some_and(|b| b.ca) {
        Ok(())
    } else {
        Err(VtpmError::AkCertNotCa {
            which: which.to_owned(),
        })
    }
}

/// `issuer`'s key over `subject`'s TBS, with RSA PKCS#1 v1.5 (SHA-256/384/512) or ECDSA
/// P-256/P-384 (SHA-256/384).
fn verify_signed(
    subject: &Certificate,
    which: &str,
    issuer: &Certificate,
) -> Result<(), VtpmError> {
    let unsupported = |reason: String| VtpmError::AkCertAlgorithm {
        which: which.to_owned(),
        reason,
    };
    let sig_alg = subject.signature_algorithm.oid;
    if subject.tbs_certificate.signature.oid != sig_alg {
        return Err(malformed(
            which,
            &"signature algorithm differs from the TBS one",
        ));
    }
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let key_alg = spki.algorithm.oid;
    let algorithm: &'static dyn VerificationAlgorithm = match (sig_alg, key_alg, curve) {
        (OID_RSA_SHA256, OID_RSA, _) => &RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA_SHA384, OID_RSA, _) => &RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA_SHA512, OID_RSA, _) => &RSA_PKCS1_2048_8192_SHA512,
        (OID_ECDSA_SHA256, OID_EC, Some(OID_P256)) => &ECDSA_P256_SHA256_ASN1,
        (OID_ECDSA_SHA384, OID_EC, Some(OID_P256)) => &ECDSA_P256_SHA384_ASN1,
        (OID_ECDSA_SHA256, OID_EC, Some(OID_P384)) => &ECDSA_P384_SHA256_ASN1,
        (OID_ECDSA_SHA384, OID_EC, Some(OID_P384)) => &ECDSA_P384_SHA384_ASN1,
        _ => {
            return Err(unsupported(format!(
                "signature {sig_alg} by a {key_alg} key (curve {curve:?}); RSA PKCS#1 v1.5 \
                 SHA-256/384/512 or ECDSA P-256/P-384 SHA-256/384 expected"
            )))
        }
    };
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| unsupported("issuer key bit string has unused bits".into()))?;
    let signature = subject
        .signature
        .as_bytes()
        .ok_or_else(|| malformed(which, &"signature bit string has unused bits"))?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| malformed(which, &e))?;
    UnparsedPublicKey::new(algorithm, key)
        .verify(&tbs, signature)
        .map_err(|_| VtpmError::AkCertSignature {
            which: which.to_owned(),
            issuer: issuer.tbs_certificate.subject.to_string(),
        })
}
