//! Parse time of the 1 MiB td-shim CCEL (parsed on every TDX attestation).
//! Run with `cargo test -p trustee-eventlog --test timing -- --ignored --nocapture`.

mod common;

use std::time::Instant;

#[test]
#[ignore = "timing report, not a check"]
fn parse_time_1mib_ccel() {
    let Some(bytes) = common::read_log("CCEL_data") else {
        return;
    };
    let rounds = 50;
    let start = Instant::now();
    for _ in 0..rounds {
        let log = trustee_eventlog::parse(&bytes).unwrap();
        assert_eq!(log.events.len(), 5);
    }
    let parse = start.elapsed() / rounds;
    let log = trustee_eventlog::parse(&bytes).unwrap();
    let start = Instant::now();
    let _ = log.claims_json();
    let json = start.elapsed();
    eprintln!(
        "CCEL_data ({} bytes): parse {parse:?} per run (avg of {rounds}), claims_json {json:?}",
        bytes.len()
    );
}
