//! The `sgx` verifier's evidence handling on the shared vectors: each DCAP verifier refuses
//! the other TEE's quote by name, an empty quote is refused, and the collateral key of SGX
//! evidence names SGX.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use trustee_evidence::{tdx_collateral_key, Inputs, Verifiers, VerifyError};

fn evidence(name: &str) -> Option<Vec<u8>> {
    let q = trustee_testvectors::read(&format!("trustee/deps/verifier/test_data/{name}"))?;
    Some(format!(r#"{{"quote":"{}"}}"#, STANDARD.encode(q)).into_bytes())
}

fn verify(tee: &str, ev: &[u8]) -> Result<(), VerifyError> {
    Verifiers::default()
        .verify(tee, ev, None, None, &Inputs::default())
        .map(|_| ())
}

#[test]
fn each_dcap_verifier_refuses_the_other_tees_quote() {
    let (Some(sgx), Some(tdx)) = (evidence("occlum_quote.dat"), evidence("tdx_quote_4.dat")) else {
        return;
    };
    let e = verify("tdx", &sgx).unwrap_err().to_string();
    assert!(e.contains("version 3 is an SGX quote"), "{e}");
    let e = verify("sgx", &tdx).unwrap_err().to_string();
    assert!(e.contains("TDX quotes, for the tdx verifier"), "{e}");
    // The SGX quote itself is fine: only the collateral is missing.
    let e = verify("sgx", &sgx).unwrap_err();
    assert!(matches!(e, VerifyError::Missing { tee: "sgx", .. }), "{e}");
}

#[test]
fn empty_sgx_quote_is_refused() {
    let e = verify("sgx", br#"{"quote":""}"#).unwrap_err();
    assert!(
        matches!(e, VerifyError::Malformed { tee: "sgx", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn collateral_key_of_sgx_evidence() {
    let Some(sgx) = evidence("occlum_quote.dat") else {
        return;
    };
    let key = tdx_collateral_key(&sgx).expect("key");
    assert_eq!(key.tee.as_str(), "sgx");
    assert_eq!(key.fmspc, "00606A000000");
}
