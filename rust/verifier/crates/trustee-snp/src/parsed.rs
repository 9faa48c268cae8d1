//! Certificates parsed once per distinct input: everything the chain and report checks need
//! that depends only on the certificate bytes (fingerprint, names, validity, and for VEKs the
//! P-384 key and AMD extensions), so that a memoising verifier skips it on repeat evidence.

use crate::anchors::fingerprint;
use crate::cert::{cert_info, common_name, extensions_of, p384_key, parse_certs};
use crate::{CertInfo, VekExtensions, VerifyError};
use aws_lc_rs::signature::ParsedPublicKey;
use der::Encode;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use x509_cert::Certificate;

const OID_EC_PUBLIC_KEY: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// One certificate and what is derived from its bytes alone.
pub(crate) struct ParsedCert {
    pub sha256: [u8; 32],
    pub x509: Certificate,
    pub common_name: String,
    pub info: CertInfo,
    /// DER of the subject and issuer names: chain building compares them many times. A
    /// name that does not re-encode (`None`) equals nothing, as in [`crate::cert`].
    subject_der: Option<Vec<u8>>,
    issuer_der: Option<Vec<u8>>,
    /// Set for EC certificates (VCEK / VLEK candidates).
    pub ec: Option<EcParts>,
}

/// The parts of an EC certificate the report checks use. Errors are kept rather than
/// raised so that a certificate that is never chosen as the VEK does not fail the call.
pub(crate) struct EcParts {
    pub key: Result<ParsedPublicKey, VerifyError>,
    pub extensions: Result<VekExtensions, VerifyError>,
}

impl ParsedCert {
    pub fn new(der: &[u8], x509: Certificate) -> Self {
        let tbs = &x509.tbs_certificate;
        let subject_der = tbs.subject.to_der().ok();
        let issuer_der = tbs.issuer.to_der().ok();
        let ec =
            (tbs.subject_public_key_info.algorithm.oid == OID_EC_PUBLIC_KEY).then(|| EcParts {
                key: p384_key(&x509),
                extensions: extensions_of(&x509),
            });
        ParsedCert {
            sha256: fingerprint(der),
            common_name: common_name(&tbs.subject),
            info: cert_info(&x509),
            subject_der,
            issuer_der,
            ec,
            x509,
        }
    }

    pub fn self_signed(&self) -> bool {
        self.named_issuer_is(self)
    }

    /// Whether `issuer`'s subject is this certificate's issuer name.
    pub fn named_issuer_is(&self, issuer: &ParsedCert) -> bool {
        match (&self.issuer_der, &issuer.subject_der) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// The certificates of one input (DER, or a PEM bundle).
pub(crate) type ParsedBlob = Arc<[Arc<ParsedCert>]>;

fn parse_blob(bytes: &[u8], what: &str) -> Result<ParsedBlob, VerifyError> {
    Ok(parse_certs(bytes, what)?
        .into_iter()
        .map(|(der, x509)| Arc::new(ParsedCert::new(&der, x509)))
        .collect())
}

/// Bounded memo of parsed inputs keyed by the SHA-256 of the input bytes (oldest evicted
/// first). Parsing is a pure function of those bytes, so a hit is as good as a re-parse;
/// inputs that fail to parse are not remembered.
pub(crate) struct ParseMemo {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<[u8; 32], ParsedBlob>,
    order: VecDeque<[u8; 32]>,
}

impl ParseMemo {
    pub fn new(capacity: usize) -> Self {
        ParseMemo {
            capacity,
            inner: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Entries are only inserted whole, so a poisoned lock holds nothing half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn insert(&self, key: [u8; 32], blob: ParsedBlob) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.map.insert(key, blob).is_some() {
            return;
        }
        entries.order.push_back(key);
        while entries.order.len() > self.capacity {
            if let Some(old) = entries.order.pop_front() {
                entries.map.remove(&old);
            }
        }
    }
}

/// Parse `bytes`, through `memo` when there is one.
pub(crate) fn parsed(
    bytes: &[u8],
    what: &str,
    memo: Option<&ParseMemo>,
) -> Result<ParsedBlob, VerifyError> {
    let Some(memo) = memo else {
        return parse_blob(bytes, what);
    };
    let key: [u8; 32] = Sha256::digest(bytes).into();
    if let Some(hit) = memo.lock().map.get(&key) {
        return Ok(Arc::clone(hit));
    }
    let blob = parse_blob(bytes, what)?;
    memo.insert(key, Arc::clone(&blob));
    Ok(blob)
}
