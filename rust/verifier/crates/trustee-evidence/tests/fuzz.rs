//! Bounded, deterministic fuzzing (fixed-seed PRNG, time-boxed) of the verifiers whose
//! evidence wraps several binary structures: az-snp-vtpm, az-tdx-vtpm, tpm and sgx. Each
//! round mutates either the raw evidence text or one decoded part (HCL report, TPM quote
//! message, its signature, a PCR, the VCEK, the TD/SGX quote) re-encoded into valid JSON, so
//! the binary parsers behind the JSON are reached. Errors are fine, panics are not.
//!
//! The collateral checks a bundle goes through (DCAP collateral JSON, SNP vendor
//! certificates) get a quarter of that budget on top, with the same rule.
//!
//! Budget: `EVIDENCE_FUZZ_SECS` seconds (default 8, at most 60), shared by the evidence targets.
//! Seeds come from the shared vectors; without them only the synthetic `tpm` seed runs.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use trustee_evidence::{Inputs, Verifiers};
use trustee_testvectors::fuzz::{self, Rng};

const DEFAULT_SECS: u64 = 8;
const MAX_SECS: u64 = 60;
const NOW: i64 = 1_750_000_000;

fn budget() -> Duration {
    fuzz::budget("EVIDENCE_FUZZ_SECS", DEFAULT_SECS, MAX_SECS)
}

fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 | 1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 if !out.is_empty() => out.truncate(rng.below(out.len())),
            3 => {
                // Sizes and counts are where parsers go wrong: write an extreme u16/u32.
                if out.len() >= 4 {
                    let i = rng.below(out.len() - 3);
                    let v = [0u32, 1, 0xffff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
                    out[i..i + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            _ => {
                let at = rng.below(out.len() + 1);
                let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, extra);
            }
        }
    }
    out
}

/// How a JSON string member carries its bytes.
#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Std,
    Url,
}

impl Encoding {
    fn decode(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(s).ok(),
            Encoding::Std => STANDARD.decode(s).ok(),
            Encoding::Url => URL_SAFE
                .decode(s)
                .or_else(|_| URL_SAFE_NO_PAD.decode(s))
                .ok(),
        }
    }
    fn encode(self, b: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(b),
            Encoding::Std => STANDARD.encode(b),
            Encoding::Url => URL_SAFE.encode(b),
        }
    }
}

/// A seed: the TEE, its evidence, and the (JSON pointer, encoding) of each binary part.
struct Seed {
    tee: &'static str,
    evidence: Value,
    parts: Vec<(String, Encoding)>,
}

fn vector(rel: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(&format!("trustee/deps/verifier/test_data/{rel}"))
}

fn azure_parts(doc: &Value, hardware: &str) -> Vec<(String, Encoding)> {
    let mut parts = vec![
        ("/hcl_report".to_owned(), Encoding::Url),
        (format!("/{hardware}"), Encoding::Url),
        ("/tpm_quote/message".to_owned(), Encoding::Hex),
        ("/tpm_quote/signature".to_owned(), Encoding::Hex),
    ];
    let pcrs = doc["tpm_quote"]["pcrs"].as_array().map_or(0, Vec::len);
    parts.extend((0..pcrs).map(|i| (format!("/tpm_quote/pcrs/{i}"), Encoding::Hex)));
    parts
}

fn seeds() -> Vec<Seed> {
    let mut seeds = vec![Seed {
        tee: "tpm",
        evidence: tpm_seed(),
        parts: tpm_parts(),
    }];
    for (tee, rel, hardware) in [
        ("az-snp-vtpm", "az-snp-vtpm/evidence-v1.json", "vcek"),
        ("az-tdx-vtpm", "az-tdx-vtpm/evidence-v1.json", "td_quote"),
    ] {
        let Some(raw) = vector(rel) else { continue };
        let evidence: Value = serde_json::from_slice(&raw).expect("vector is JSON");
        let parts = azure_parts(&evidence, hardware);
        seeds.push(Seed {
            tee,
            evidence,
            parts,
        });
    }
    if let Some(quote) = vector("occlum_quote.dat") {
        seeds.push(Seed {
            tee: "sgx",
            evidence: json!({ "quote": STANDARD.encode(quote) }),
            parts: vec![("/quote".to_owned(), Encoding::Std)],
        });
    }
    seeds
}

/// A tpm evidence shape with well-formed framing (an RSASSA TPMT_SIGNATURE, a quote-typed
/// TPMS_ATTEST, 24 PCRs) that no key signed: the mutations then walk every parser.
fn tpm_seed() -> Value {
    let mut message = vec![0xff, 0x54, 0x43, 0x47, 0x80, 0x18];
    message.extend([0x00, 0x02, 0xab, 0xcd]); // qualifiedSigner
    message.extend([0x00, 0x20]);
    message.extend([0x11; 32]); // extraData
    message.extend([0u8; 17 + 8]); // clockInfo, firmwareVersion
    message.extend([0, 0, 0, 1, 0x00, 0x0b, 3, 0xff, 0xff, 0xff]); // sha256, PCRs 0-23
    message.extend([0x00, 0x20]);
    message.extend([0x22; 32]); // pcrDigest
    let mut signature = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
    signature.extend([0x5a; 256]);
    json!({
        "ak_public": STANDARD.encode([0x30, 0x03, 0x02, 0x01, 0x00]),
        "tpm_quote": {
            "message": STANDARD.encode(message),
            "signature": STANDARD.encode(signature),
            "pcrs": vec![hex::encode([0u8; 32]); 24],
        },
    })
}

