//! Wall-clock cost of one DCAP appraisal of the dcap-qvl sample, cold (the
//! collateral JSON decoded, a fresh verifier, empty caches: what a first call
//! through the bindings does) and warm (collateral and PCK chain cached,
//! collateral already decoded). Ignored by default;
//! meaningful only in a release build:
//! `cargo test --release -p trustee-tdx --test timing -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use trustee_tdx::{parse_rfc3339, Collateral, DcapVerifier, VerifyOptions};

fn vector(rel: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(rel)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
#[ignore = "timing only; run in a release build with --ignored --nocapture"]
fn dcap_qvl_sample_cold_and_warm() {
    let (Some(q), Some(c)) = (
        vector("dcap-qvl/sample/tdx_quote"),
        vector("dcap-qvl/sample/tdx_quote_collateral.json"),
    ) else {
        return;
    };
    let collateral_json = c;
    let c = Collateral::from_json(&collateral_json).expect("collateral JSON decodes");
    // Inside the collateral's validity (tcbInfo issueDate + 1 h).
    let opts = VerifyOptions::at(parse_rfc3339("2025-06-19T11:16:03Z").expect("date"));

    let cold: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let c = Collateral::from_json(&collateral_json).expect("collateral JSON decodes");
            let v = DcapVerifier::new(4);
            v.verify_quote(&q, &c, &opts).expect("sample verifies");
            t.elapsed()
        })
        .collect();

    let v = DcapVerifier::new(4);
    v.verify_quote(&q, &c, &opts).expect("sample verifies");
    let warm: Vec<Duration> = (0..500)
        .map(|_| {
            let t = Instant::now();
            v.verify_quote(&q, &c, &opts).expect("sample verifies");
            t.elapsed()
        })
        .collect();
    let stats = v.stats();
    assert!(stats.collateral_hits >= 500 && stats.pck_chain_hits >= 500);

    eprintln!(
        "dcap-qvl sample: cold median {:?} (200 runs), warm median {:?} / min {:?} (500 runs)",
        median(cold),
        median(warm.clone()),
        warm.iter().min().copied().unwrap_or_default()
    );
}
