use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::{Inputs, Verifiers, VerifyError};

const DIR: &str = "trustee/deps/verifier/test_data";
/// Inside the vector VCEK's validity (2025-01-28 .. 2032-01-28).
const NOW: i64 = 1_750_000_000;
const CHALLENGE: &[u8] = b"challenge";
const SNP_PCR0: &str = "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced";
const TDX_PCR0: &str = "782b20b10f55cc46e2142cc2145d548698073e5beb82752c8d7f9279f0d8a273";

fn evidence(tee: &str) -> Option<Value> {
    let bytes = trustee_testvectors::read(&format!("{DIR}/{tee}/evidence-v1.json"))?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn verify_snp(
    ev: &Value,
    report_data: Option<&[u8]>,
    init: Option<&[u8]>,
) -> Result<Value, VerifyError> {
    // AMD's ASK/ARK are built in: nothing beside the evidence is supplied.
    let inputs = Inputs {
        now_unix: NOW,
        ..Inputs::default()
    };
    let bytes = serde_json::to_vec(ev).unwrap();
    let mut out = Verifiers::default().verify("az-snp-vtpm", &bytes, report_data, init, &inputs)?;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, "cpu");
    Ok(out.remove(0).0)
}

/// `ev` with its HCL report changed by `f`.
fn with_hcl(ev: &Value, f: impl FnOnce(&mut Vec<u8>)) -> Value {
    let mut hcl = URL_SAFE.decode(ev["hcl_report"].as_str().unwrap()).unwrap();
    f(&mut hcl);
    let mut out = ev.clone();
    out["hcl_report"] = Value::String(URL_SAFE.encode(hcl));
    out
}

fn replace(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + to.len()].copy_from_slice(to);
}

fn reason(err: VerifyError) -> String {
    err.to_string()
}

#[test]
fn az_snp_vtpm_v1_verifies_with_upstream_claims() {
    let Some(ev) = evidence("az-snp-vtpm") else {
        return;
    };
    let claims = verify_snp(&ev, Some(CHALLENGE), None).unwrap();
    assert_eq!(claims["report_data"], "6368616c6c656e6765");
    assert_eq!(claims["tpm"]["pcr00"], SNP_PCR0);
    assert_eq!(claims["tpm"].as_object().unwrap().len(), 24);
    assert_eq!(claims["init_data"], "0".repeat(64));
    // Upstream's Azure SNP claims are all strings, measurement in base64, no chip_id.
    assert_eq!(claims["policy_abi_minor"], "31");
    assert_eq!(claims["policy_debug_allowed"], "false");
    assert_eq!(claims["reported_tcb_microcode"], "219");
    assert!(claims["measurement"]
        .as_str()
        .unwrap()
        .starts_with("agY76d15"));
    assert!(claims.get("chip_id").is_none());
}

#[test]
fn az_snp_vtpm_v0_encoding_verifies_the_same() {
    let Some(ev) = evidence("az-snp-vtpm") else {
        return;
    };
    let bytes = |hex_str: &Value| hex::decode(hex_str.as_str().unwrap()).unwrap();
    let q = &ev["tpm_quote"];
    let pcrs: Vec<Vec<u8>> = q["pcrs"].as_array().unwrap().iter().map(bytes).collect();
    let vcek = URL_SAFE.decode(ev["vcek"].as_str().unwrap()).unwrap();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::engine::general_purpose::STANDARD.encode(vcek)
    );
    let v0 = json!({
        "quote": {"signature": bytes(&q["signature"]), "message": bytes(&q["message"]), "pcrs": pcrs},
        "report": URL_SAFE.decode(ev["hcl_report"].as_str().unwrap()).unwrap(),
        "vcek": pem,
    });
    let claims = verify_snp(&v0, Some(CHALLENGE), None).unwrap();
    assert_eq!(claims["tpm"]["pcr00"], SNP_PCR0);
}

#[test]
fn az_snp_vtpm_v2_binds_report_data_in_user_data() {
    let Some(mut ev) = evidence("az-snp-vtpm") else {
        return;
    };
    // The vector's user-data is all zeros, so as version 2 it no longer matches "challenge".
    ev["version"] = json!(2);
    assert_eq!(
        reason(verify_snp(&ev, Some(CHALLENGE), None).unwrap_err()),
        "az-snp-vtpm verification failed: user data in HCL variable data doesn't match report data"
    );
    ev["version"] = json!(3);
    assert!(matches!(
        verify_snp(&ev, Some(CHALLENGE), None).unwrap_err(),
        VerifyError::Malformed { .. }
    ));
}

