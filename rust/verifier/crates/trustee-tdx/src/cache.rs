//! [`DcapVerifier`]: the DCAP appraisal with memoised, time-independent
//! collateral and PCK-chain verification.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::dcap::{appraise, check_collateral, check_pck, CheckedCollateral, CheckedPck};
use crate::ecdsa::P256Key;
use crate::sgx::appraise_sgx;
use crate::verify::SeenSignatures;
use crate::{
    parse_quote, parse_sgx_quote, Collateral, DcapError, DcapTee, SgxVerified, SignatureData,
    Verified, VerifyOptions,
};

/// Hit/miss counters of a [`DcapVerifier`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub collateral_hits: u64,
    pub collateral_misses: u64,
    pub pck_chain_hits: u64,
    pub pck_chain_misses: u64,
}

/// Insertion-ordered map that forgets its oldest entry beyond `capacity`.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<[u8; 32], Arc<V>>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl<V> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }
    fn get(&self, k: &[u8; 32]) -> Option<Arc<V>> {
        self.map.get(k).cloned()
    }
    fn insert(&mut self, k: [u8; 32], v: Arc<V>) {
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// A verified collateral with the exact content it was verified from: the
/// lookup key may be a stale construction-time hash (public fields can be
/// edited), so a hit counts only when the content is equal.
#[derive(Debug)]
struct CollateralEntry {
    source: Collateral,
    checked: CheckedCollateral,
}

#[derive(Debug)]
struct Caches {
    collateral: Bounded<CollateralEntry>,
    chains: Bounded<CheckedPck>,
    /// Attestation keys whose QE report signature (by the PCK leaf) and
    /// report-data binding were verified, keyed by every byte those checks
    /// read. The QE report is constant per platform, so warm calls skip one
    /// ECDSA verification without changing any outcome.
    qe_reports: Bounded<P256Key>,
    stats: CacheStats,
}

/// [`verify_quote`] with memoised collateral and PCK-chain verification,
/// keyed by the SHA-256 of their content and of the trusted roots. Only
/// successful, time-independent checks are cached: quote signatures,
/// revocation lookups, matching and validity windows run on every call.
#[derive(Debug)]
pub struct DcapVerifier {
    caches: Mutex<Caches>,
}

impl Default for DcapVerifier {
    fn default() -> Self {
        DcapVerifier::new(64)
    }
}

fn cache_key(trusted: &[[u8; 32]], content: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((trusted.len() as u64).to_le_bytes());
    for t in trusted {
        h.update(t);
    }
    h.update(content);
    h.finalize().into()
}

impl DcapVerifier {
    /// A verifier keeping at most `capacity` collaterals and `capacity` PCK
    /// chains (at least one each).
    pub fn new(capacity: usize) -> DcapVerifier {
        DcapVerifier {
            caches: Mutex::new(Caches {
                collateral: Bounded::new(capacity),
                chains: Bounded::new(capacity),
                qe_reports: Bounded::new(capacity),
                stats: CacheStats::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Caches> {
        // A panic elsewhere cannot leave the caches inconsistent (each
        // update is a single insert), so a poisoned lock is still usable.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current hit/miss counters.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    /// Same result as [`verify_quote`].
    pub fn verify_quote(
        &self,
        raw_quote: &[u8],
        collateral: &Collateral,
        opts: &VerifyOptions,
    ) -> Result<Verified, DcapError> {
        let quote = parse_quote(raw_quote)?;
        self.verify_with(
            quote,
            |q| &q.signature,
            DcapTee::Tdx,
            collateral,
            opts,
            appraise,
        )
    }

    /// Same result as [`crate::verify_sgx_quote`].
    pub fn verify_sgx_quote(
        &self,
        raw_quote: &[u8],
        collateral: &Collateral,
        opts: &VerifyOptions,
    ) -> Result<SgxVerified, DcapError> {
        let quote = parse_sgx_quote(raw_quote)?;
        self.verify_with(
            quote,
            |q| &q.signature,
            DcapTee::Sgx,
            collateral,
            opts,
            appraise_sgx,
        )
    }

    /// The steps every DCAP quote takes: its checked collateral and PCK chain (cached or
    /// checked now), `tee`'s appraisal, then its QE report's key kept for the next quote.
    fn verify_with<Q, V>(
        &self,
        quote: Q,
        signature: impl FnOnce(&Q) -> &SignatureData,
        tee: DcapTee,
        collateral: &Collateral,
        opts: &VerifyOptions,
        appraise: impl FnOnce(
            Q,
            &CheckedPck,
            &CheckedCollateral,
            i64,
            Option<&P256Key>,
        ) -> Result<(V, P256Key), DcapError>,
    ) -> Result<V, DcapError> {
        let p = self.prepare(signature(&quote), tee, collateral, opts)?;
        let (verified, att_key) = appraise(
            quote,
            &p.pck,
            &p.col.checked,
            opts.now_unix,
            p.known.as_deref(),
        )?;
        self.keep_qe(&p, att_key);
        Ok(verified)
    }

    fn keep_qe(&self, p: &Prepared, att_key: P256Key) {
        if p.known.is_none() {
            self.lock().qe_reports.insert(p.qe_key, Arc::new(att_key));
        }
    }

    /// The checked collateral and PCK chain of a quote (cached or checked
    /// now) and the attestation key of its QE report if already verified.
    fn prepare(
        &self,
        sd: &SignatureData,
        tee: DcapTee,
        collateral: &Collateral,
        opts: &VerifyOptions,
    ) -> Result<Prepared, DcapError> {
        let trusted = opts.trusted();
        let chain_key = cache_key(&trusted, &Sha256::digest(&sd.pck_cert_chain));
        let qe_key = qe_report_key(&chain_key, sd);
        let mut seen = SeenSignatures::default();

        // The same documents checked for another TEE are a different check
        // (document ids differ), so the TEE is part of the key.
        let mut col_content = collateral.construction_hash().to_vec();
        col_content.extend_from_slice(tee.as_str().as_bytes());
        let col_key = cache_key(&trusted, &col_content);
        let cached_col = {
            let mut c = self.lock();
            let hit = c
                .collateral
                .get(&col_key)
                .filter(|e| e.source == *collateral);
            if hit.is_some() {
                c.stats.collateral_hits += 1;
            } else {
                c.stats.collateral_misses += 1;
            }
            hit
        };
        let col = match cached_col {
            Some(c) => c,
            None => {
                // Filed under the construction-time key even if a field was
                // edited since: every hit compares the full content, so a
                // stale key can only cost a re-check, never a wrong answer,
                // and the cold path skips rehashing ~11 KB.
                let c = Arc::new(CollateralEntry {
                    checked: check_collateral(collateral, tee, &trusted, &mut seen)?,
                    source: collateral.clone(),
                });
                self.lock().collateral.insert(col_key, Arc::clone(&c));
                c
            }
        };

        let cached_pck = {
            let mut c = self.lock();
            let hit = c.chains.get(&chain_key);
            if hit.is_some() {
                c.stats.pck_chain_hits += 1;
            } else {
                c.stats.pck_chain_misses += 1;
            }
            hit
        };
        let pck = match cached_pck {
            Some(p) => p,
            None => {
                let p = Arc::new(check_pck(sd, &trusted, &mut seen)?);
                self.lock().chains.insert(chain_key, Arc::clone(&p));
                p
            }
        };
        let known = self.lock().qe_reports.get(&qe_key);
        Ok(Prepared {
            col,
            pck,
            known,
            qe_key,
        })
    }
}

/// What [`DcapVerifier::prepare`] found for one quote.
struct Prepared {
    col: Arc<CollateralEntry>,
    pck: Arc<CheckedPck>,
    known: Option<Arc<P256Key>>,
    qe_key: [u8; 32],
}

/// Identity of the QE-report checks: the PCK chain (hence the leaf key) and
/// every quote byte the signature and binding checks read.
fn qe_report_key(chain_key: &[u8; 32], sd: &SignatureData) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(chain_key);
    h.update(&sd.qe_report.raw);
    h.update(sd.qe_report_signature);
    h.update(sd.attestation_key);
    h.update((sd.qe_auth_data.len() as u64).to_le_bytes());
    h.update(&sd.qe_auth_data);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_forgets_oldest() {
        let mut b = Bounded::new(2);
        for i in 0..3u8 {
            b.insert([i; 32], Arc::new(i));
        }
        assert!(b.get(&[0; 32]).is_none());
        assert_eq!(b.get(&[2; 32]).as_deref(), Some(&2));
        b.insert([2; 32], Arc::new(9));
        assert_eq!(b.order.len(), 2);
    }

    #[test]
    fn verifier_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<DcapVerifier>();
    }
}
