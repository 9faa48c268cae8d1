//! The SGX quote v3 of an Occlum enclave (upstream's `occlum_quote.dat`, read
//! in place from the shared vectors): parsing, upstream's claims, the offline
//! signature checks, and the TDX/SGX parsers refusing each other's quotes.

use serde_json::{json, Value};
use trustee_tdx::{
    collateral_key, parse_quote, parse_sgx_quote, sgx_claims, verify_sgx_signatures, DcapTee,
    ParseError, PckCaType, VerifyError, INTEL_SGX_ROOT_CA_SHA256,
};

const TEST_DATA: &str = "trustee/deps/verifier/test_data";

fn read(name: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(&format!("{TEST_DATA}/{name}"))
}

#[test]
fn occlum_quote_claims_match_upstream() {
    let Some(q) = read("occlum_quote.dat") else {
        return;
    };
    let quote = parse_sgx_quote(&q).expect("occlum quote parses");
    assert_eq!(quote.header.version, 3);
    let claims = sgx_claims(&quote);
    let zeros = |n: usize| "0".repeat(2 * n);
    let report_data = format!("74657374{}", zeros(60));
    let expected = json!({
        "header": {
            "version": "0300",
            "att_key_type": "0200",
            "att_key_data_0": "00000000",
            "qe_svn": "0800",
            "pce_svn": "0d00",
            "vendor_id": "939a7233f79c4ca9940a0db3957f0607",
            "user_data": "dccde9b31ce8860548173bb4a2a57a1600000000"
        },
        "body": {
            "cpu_svn": "06060c0cffff00000000000000000000",
            "misc_select": "01000000",
            "reserved1": zeros(12),
            "isv_ext_prod_id": zeros(16),
            "attributes.flags": "0700000000000000",
            "attributes.xfrm": "e700000000000000",
            "mr_enclave": "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68",
            "reserved2": zeros(32),
            "mr_signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
            "reserved3": zeros(32),
            "config_id": zeros(64),
            "isv_prod_id": "0000",
            "isv_svn": "0000",
            "config_svn": "0000",
            "reserved4": zeros(42),
            "isv_family_id": zeros(16),
            "report_data": report_data
        },
        "report_data": report_data,
        "init_data": zeros(64),
        "platform_instance_id": "7a3a6941065cd5060bd93d3db2cfc0c8"
    });
    assert_eq!(claims, expected);
}

#[test]
fn occlum_quote_offline_signatures_verify_to_intel_root() {
    let Some(q) = read("occlum_quote.dat") else {
        return;
    };
    let quote = parse_sgx_quote(&q).expect("parses");
    let report = verify_sgx_signatures(&quote, &[INTEL_SGX_ROOT_CA_SHA256], None)
        .expect("quote, QE report and PCK chain verify offline");
    assert_eq!(report.root_sha256, INTEL_SGX_ROOT_CA_SHA256);

    // Each tamper fails its own check.
    let sig_off = 436; // signature data of a v3 quote
    type Expect = fn(&VerifyError) -> bool;
    let cases: [(usize, Expect); 3] = [
        (48 + 64, |e| matches!(e, VerifyError::QuoteSignature(_))), // body mr_enclave
        (sig_off + 128 + 64, |e| {
            matches!(e, VerifyError::QeReportSignature(_))
        }), // QE report mr_enclave
        (sig_off + 5, |e| matches!(e, VerifyError::QuoteSignature(_))), // quote signature
    ];
    for (off, want) in cases {
        let mut t = q.clone();
        t[off] ^= 1;
        let tq = parse_sgx_quote(&t).expect("tampered quote still parses");
        let err = verify_sgx_signatures(&tq, &[INTEL_SGX_ROOT_CA_SHA256], None)
            .expect_err("tampered quote must fail");
        assert!(want(&err), "offset {off}: {err}");
    }
}

#[test]
fn occlum_quote_collateral_key_names_sgx() {
    let Some(q) = read("occlum_quote.dat") else {
        return;
    };
    let key = collateral_key(&q).expect("key");
    assert_eq!(key.tee, DcapTee::Sgx);
    assert_eq!(key.fmspc, "00606A000000");
    assert_eq!(key.ca, PckCaType::Platform);
}

#[test]
fn tdx_and_sgx_parsers_refuse_each_other() {
    let (Some(sgx), Some(tdx)) = (read("occlum_quote.dat"), read("tdx_quote_4.dat")) else {
        return;
    };
    let e = parse_quote(&sgx).unwrap_err();
    assert_eq!(e, ParseError::UnsupportedVersion(3));
    assert!(e.to_string().contains("SGX quote"), "{e}");
    let e = parse_sgx_quote(&tdx).unwrap_err();
    assert_eq!(e, ParseError::UnsupportedSgxVersion(4));
    assert!(e.to_string().contains("TDX quotes"), "{e}");
    assert_eq!(collateral_key(&tdx).expect("tdx key").tee, DcapTee::Tdx);
}

#[test]
fn truncated_sgx_quotes_never_panic() {
    let Some(q) = read("occlum_quote.dat") else {
        return;
    };
    for n in (0..q.len()).step_by(7) {
        assert!(parse_sgx_quote(&q[..n]).is_err(), "prefix {n}");
    }
    let mut t = q.clone();
    t[432..436].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_sgx_quote(&t),
        Err(ParseError::Truncated { .. })
    ));
    let _: Value = sgx_claims(&parse_sgx_quote(&q).unwrap());
}

#[test]
fn corrupted_sgx_quotes_never_panic() {
    let Some(q) = read("occlum_quote.dat") else {
        return;
    };
    // Deterministic xorshift: flip one byte at a time across the whole quote.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut t = q.clone();
        let i = (x as usize) % t.len();
        t[i] = (x >> 32) as u8;
        if let Ok(p) = parse_sgx_quote(&t) {
            let _ = sgx_claims(&p);
            let _ = verify_sgx_signatures(&p, &[INTEL_SGX_ROOT_CA_SHA256], None);
        }
        let _ = collateral_key(&t);
    }
}
