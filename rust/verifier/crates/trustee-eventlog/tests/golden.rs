//! Parsed-log JSON against upstream's goldens (exact JSON value equality).

mod common;

use common::{read_json, read_log, EVENTLOG_DIR, VERIFIER_DIR};
use serde_json::Value;

fn check_golden(log: &str, golden: &str, entries: usize) {
    let (Some(bytes), Some(expected)) = (read_log(log), read_json(EVENTLOG_DIR, golden)) else {
        return;
    };
    let parsed = trustee_eventlog::parse(&bytes).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert_eq!(parsed.events.len(), entries, "{log}: entry count");
    let got = parsed.to_json();
    if got != expected {
        let (g, e) = (&got["uefi_event_logs"], &expected["uefi_event_logs"]);
        for i in 0..g.as_array().map_or(0, Vec::len) {
            assert_eq!(g[i], e[i], "{log}: entry {i} differs");
        }
        panic!("{log}: JSON differs from {golden}");
    }
}

#[test]
fn ccel_td_shim() {
    check_golden("CCEL_data", "CCEL_data_out.json", 5);
}

#[test]
fn ccel_ovmf() {
    check_golden("CCEL_data_ovmf", "CCEL_data_ovmf_out.json", 20);
}

#[test]
fn ccel_grub() {
    check_golden("CCEL_data_grub", "CCEL_data_grub_out.json", 37);
}

#[test]
fn ccel_aael_alibabacloud() {
    check_golden(
        "CCEL_AAEL_alibabacloud",
        "CCEL_AAEL_alibabacloud_out.json",
        87,
    );
}

#[test]
fn ccel_csv_sm3() {
    check_golden("CCEL_data_csv", "CCEL_data_csv_out.json", 82);
}

/// The TDX claims embed the same entries under `uefi_event_logs`.
#[test]
fn tdx_claims_form() {
    let (Some(bytes), Some(claims)) = (
        read_log("CCEL_data"),
        read_json(VERIFIER_DIR, "parse_tdx_claims_expected.json"),
    ) else {
        return;
    };
    let log = trustee_eventlog::parse(&bytes).unwrap();
    assert_eq!(log.claims_json(), claims["uefi_event_logs"]);
    assert!(matches!(log.claims_json(), Value::Array(ref a) if a.len() == 5));
}
