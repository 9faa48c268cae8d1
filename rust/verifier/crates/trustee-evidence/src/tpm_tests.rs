//! No real `tpm` evidence is available: these build quotes the way a TPM marshals them and
//! sign them with generated keys.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::{Inputs, Verifiers, VerifyError};

pub(super) const NONCE: &[u8] = b"nonce from the KBS";

fn pcrs(init_data_hash: &[u8; 32]) -> Vec<[u8; 32]> {
    (0..24u8)
        .map(|i| {
            if i == 8 {
                Sha256::new_with_prefix([0u8; 32])
                    .chain_update(init_data_hash)
                    .finalize()
                    .into()
            } else {
                [i; 32]
            }
        })
        .collect()
}

/// A TPMS_ATTEST quoting all 24 SHA-256 PCRs with `nonce` as extraData.
fn attest(nonce: &[u8], pcrs: &[[u8; 32]]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(0xff54_4347u32.to_be_bytes());
    m.extend(0x8018u16.to_be_bytes());
    m.extend(34u16.to_be_bytes()); // qualifiedSigner: a SHA-256 name
    m.extend([0x00, 0x0b]);
    m.extend([0xAA; 32]);
    m.extend(u16::try_from(nonce.len()).unwrap().to_be_bytes());
    m.extend(nonce);
    m.extend([0u8; 17 + 8]); // clockInfo, firmwareVersion
    m.extend(1u32.to_be_bytes());
    m.extend([0x00, 0x0b, 3, 0xff, 0xff, 0xff]);
    let mut h = Sha256::new();
    for p in pcrs {
        h.update(p);
    }
    m.extend(32u16.to_be_bytes());
    m.extend(h.finalize());
    m
}

fn tpmt_signature(alg: u16, parts: &[&[u8]]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(alg.to_be_bytes());
    s.extend(0x000bu16.to_be_bytes());
    for p in parts {
        s.extend(u16::try_from(p.len()).unwrap().to_be_bytes());
        s.extend(*p);
    }
    s
}

/// Evidence signed by a fresh RSA (or P-256) AK over a quote of `nonce`.
pub(super) fn evidence(ecdsa: bool, nonce: &[u8], init: &[u8; 32]) -> Value {
    let pcrs = pcrs(init);
    let message = attest(nonce, &pcrs);
    let rng = SystemRandom::new();
    let (ak, signature) = if ecdsa {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sig = key.sign(&rng, &message).unwrap();
        let (r, s) = sig.as_ref().split_at(32);
        let der = key.public_key().as_der().unwrap();
        (der.as_ref().to_vec(), tpmt_signature(0x0018, &[r, s]))
    } else {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let mut sig = vec![0u8; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &rng, &message, &mut sig)
            .unwrap();
        let der = key.public_key().as_der().unwrap();
        (der.as_ref().to_vec(), tpmt_signature(0x0014, &[&sig]))
    };
    json!({
        "ak_public": STANDARD.encode(ak),
        "tpm_quote": {
            "signature": STANDARD.encode(signature),
            "message": STANDARD.encode(message),
            "pcrs": pcrs.iter().map(hex::encode).collect::<Vec<_>>(),
        }
    })
}

fn verify(
    ev: &Value,
    report_data: Option<&[u8]>,
    init: Option<&[u8]>,
) -> Result<Value, VerifyError> {
    let bytes = serde_json::to_vec(ev).unwrap();
    let mut out =
        Verifiers::default().verify("tpm", &bytes, report_data, init, &Inputs::default())?;
    Ok(out.remove(0).0)
}

pub(super) fn padded_nonce() -> Vec<u8> {
    let mut n = NONCE.to_vec();
    n.resize(32, 0);
    n
}

#[test]
fn rsa_and_ecdsa_quotes_verify_with_upstream_claims() {
    let init = [9u8; 32];
    for ecdsa in [false, true] {
        let ev = evidence(ecdsa, &padded_nonce(), &init);
        let claims = verify(&ev, Some(NONCE), Some(&init)).unwrap();
        assert_eq!(claims["report_data"], hex::encode(padded_nonce()));
        assert_eq!(claims["ak_public"], ev["ak_public"]);
        assert_eq!(claims["pcr00"], "00".repeat(32));
        assert_eq!(claims["pcr23"], "17".repeat(32));
        assert_eq!(claims["init_data"], ev["tpm_quote"]["pcrs"][8]);
        // Upstream-shaped evidence (no `ak_cert`) with no roots configured: not certified.
        assert_eq!(claims["ak_certified"], false);
        assert_eq!(claims.as_object().unwrap().len(), 4 + 24);
    }
}

#[test]
fn report_data_is_compared_zero_padded_or_truncated_to_32_bytes() {
    let ev = evidence(false, &padded_nonce(), &[0; 32]);
    let mut long = NONCE.to_vec();
    long.resize(48, 7);
    let truncated = evidence(false, &long[..32], &[0; 32]);
    verify(&truncated, Some(&long), None).unwrap();
    // Without an expectation the nonce is not checked, as upstream.
    verify(&ev, None, None).unwrap();
    let err = verify(&ev, Some(b"another nonce"), None).unwrap_err();
    assert!(
        err.to_string().contains("tpm TPM quote nonce mismatch"),
        "{err}"
    );
}

#[test]
fn tampered_tpm_evidence_fails_each_check_with_its_own_error() {
    let init = [9u8; 32];
    let ev = evidence(false, &padded_nonce(), &init);
    let other = evidence(false, &padded_nonce(), &init);
    let flip = |b64: &Value, at: usize| {
        let mut raw = STANDARD.decode(b64.as_str().unwrap()).unwrap();
        let at = at.min(raw.len() - 1);
        raw[at] ^= 1;
        json!(STANDARD.encode(raw))
    };
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut e = ev.clone();
    e["ak_public"] = other["ak_public"].clone();
    cases.push((
        "other AK",
        e,
        "TPM quote signature does not verify with the AK key",
    ));
    let mut e = ev.clone();
    e["ak_public"] = json!(STANDARD.encode(b"garbage"));
    cases.push(("AK", e, "AK public key is not a usable"));
    let mut e = ev.clone();
    e["tpm_quote"]["message"] = flip(&ev["tpm_quote"]["message"], 4);
    cases.push(("message type", e, "is not TPM_ST_ATTEST_QUOTE"));
    let mut e = ev.clone();
    e["tpm_quote"]["signature"] = flip(&ev["tpm_quote"]["signature"], 1);
    cases.push((
        "signature hash",
        e,
        "is not supported (RSASSA or ECDSA with SHA-256)",
    ));
    let mut e = ev.clone();
    e["tpm_quote"]["pcrs"][8] = json!("00".repeat(32));
    cases.push(("PCR", e, "does not match the quote's pcrDigest"));
    let mut e = ev.clone();
    e["tpm_quote"]["pcrs"][8] = json!("00".repeat(31));
    cases.push(("PCR length", e, "PCR value 8 is 31 bytes"));
    let mut seen = Vec::new();
    for (case, e, want) in cases {
        let err = verify(&e, Some(NONCE), Some(&init))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{case}: {err}");
        assert!(!seen.contains(&err), "{case}: {err}");
        seen.push(err);
    }
    let err = verify(&ev, Some(NONCE), Some(&[8u8; 32])).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match the expected init-data hash"),
        "{err}"
    );
    let mut e = ev.clone();
    e["tpm_quote"]["signature"] = flip(&ev["tpm_quote"]["signature"], 100);
    let err = verify(&e, Some(NONCE), None).unwrap_err();
    assert!(
        err.to_string().contains("does not verify with the AK key"),
        "{err}"
    );
}
