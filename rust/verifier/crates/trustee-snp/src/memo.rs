//! Bounded memo of verified certificate links, shared by [`crate::SnpVerifier`] calls.

use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Bounded memo of certificate signatures already verified (subject, issuer) by content
/// hash, so repeated reports from one chip skip the RSA-4096 work. Only signature links are
/// remembered: pinning, validity periods and everything report-specific run on every call.
pub(crate) struct LinkMemo {
    capacity: usize,
    inner: Mutex<Links>,
}

/// Remembered link keys and their insertion order (oldest evicted first).
#[derive(Default)]
struct Links {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl LinkMemo {
    pub fn new(capacity: usize) -> Self {
        LinkMemo {
            capacity,
            inner: Mutex::new(Links::default()),
        }
    }

    pub fn key(subject_fp: &[u8; 32], issuer_fp: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(subject_fp);
        h.update(issuer_fp);
        h.finalize().into()
    }

    fn lock(&self) -> MutexGuard<'_, Links> {
        // A panic elsewhere while holding the lock cannot leave the set inconsistent with
        // anything security-relevant (entries are only added after a verified signature).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.lock().set.contains(key)
    }

    pub fn insert(&self, key: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let mut links = self.lock();
        if !links.set.insert(key) {
            return;
        }
        links.order.push_back(key);
        while links.order.len() > self.capacity {
            if let Some(old) = links.order.pop_front() {
                links.set.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().set.len()
    }
}