#[test]
fn az_snp_vtpm_tampering_fails_each_check_with_its_own_error() {
    let Some(ev) = evidence("az-snp-vtpm") else {
        return;
    };
    let mut seen = Vec::new();
    let mut expect = |case: &str, ev: &Value, report_data: &[u8], want: &str| {
        let err = reason(verify_snp(ev, Some(report_data), None).unwrap_err());
        assert!(err.contains(want), "{case}: {err}");
        assert!(
            !seen.contains(&err),
            "{case}: same error as another tamper: {err}"
        );
        seen.push(err);
    };
    expect("report data", &ev, b"challengf", "TPM quote nonce mismatch");
    let vm_id = with_hcl(&ev, |h| replace(h, b"26F8BC30", b"36F8BC30"));
    expect(
        "HCL variable data",
        &vm_id,
        CHALLENGE,
        "HCL variable data digest",
    );
    let kid = with_hcl(&ev, |h| replace(h, b"HCLAkPub", b"HCLAkPuX"));
    expect(
        "AK kid",
        &kid,
        CHALLENGE,
        "no RSA key with kid \"HCLAkPub\"",
    );
    let ak_n = with_hcl(&ev, |h| replace(h, b"\"n\":\"mHSR", b"\"n\":\"m!SR"));
    expect("AK modulus", &ak_n, CHALLENGE, "HCLAkPub key is malformed");
    let mut msg = ev.clone();
    msg["tpm_quote"]["message"] = json!(format!(
        "00{}",
        &ev["tpm_quote"]["message"].as_str().unwrap()[2..]
    ));
    expect(
        "quote message",
        &msg,
        CHALLENGE,
        "is not TPM_GENERATED_VALUE",
    );
    let mut sig = ev.clone();
    let s = ev["tpm_quote"]["signature"].as_str().unwrap();
    sig["tpm_quote"]["signature"] = json!(format!(
        "{}{}",
        if &s[..2] == "00" { "01" } else { "00" },
        &s[2..]
    ));
    expect(
        "quote signature",
        &sig,
        CHALLENGE,
        "does not verify with the HCLAkPub key",
    );
    let mut pcr = ev.clone();
    pcr["tpm_quote"]["pcrs"][5] = json!("11".repeat(32));
    expect(
        "PCR value",
        &pcr,
        CHALLENGE,
        "does not match the quote's pcrDigest",
    );
    // REPORTED_TCB.SNP of the SNP report inside the HCL report (upstream's own tamper).
    let tcb = with_hcl(&ev, |h| h[0x1a6] = 0);
    expect(
        "SNP report",
        &tcb,
        CHALLENGE,
        "SNP report: report signature check failed",
    );
    let bad_vcek = {
        let mut e = ev.clone();
        let mut der = URL_SAFE.decode(ev["vcek"].as_str().unwrap()).unwrap();
        let n = der.len();
        der[n - 10] ^= 1;
        e["vcek"] = json!(URL_SAFE.encode(der));
        e
    };
    expect("VCEK", &bad_vcek, CHALLENGE, "SNP report:");
}

#[test]
fn az_snp_vtpm_requires_report_data_and_checks_init_data_in_pcr8() {
    let Some(ev) = evidence("az-snp-vtpm") else {
        return;
    };
    assert!(matches!(
        verify_snp(&ev, None, None).unwrap_err(),
        VerifyError::Missing {
            tee: "az-snp-vtpm",
            ..
        }
    ));
    let err = reason(verify_snp(&ev, Some(CHALLENGE), Some(&[1u8; 32])).unwrap_err());
    assert!(err.contains("PCR8 (0000"), "{err}");
    let err = reason(verify_snp(&ev, Some(CHALLENGE), Some(&[1u8; 48])).unwrap_err());
    assert!(err.contains("must be 32 bytes"), "{err}");
}

#[test]
fn az_tdx_vtpm_v1_passes_every_check_but_dcap_offline() {
    let Some(ev) = evidence("az-tdx-vtpm") else {
        return;
    };
    let bytes = serde_json::to_vec(&ev).unwrap();
    let expected = crate::Expectations {
        report_data: Some(CHALLENGE),
        init_data_hash: None,
    };
    let (quote, checked) = super::az_tdx_prechecked(&bytes, &expected).unwrap();
    let mut claims = match trustee_tdx::claims(&trustee_tdx::parse_quote(&quote).unwrap()) {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    super::extend_claims(&mut claims, &checked);
    assert_eq!(claims["tpm"]["pcr00"], TDX_PCR0);
    assert_eq!(claims["report_data"], "6368616c6c656e6765");
    // Full verification stops at the DCAP appraisal, for want of collateral only.
    let err = Verifiers::default()
        .verify(
            "az-tdx-vtpm",
            &bytes,
            Some(CHALLENGE),
            None,
            &Inputs::default(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Missing {
                tee: "az-tdx-vtpm",
                ..
            }
        ),
        "{err}"
    );
    // And the collateral to fetch is read from the TD quote inside.
    let key = crate::tdx_collateral_key(&bytes).unwrap();
    assert_eq!(key, trustee_tdx::collateral_key(&quote).unwrap());
}

#[test]
fn az_tdx_vtpm_checks_the_hcl_against_the_td_quote() {
    let Some(ev) = evidence("az-tdx-vtpm") else {
        return;
    };
    let run = |ev: &Value, rd: &[u8]| {
        let bytes = serde_json::to_vec(ev).unwrap();
        reason(
            Verifiers::default()
                .verify("az-tdx-vtpm", &bytes, Some(rd), None, &Inputs::default())
                .unwrap_err(),
        )
    };
    let vm_id = with_hcl(&ev, |h| replace(h, b"6332533D", b"7332533D"));
    assert!(run(&vm_id, CHALLENGE).contains("HCL variable data digest"));
    assert!(run(&ev, b"other").contains("TPM quote nonce mismatch"));
    let mut sgx = ev.clone();
    let mut quote = URL_SAFE.decode(ev["td_quote"].as_str().unwrap()).unwrap();
    quote[0] = 3;
    sgx["td_quote"] = json!(URL_SAFE.encode(quote));
    assert!(run(&sgx, CHALLENGE).contains("got an SGX quote (v3)"));
    // An SNP HCL report is refused as TDX evidence.
    if let Some(snp) = evidence("az-snp-vtpm") {
        let mut mixed = ev.clone();
        mixed["hcl_report"] = snp["hcl_report"].clone();
        assert!(run(&mixed, CHALLENGE).contains("HCL report is a SNP report, TDX expected"));
    }
}
