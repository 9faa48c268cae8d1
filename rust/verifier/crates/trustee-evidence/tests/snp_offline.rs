//! SNP evidence whose cert_chain holds only the VCEK verifies with nothing fetched: the AMD
//! ASK and ARK are built in.

use serde_json::Value;
use trustee_evidence::{Inputs, Verifiers, VerifyError};

/// 2025-06-01: inside the e2e VCEK's validity period.
const NOW: i64 = 1_748_736_000;

#[test]
fn e2e_snp_evidence_verifies_without_supplied_certificates() {
    let Some(evidence) =
        trustee_testvectors::read("trustee/attestation-service/tests/e2e/evidence.json")
    else {
        return;
    };
    let parsed: Value = serde_json::from_slice(&evidence).expect("evidence JSON");
    let report_data: Vec<u8> = parsed["attestation_report"]["report_data"]
        .as_array()
        .expect("report_data bytes")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("byte")).expect("byte"))
        .collect();
    let verifiers = Verifiers::default();
    let inputs = Inputs {
        now_unix: NOW,
        ..Inputs::default()
    };
    let entries = verifiers
        .verify("snp", &evidence, Some(&report_data), None, &inputs)
        .expect("built-in AMD anchors");
    let (claims, class) = &entries[0];
    assert_eq!(class, "cpu");
    assert_eq!(claims["report_data"], hex::encode(&report_data));
    assert_eq!(claims["product"], "Genoa");
    // The binding is still checked.
    let err = verifiers
        .verify("snp", &evidence, Some(&[0; 64]), None, &inputs)
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::Rejected { tee: "snp", reason } if reason.contains("report")),
        "{err}"
    );
}
