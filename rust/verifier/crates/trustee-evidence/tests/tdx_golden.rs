//! Quote 4 with its CC event log gives exactly upstream's golden TDX claims.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

fn vectors() -> Option<PathBuf> {
    Some(trustee_testvectors::vectors_dir()?.join("trustee/deps/verifier/test_data"))
}

#[test]
fn quote4_and_ccel_equal_the_golden_claims() {
    let Some(dir) = vectors() else { return };
    let read = |name: &str| std::fs::read(dir.join(name)).expect(name);
    let evidence = json!({
        "quote": STANDARD.encode(read("tdx_quote_4.dat")),
        "cc_eventlog": STANDARD.encode(read("CCEL_data")),
    });
    let claims =
        trustee_evidence::tdx_parsed_claims(evidence.to_string().as_bytes()).expect("claims");
    let golden: Value =
        serde_json::from_slice(&read("parse_tdx_claims_expected.json")).expect("golden JSON");
    assert_eq!(claims, golden);
}

#[test]
fn tdx_evidence_without_a_quote_is_malformed() {
    for bad in [
        &b"{}"[..],
        br#"{"quote": ""}"#,
        br#"{"quote": 5}"#,
        br#"{"quote": "!!"}"#,
        br#"{"quote": "AAAA", "cc_eventlog": 3}"#,
        b"not json",
    ] {
        let err = trustee_evidence::tdx_parsed_claims(bad).unwrap_err();
        assert!(
            matches!(
                err,
                trustee_evidence::VerifyError::Malformed { tee: "tdx", .. }
            ) || matches!(
                err,
                trustee_evidence::VerifyError::Rejected { tee: "tdx", .. }
            ),
            "{err}"
        );
    }
}
