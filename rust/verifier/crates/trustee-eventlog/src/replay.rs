//! Measurement register replay: `MR = H(MR || digest)` from all-zero, over
//! every event of that index in log order, using the digests of one algorithm.

use std::collections::BTreeMap;

use crate::algorithm::HashAlgorithm;
use crate::error::ReplayError;
use crate::log::EventLog;

/// TDX: CC event log MR index `1 + n` is RTMR`n` (index 0 is MRTD, which the
/// log never extends at runtime).
pub const TDX_RTMR_COUNT: usize = 4;

/// RTMR number for a CC MR index under the TDX mapping.
pub fn tdx_rtmr_for_index(index: u32) -> Option<usize> {
    let n = usize::try_from(index.checked_sub(1)?).ok()?;
    (n < TDX_RTMR_COUNT).then_some(n)
}

/// CC MR index the attester uses when a TPM PCR is extended at runtime
/// (UEFI CC mapping, with everything outside PCR 1..=15 going to RTMR3).
pub fn cc_mr_index_for_pcr(pcr: u32) -> u32 {
    match pcr {
        1 | 7 => 1,
        2..=6 => 2,
        8..=15 => 3,
        _ => 4,
    }
}

impl EventLog {
    /// Replayed value of every MR index that appears in the log. An index
    /// whose events carry no digest of `alg` replays to zeros.
    pub fn replay(&self, alg: HashAlgorithm) -> BTreeMap<u32, Vec<u8>> {
        let mut registers: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let wanted = alg.algorithm();
        for event in &self.events {
            let mr = registers
                .entry(event.index)
                .or_insert_with(|| vec![0u8; alg.digest_size()]);
            for d in event.digests.iter().filter(|d| d.algorithm == wanted) {
                *mr = alg.hash(&[mr, &d.value]);
            }
        }
        registers
    }

    /// Replayed value of one MR index (zeros when the log never extends it).
    pub fn replay_index(&self, index: u32, alg: HashAlgorithm) -> Vec<u8> {
        let wanted = alg.algorithm();
        self.events
            .iter()
            .filter(|e| e.index == index)
            .flat_map(|e| e.digests.iter())
            .filter(|d| d.algorithm == wanted)
            .fold(vec![0u8; alg.digest_size()], |mr, d| {
                alg.hash(&[&mr, &d.value])
            })
    }

    /// Checks `(index, reference)` pairs in order and reports the first
    /// register whose replay differs.
    pub fn check_registers(
        &self,
        alg: HashAlgorithm,
        references: &[(u32, &[u8])],
    ) -> Result<(), ReplayError> {
        let replayed = self.replay(alg);
        let zeros = vec![0u8; alg.digest_size()];
        for &(index, expected) in references {
            let value = replayed.get(&index).unwrap_or(&zeros);
            if value.as_slice() != expected {
                return Err(ReplayError {
                    register: register_name(index),
                    index,
                    algorithm: alg.name(),
                    expected: expected.to_vec(),
                    replayed: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// TDX: the SHA-384 replay of MR indices 1..=4 must equal RTMR0..3 of the
    /// quote, which is what makes the (unsigned) event log trustworthy.
    pub fn check_rtmrs(&self, rtmrs: &[[u8; 48]; TDX_RTMR_COUNT]) -> Result<(), ReplayError> {
        let references: Vec<(u32, &[u8])> = (1u32..)
            .zip(rtmrs.iter())
            .map(|(index, value)| (index, value.as_slice()))
            .collect();
        self.check_registers(HashAlgorithm::Sha384, &references)
    }
}

fn register_name(index: u32) -> String {
    match tdx_rtmr_for_index(index) {
        Some(n) => format!("RTMR{n}"),
        None => format!("CC MR {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings() {
        assert_eq!(tdx_rtmr_for_index(0), None);
        assert_eq!(tdx_rtmr_for_index(1), Some(0));
        assert_eq!(tdx_rtmr_for_index(4), Some(3));
        assert_eq!(tdx_rtmr_for_index(5), None);
        let got: Vec<u32> = (0..18).map(cc_mr_index_for_pcr).collect();
        assert_eq!(got, [4, 1, 2, 2, 2, 2, 2, 1, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4]);
    }

    #[test]
    fn empty_log_replays_to_zeros() {
        let log = EventLog { events: vec![] };
        assert!(log.replay(HashAlgorithm::Sha384).is_empty());
        assert_eq!(log.replay_index(2, HashAlgorithm::Sm3), vec![0u8; 32]);
        assert!(log.check_rtmrs(&[[0u8; 48]; 4]).is_ok());
        let err = log
            .check_rtmrs(&[[0u8; 48], [0u8; 48], [1u8; 48], [0u8; 48]])
            .unwrap_err();
        assert_eq!(err.register, "RTMR2");
        assert_eq!(err.index, 3);
        assert!(err.to_string().contains(&"01".repeat(48)), "{err}");
    }
}
