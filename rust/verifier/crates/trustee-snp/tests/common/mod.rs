//! Locating the shared upstream vectors: `TRUSTEE_VECTORS_DIR` (the `shared/vectors`
//! folder) or, by default, the `shared` folder beside the repository. Tests skip with a
//! printed reason when the vectors are absent.

#![allow(dead_code)]

use std::path::PathBuf;

pub fn vectors_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("TRUSTEE_VECTORS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../../shared/vectors"),
    };
    let dir = dir.join("trustee");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: shared vectors not found at {} (set TRUSTEE_VECTORS_DIR to the shared/vectors folder)",
            dir.display()
        );
        None
    }
}

pub fn load(rel: &str) -> Option<Vec<u8>> {
    let dir = vectors_dir()?;
    match std::fs::read(dir.join(rel)) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("SKIP: cannot read vector {rel}: {e}");
            None
        }
    }
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