fn tpm_parts() -> Vec<(String, Encoding)> {
    let mut parts = vec![
        ("/ak_public".to_owned(), Encoding::Std),
        ("/tpm_quote/message".to_owned(), Encoding::Std),
        ("/tpm_quote/signature".to_owned(), Encoding::Std),
    ];
    parts.extend((0..24).map(|i| (format!("/tpm_quote/pcrs/{i}"), Encoding::Hex)));
    parts
}

/// One mutated evidence document: a decoded part mutated and re-encoded, or a member
/// removed or given the wrong type, or (as text) raw bytes flipped.
fn mutant(rng: &mut Rng, seed: &Seed) -> Vec<u8> {
    let mut doc = seed.evidence.clone();
    match rng.below(8) {
        0 => return mutate_bytes(rng, &serde_json::to_vec(&doc).unwrap_or_default()),
        1 => {
            if let Some(map) = doc.as_object_mut() {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = &keys[rng.below(keys.len())];
                let replacement = match rng.below(4) {
                    0 => Value::Null,
                    1 => json!(7),
                    2 => json!([]),
                    _ => json!(""),
                };
                if rng.below(2) == 0 {
                    map.remove(key);
                } else {
                    map.insert(key.clone(), replacement);
                }
            }
        }
        _ => {
            let (pointer, encoding) = &seed.parts[rng.below(seed.parts.len())];
            if let Some(slot) = doc.pointer_mut(pointer) {
                let bytes = slot
                    .as_str()
                    .and_then(|s| encoding.decode(s))
                    .unwrap_or_default();
                *slot = Value::String(encoding.encode(&mutate_bytes(rng, &bytes)));
            }
        }
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[test]
fn new_tee_verifiers_never_panic_on_mutated_evidence() {
    let seeds = seeds();
    let verifiers = Verifiers::default();
    let collateral = trustee_testvectors::read("dcap-qvl/sample/tdx_quote_collateral.json");
    let inputs = Inputs {
        now_unix: NOW,
        tdx_collateral: collateral.as_deref(),
        snp_certs: &[],
    };
    let deadline = Instant::now() + budget();
    let mut rng = Rng(0x5eed_f00d_1234_5678);
    let mut runs = vec![0usize; seeds.len()];
    while Instant::now() < deadline {
        for (i, seed) in seeds.iter().enumerate() {
            let evidence = mutant(&mut rng, seed);
            // The verdict does not matter; returning (an error, almost always) does.
            let _ = verifiers.verify(seed.tee, &evidence, Some(b"challenge"), None, &inputs);
            runs[i] += 1;
        }
    }
    for (seed, n) in seeds.iter().zip(&runs) {
        eprintln!("{}: {n} mutated inputs", seed.tee);
        assert!(*n > 0);
    }
}

/// A collateral JSON document with one member's content mutated (hex members through their
/// bytes), or the whole text mutated.
fn collateral_mutant(rng: &mut Rng, seed: &Value) -> Vec<u8> {
    let mut doc = seed.clone();
    let Some(members) = doc.as_object_mut() else {
        return Vec::new();
    };
    let keys: Vec<String> = members.keys().cloned().collect();
    if keys.is_empty() || rng.below(6) == 0 {
        return mutate_bytes(rng, &serde_json::to_vec(seed).unwrap_or_default());
    }
    let key = &keys[rng.below(keys.len())];
    if let Some(Value::String(text)) = members.get(key) {
        let mutated = match hex::decode(text) {
            Ok(bytes) => hex::encode(mutate_bytes(rng, &bytes)),
            Err(_) => String::from_utf8_lossy(&mutate_bytes(rng, text.as_bytes())).into_owned(),
        };
        members.insert(key.clone(), Value::String(mutated));
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[test]
fn collateral_checks_never_panic_on_mutated_input() {
    let deadline = Instant::now() + budget() / 4;
    let mut rng = Rng(0xc011_a7e2_a1b0_0c1e);
    let collateral = trustee_testvectors::read("dcap-qvl/sample/tdx_quote_collateral.json")
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let anchors = trustee_snp::embedded_anchors();
    let (mut dcap_runs, mut snp_runs) = (0usize, 0usize);
    while Instant::now() < deadline {
        if let Some(seed) = &collateral {
            let tee = ["tdx", "sgx"][rng.below(2)];
            let _ = trustee_evidence::check_dcap_collateral(
                &collateral_mutant(&mut rng, seed),
                tee,
                &[],
            );
            dcap_runs += 1;
        }
        let cert = &anchors[rng.below(anchors.len())].der;
        let issuer = &anchors[rng.below(anchors.len())].der;
        let mutated = mutate_bytes(&mut rng, cert);
        let _ = trustee_evidence::check_snp_certificate(&mutated, Some(issuer), &[]);
        let _ = trustee_evidence::check_snp_certificate(issuer, Some(&mutated), &[]);
        let _ = trustee_evidence::check_snp_certificate(&mutated, None, &[]);
        snp_runs += 1;
    }
    eprintln!("collateral: {dcap_runs} DCAP and {snp_runs} SNP mutated inputs");
    assert!(snp_runs > 0);
}
