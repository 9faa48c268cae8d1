//! Warm-path timing of the full verification of the e2e evidence (chain memoised), and of
//! its main stages, for comparing against one bare P-384 verify. Only meaningful in a
//! release build: `cargo test --release -p trustee-snp -- --ignored --nocapture`.

mod common;

use common::{anchors, e2e_evidence, NOW};
use std::time::{Duration, Instant};
use trustee_snp::{decode_evidence, verify_report_signature, SnpVerifier, VerifyOptions};

/// Median of `rounds` runs of `f`, each averaged over `per_round` calls.
fn median_per_call(rounds: usize, per_round: u32, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_round {
                f();
            }
            started.elapsed() / per_round
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "timing only; run in a release build with --ignored --nocapture"]
fn warm_verify_time_of_e2e_evidence() {
    let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) else {
        return;
    };
    if cfg!(debug_assertions) {
        eprintln!("note: debug build; timings are not representative (use --release)");
    }
    let verifier = SnpVerifier::default();
    let certs = [genoa];
    let opts = VerifyOptions::at(NOW);
    verifier
        .verify(&evidence, &certs, &opts)
        .expect("e2e evidence verifies");

    let warm = median_per_call(21, 200, || {
        verifier.verify(&evidence, &certs, &opts).expect("warm");
    });
    let cold = median_per_call(5, 10, || {
        SnpVerifier::new(0)
            .verify(&evidence, &certs, &opts)
            .expect("cold");
    });
    let decode = median_per_call(21, 200, || {
        decode_evidence(&evidence).expect("decode");
    });
    let ev = decode_evidence(&evidence).expect("decode");
    let vek = ev
        .cert_chain
        .iter()
        .flatten()
        .find(|e| e.cert_type == trustee_snp::CertType::Vcek)
        .map(|e| e.data.clone())
        .expect("e2e evidence carries its VCEK");
    let signature = median_per_call(21, 200, || {
        verify_report_signature(&ev.report.raw, &vek).expect("signature");
    });
    eprintln!(
        "warm SnpVerifier::verify of the e2e evidence: {:.1} µs; cold (no memo): {:.1} µs; \
         decode_evidence {:.1} µs; verify_report_signature incl. VEK parse {:.1} µs",
        warm.as_secs_f64() * 1e6,
        cold.as_secs_f64() * 1e6,
        decode.as_secs_f64() * 1e6,
        signature.as_secs_f64() * 1e6,
    );
}
