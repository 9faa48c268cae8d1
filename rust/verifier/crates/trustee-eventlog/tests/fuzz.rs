//! Bounded structure-aware fuzzing (time-boxed, deterministic seed): the
//! parser must return Ok or Err on every mutated log, never panic.
//! `EVENTLOG_FUZZ_SECS` overrides the default budget (capped at 20 s).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::builder::rich_log;
use common::{read_log, Rng};
use trustee_eventlog::{parse, HashAlgorithm};

const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    3,
    4,
    0x7F,
    0xFF,
    0xFFFF,
    0x8000_0003,
    0x4141_454C,
    0x7FFF_FFFF,
    u32::MAX,
];

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut m = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        if m.is_empty() {
            m.push(rng.next_u64() as u8);
        }
        let at = rng.below(m.len());
        match rng.below(6) {
            0 => m[at] ^= 1 << rng.below(8),
            1 => m[at] = rng.next_u64() as u8,
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let end = (at + 4).min(m.len());
                m[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => {
                let end = (at + rng.below(64)).min(m.len());
                m.drain(at..end);
            }
            4 => {
                let n = rng.below(32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                m.splice(at..at, bytes);
            }
            _ => {
                // Splice a chunk of another input (moves whole records around).
                let other = &pool[rng.below(pool.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(256)).min(other.len());
                m.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    m
}

#[test]
fn bounded_fuzz() {
    let secs = std::env::var("EVENTLOG_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(5)
        .min(20);
    let budget = Duration::from_secs(secs);

    let (synthetic, _) = rich_log();
    let mut pool = vec![synthetic];
    for name in [
        "CCEL_data_ovmf",
        "CCEL_data_grub",
        "CCEL_data_csv",
        "CCEL_AAEL_alibabacloud",
    ] {
        if let Some(b) = read_log(name) {
            let end = (0..b.len())
                .rev()
                .find(|&i| b[i] != 0xFF && b[i] != 0)
                .map_or(b.len(), |i| (i + 16).min(b.len()));
            pool.push(b[..end].to_vec());
        }
    }

    let mut rng = Rng::new(0xC0FF_EE00_D15E_A5E5);
    let start = Instant::now();
    let (mut runs, mut ok) = (0u64, 0u64);
    while start.elapsed() < budget {
        let base = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, base, &pool);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            parse(&input).map(|log| {
                let _ = log.to_json();
                let _ = log.replay(HashAlgorithm::Sha384);
                let _ = log.replay(HashAlgorithm::Sm3);
            })
        }));
        match outcome {
            Ok(r) => ok += u64::from(r.is_ok()),
            Err(_) => panic!(
                "parser panicked on input (run {runs}, {} bytes): {}",
                input.len(),
                hex::encode(&input)
            ),
        }
        runs += 1;
    }
    eprintln!("fuzz: {runs} inputs in {:?}, {ok} parsed", start.elapsed());
    assert!(runs > 100);
}
