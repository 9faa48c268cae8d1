//! The shared upstream vectors (located by `trustee-testvectors`: `TRUSTEE_VECTORS_DIR`, or the
//! `shared/vectors` folder beside the repository). Tests return with a printed reason when they
//! are absent, and panic with it under `CI=true`.

#![allow(dead_code)]

use std::path::PathBuf;

pub fn vectors_dir() -> Option<PathBuf> {
    Some(trustee_testvectors::vectors_dir()?.join("trustee"))
}

pub fn load(rel: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(&format!("trustee/{rel}"))
}

pub fn snp(name: &str) -> Option<Vec<u8>> {
    load(&format!("deps/verifier/test_data/snp/{name}"))
}

pub fn anchors(product: &str) -> Option<Vec<u8>> {
    load(&format!("deps/verifier/src/snp/{product}_ask_ark_asvk.pem"))
}

pub fn e2e_evidence() -> Option<Vec<u8>> {
    load("attestation-service/tests/e2e/evidence.json")
}

/// The PEM blocks of a bundle, in file order.
pub fn pem_blocks(pem: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(pem)
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(|b| format!("{}\n", b.trim()))
        .collect()
}

/// 2025-06-01T00:00:00Z: inside the validity of every stored VCEK/VLEK and AMD root.
pub const NOW: i64 = 1_748_736_000;
