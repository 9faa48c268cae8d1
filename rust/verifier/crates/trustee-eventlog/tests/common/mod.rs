//! The shared upstream vectors, read in place (located by `trustee-testvectors`: printed and
//! skipped when absent locally, a panic under `CI=true`).

#![allow(dead_code)]

pub mod builder;

use std::path::PathBuf;

pub const EVENTLOG_DIR: &str = "trustee/deps/eventlog/test_data";
pub const VERIFIER_DIR: &str = "trustee/deps/verifier/test_data";

pub fn vectors_root() -> Option<PathBuf> {
    trustee_testvectors::vectors_dir()
}

/// Bytes of `dir/name` under the vectors root, or `None` (with a printed
/// reason) when the folder or the file is absent.
pub fn read(dir: &str, name: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(&format!("{dir}/{name}"))
}

/// An event log by name. `CCEL_data` may be stored with the eventlog or with
/// the verifier vectors (identical copies).
pub fn read_log(name: &str) -> Option<Vec<u8>> {
    if name == "CCEL_data" {
        let root = vectors_root()?;
        if let Ok(bytes) = std::fs::read(root.join(EVENTLOG_DIR).join(name)) {
            return Some(bytes);
        }
        return read(VERIFIER_DIR, name);
    }
    read(EVENTLOG_DIR, name)
}

pub fn read_json(dir: &str, name: &str) -> Option<serde_json::Value> {
    let bytes = read(dir, name)?;
    Some(serde_json::from_slice(&bytes).expect("golden JSON parses"))
}

/// xorshift64*: deterministic and dependency-free, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
