//! Bounded, deterministic fuzzing (fixed-seed xorshift PRNG, time-boxed) of
//! the quote parser, the PCK certification-data path and the collateral JSON
//! decoder: errors are expected, panics are not. Parseable mutants are also
//! pushed through the signature checks and the DCAP appraisal.
//!
//! Budget per target: `TDX_FUZZ_SECS` seconds (default 8, at most 30).
//! Seeds are the shared vectors read in place (`TRUSTEE_VECTORS_DIR`, else the
//! `shared/vectors` folder beside the repository); synthetic seeds keep every
//! target running without them locally (under `CI=true` absent vectors panic).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use trustee_tdx::{
    claims, collateral_key, parse_quote, parse_rfc3339, pck_extension, pem_certificates,
    platform_instance_id, verify_pck_chain, verify_quote, verify_signatures, Collateral, Crl,
    DcapVerifier, QeIdentity, TcbInfo, VerifyOptions, INTEL_SGX_ROOT_CA_SHA256,
};
use trustee_testvectors::fuzz::{self, Rng};

const DEFAULT_SECS: u64 = 8;
const MAX_SECS: u64 = 30;

fn budget() -> Duration {
    fuzz::budget("TDX_FUZZ_SECS", DEFAULT_SECS, MAX_SECS)
}

fn vector(rel: &str) -> Option<Vec<u8>> {
    if !trustee_testvectors::vectors_path().is_dir() && !trustee_testvectors::in_ci() {
        // Said once, not for every seed (under CI `read` panics instead).
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            trustee_testvectors::vectors_dir();
            eprintln!("fuzzing with synthetic seeds only");
        });
        return None;
    }
    trustee_testvectors::read(rel)
}

const TD: &str = "trustee/deps/verifier/test_data";
const QVL_QUOTE: &str = "dcap-qvl/sample/tdx_quote";
const QVL_COLLATERAL: &str = "dcap-qvl/sample/tdx_quote_collateral.json";
/// Inside the dcap-qvl sample collateral's validity (tcbInfo issueDate + 1 h).
const QVL_NOW: &str = "2025-06-19T11:16:03Z";

fn real_quotes() -> Vec<Vec<u8>> {
    [
        format!("{TD}/tdx_quote_4.dat"),
        format!("{TD}/tdx_quote_5.dat"),
        QVL_QUOTE.to_string(),
    ]
    .iter()
    .filter_map(|p| vector(p))
    .collect()
}

/// The dcap-qvl sample quote with its collateral, when both are present.
fn qvl_pair() -> Option<(Vec<u8>, Collateral)> {
    let q = vector(QVL_QUOTE)?;
    let c = Collateral::from_json(&vector(QVL_COLLATERAL)?).ok()?;
    Some((q, c))
}

fn qvl_opts() -> VerifyOptions {
    VerifyOptions::at(parse_rfc3339(QVL_NOW).unwrap_or(0))
}

/// Values that sit on boundaries of the length checks.
const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    5,
    6,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x7fff_ffff,
    u32::MAX,
];

/// Generic byte-level mutations: flips, overwrites, inserts, deletes,
/// truncations, boundary values and random tails.
fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        if out.is_empty() {
            out.push(rng.byte());
        }
        let at = rng.below(out.len());
        match rng.below(8) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.byte(),
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let end = (at + 4).min(out.len());
                out[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => out.truncate(at),
            4 => {
                let n = rng.below(16) + 1;
                let b = rng.bytes(n);
                out.splice(at..at, b);
            }
            5 => {
                let end = (at + rng.below(32) + 1).min(out.len());
                out.drain(at..end);
            }
            6 => {
                let n = rng.below(64) + 1;
                out.extend(rng.bytes(n));
            }
            _ => out[at] = out[at].wrapping_add(1),
        }
    }
    out
}

/// Panics are reported with the input that caused them, then re-raised.
fn guarded(what: &str, input: &[u8], f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        eprintln!(
            "{what}: panic on input ({} bytes) {}",
            input.len(),
            hex::encode(input)
        );
        std::panic::resume_unwind(p);
    }
}

// --- quote layout ------------------------------------------------------

/// Offsets inside a parseable quote: (signature-data start, PCK chain
/// start) plus every length / type field (offset, width).
struct Layout {
    sig_start: usize,
    chain_start: usize,
    fields: Vec<(usize, usize)>,
}

fn layout(q: &[u8]) -> Option<Layout> {
    let p = parse_quote(q).ok()?;
    let sd = p.signed_len + 4;
    let n = p.signature.qe_auth_data.len();
    let mut fields = vec![
        (p.signed_len, 4), // signature data length
        (sd + 128, 2),     // certification data type (6)
        (sd + 130, 4),     // certification data size
        (sd + 582, 2),     // QE auth data size
        (sd + 584 + n, 2), // PCK certification data type (5)
        (sd + 586 + n, 4), // PCK chain size
    ];
    if p.body_descriptor.is_some() {
        fields.push((48, 2));
        fields.push((50, 4));
    }
    Some(Layout {
        sig_start: p.signed_len,
        chain_start: sd + 590 + n,
        fields,
    })
}

/// `quote` with its PCK certification data replaced by `chain`, every
/// enclosing length kept consistent (so the parser reaches the chain).
fn with_chain(quote: &[u8], chain: &[u8]) -> Option<Vec<u8>> {
    let l = layout(quote)?;
    let mut q = quote.get(..l.chain_start)?.to_vec();
    q.extend_from_slice(chain);
    let sd = l.sig_start + 4;
    let put = |q: &mut Vec<u8>, off: usize, v: usize| -> Option<()> {
        let v = u32::try_from(v).ok()?.to_le_bytes();
        q.get_mut(off..off + 4)?.copy_from_slice(&v);
        Some(())
    };
    let total = q.len();
    put(&mut q, l.sig_start, total - sd)?;
    put(&mut q, sd + 130, total - (sd + 134))?;
    put(&mut q, l.chain_start - 4, chain.len())?;
    Some(q)
}

fn pem(ders: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in ders {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(d);
        for line in b64.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    out
}

// --- synthetic seeds ---------------------------------------------------

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else if n < 0x100 {
        v.extend_from_slice(&[0x81, n as u8]);
    } else {
        v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

/// A certificate-shaped DER carrying an SGX extension (OID
/// 1.2.840.113741.1.13.1) with FMSPC, PCE-ID and TCB entries, so mutations
/// reach the extension walker even without real vectors.
fn synthetic_leaf() -> Vec<u8> {
    let sgx_oid = [0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
    let sub = |arcs: &[u8], value: Vec<u8>| {
        let mut oid = sgx_oid.to_vec();
        oid.extend_from_slice(arcs);
        let mut c = der(0x06, &oid);
        c.extend(value);
        der(0x30, &c)
    };
    let mut tcb = Vec::new();
    for i in 1..=17u8 {
        tcb.extend(sub(&[2, i], der(0x02, &[i])));
    }
    tcb.extend(sub(&[2, 18], der(0x04, &[2; 16])));
    let mut items = sub(&[1], der(0x04, &[1; 16]));
    items.extend(sub(&[2], der(0x30, &tcb)));
    items.extend(sub(&[3], der(0x04, &[0, 0])));
    items.extend(sub(&[4], der(0x04, &[0, 0xa0, 0x6d, 8, 0, 0])));
    items.extend(sub(&[5], der(0x0a, &[1])));
    let mut ext = der(0x06, &sgx_oid);
    ext.extend(der(0x04, &der(0x30, &items)));
    let exts = der(0xa3, &der(0x30, &der(0x30, &ext)));
    let mut tbs = der(0xa0, &der(0x02, &[2]));
    tbs.extend(der(0x02, &[1]));
    tbs.extend(exts);
    der(0x30, &der(0x30, &tbs))
}

/// A structurally valid v4 / v5 quote (zero fields) around `chain`.
fn synthetic_quote(version: u16, chain: &[u8]) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&version.to_le_bytes());
    q.extend_from_slice(&2u16.to_le_bytes());
    q.extend_from_slice(&0x81u32.to_le_bytes());
    q.extend_from_slice(&[0u8; 40]);
    if version == 5 {
        q.extend_from_slice(&3u16.to_le_bytes());
        q.extend_from_slice(&648u32.to_le_bytes());
        q.extend_from_slice(&[0u8; 648]);
    } else {
        q.extend_from_slice(&[0u8; 584]);
    }
    let cert_size = 384 + 64 + 2 + 32 + 6 + chain.len();
    q.extend_from_slice(&((134 + cert_size) as u32).to_le_bytes());
    q.extend_from_slice(&[0u8; 128]);
    q.extend_from_slice(&6u16.to_le_bytes());
    q.extend_from_slice(&(cert_size as u32).to_le_bytes());
    q.extend_from_slice(&[0u8; 384 + 64]);
    q.extend_from_slice(&32u16.to_le_bytes());
    q.extend_from_slice(&[0u8; 32]);
    q.extend_from_slice(&5u16.to_le_bytes());
    q.extend_from_slice(&(chain.len() as u32).to_le_bytes());
    q.extend_from_slice(chain);
    q
}

fn synthetic_chain() -> Vec<u8> {
    let ca = der(0x30, &der(0x30, &der(0x02, &[3])));
    pem(&[synthetic_leaf(), ca.clone(), ca])
}

fn synthetic_collateral() -> Vec<u8> {
    let chain = String::from_utf8(synthetic_chain()).unwrap_or_default();
    let sig = "11".repeat(64);
    serde_json::to_vec(&json!({
        "pck_crl_issuer_chain": chain,
        "root_ca_crl": "3000",
        "pck_crl": "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n",
        "tcb_info_issuer_chain": chain,
        "tcb_info": "{\"id\":\"TDX\",\"version\":3,\"fmspc\":\"00A06D080000\",\"tcbLevels\":[]}",
        "tcb_info_signature": sig,
        "qe_identity_issuer_chain": chain,
        "qe_identity": "{\"id\":\"TD_QE\",\"version\":2,\"tcbLevels\":[]}",
        "qe_identity_signature": sig,
    }))
    .unwrap_or_default()
}

// --- (a) quote parser --------------------------------------------------

/// One mutant of a quote, aimed mostly at the signature / certification
/// data, whose nested lengths are where parsers go wrong.
fn mutate_quote(rng: &mut Rng, q: &[u8], l: Option<&Layout>) -> Vec<u8> {
    let mut m = q.to_vec();
    let sig_start = l.map_or(0, |l| l.sig_start).min(m.len());
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            // Truncate, mostly inside the signature data.
            let from = if rng.below(4) == 0 { 0 } else { sig_start };
            let cut = from + rng.below(m.len() - from + 1);
            m.truncate(cut);
        }
        2 => {
            if let Some((off, width)) = l.and_then(|l| l.fields.get(rng.below(l.fields.len()))) {
                let v: u32 = match rng.below(4) {
                    0 => INTERESTING[rng.below(INTERESTING.len())],
                    1 => rng.next() as u32,
                    _ => {
                        let cur = m
                            .get(*off..off + 4)
                            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                        cur.wrapping_add(rng.below(9) as u32).wrapping_sub(4)
                    }
                };
                let v = v.to_le_bytes();
                if let Some(dst) = m.get_mut(*off..off + width) {
                    dst.copy_from_slice(&v[..*width]);
                }
            }
        }
        3 => {
            let n = rng.below(256) + 1;
            m.extend(rng.bytes(n));
        }
        4 => {
            // Same-length edits inside the signature data only.
            for _ in 0..=rng.below(6) {
                let i = sig_start + rng.below(m.len() - sig_start);
                if let Some(b) = m.get_mut(i) {
                    *b = rng.byte();
                }
            }
        }
        5 => {
            // Replace the tail from a point in the signature data.
            let cut = sig_start + rng.below(m.len() - sig_start + 1);
            m.truncate(cut);
            let n = rng.below(2048);
            m.extend(rng.bytes(n));
        }
        _ => m = mutate_bytes(rng, &m),
    }
    m
}

#[test]
fn fuzz_quote_parser() {
    let mut rng = Rng(0x7D_0001);
    let mut seeds = real_quotes();
    if seeds.is_empty() {
        eprintln!("quote parser: no vector quotes; synthetic seeds only");
    }
    let chain = synthetic_chain();
    seeds.push(synthetic_quote(4, &chain));
    seeds.push(synthetic_quote(5, &chain));
    let layouts: Vec<Option<Layout>> = seeds.iter().map(|s| layout(s)).collect();
    let trusted = [INTEL_SGX_ROOT_CA_SHA256];
    let qvl = qvl_pair();
    let opts = qvl_opts();
    let warm = DcapVerifier::new(4);

    let budget = budget();
    let started = Instant::now();
    let (mut n, mut parsed) = (0u64, 0u64);
    while started.elapsed() < budget {
        let i = rng.below(seeds.len());
        let input = mutate_quote(&mut rng, &seeds[i], layouts[i].as_ref());
        guarded("quote parser", &input, || {
            if let Ok(q) = parse_quote(&input) {
                parsed += 1;
                let _ = claims(&q);
                assert_eq!(q.signed_bytes().len(), q.signed_len);
                let _ = q.signature.pck_cert_chain_pem();
                if n.is_multiple_of(16) {
                    let now = (rng.below(2) == 0).then(|| rng.next() as i64);
                    let _ = verify_signatures(&q, &trusted, now);
                }
            }
            if n.is_multiple_of(4) {
                let _ = collateral_key(&input);
            }
            if let Some((_, c)) = &qvl {
                if n.is_multiple_of(32) {
                    let _ = warm.verify_quote(&input, c, &opts);
                }
            }
        });
        n += 1;
    }
    eprintln!(
        "quote parser: {n} execs ({parsed} parseable) in {:.1?}",
        started.elapsed()
    );
    // The untouched vectors must still pass the full appraisal afterwards.
    if let Some((q, c)) = &qvl {
        verify_quote(q, c, &opts).unwrap_or_else(|e| panic!("unmutated dcap-qvl sample: {e}"));
    }
}

// --- (b) certification data / PCK chain --------------------------------

/// Mostly same-length edits so the DER framing often survives and the
/// extension walker sees deep damage.
fn mutate_der(rng: &mut Rng, d: &[u8]) -> Vec<u8> {
    if rng.below(3) == 0 {
        return mutate_bytes(rng, d);
    }
    let mut m = d.to_vec();
    for _ in 0..=rng.below(3) {
        let i = rng.below(m.len().max(1));
        if let Some(b) = m.get_mut(i) {
            *b = match rng.below(3) {
                0 => *b ^ (1 << rng.below(8)),
                1 => [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0xff][rng.below(7)],
                _ => rng.byte(),
            };
        }
    }
    m
}

#[test]
fn fuzz_pck_certification_data() {
    let mut rng = Rng(0x7D_0002);
    let mut quotes = real_quotes();
    if quotes.is_empty() {
        eprintln!("PCK path: no vector quotes; synthetic seeds only");
    }
    quotes.push(synthetic_quote(4, &synthetic_chain()));
    // (quote, DER chain) pairs; the quote is the carrier for collateral_key.
    let seeds: Vec<(Vec<u8>, Vec<Vec<u8>>)> = quotes
        .into_iter()
        .filter_map(|q| {
            let chain = parse_quote(&q).ok()?.signature.pck_cert_chain;
            let ders = pem_certificates(&chain);
            (!ders.is_empty()).then_some((q, ders))
        })
        .collect();
    assert!(!seeds.is_empty(), "synthetic seed must parse");
    let trusted = [INTEL_SGX_ROOT_CA_SHA256];

    let budget = budget();
    let started = Instant::now();
    let (mut n, mut ext_ok, mut key_ok) = (0u64, 0u64, 0u64);
    while started.elapsed() < budget {
        let (quote, ders) = &seeds[rng.below(seeds.len())];
        let mut chain = ders.clone();
        // The leaf most of the time; the CA (whose CN gives the CA type) too.
        let which = if rng.below(4) == 0 { 1 } else { 0 };
        if let Some(d) = chain.get_mut(which) {
            *d = mutate_der(&mut rng, d);
        }
        let leaf = chain.first().cloned().unwrap_or_default();
        let mut chain_pem = pem(&chain);
        if rng.below(8) == 0 {
            chain_pem = mutate_bytes(&mut rng, &chain_pem);
        }
        let carrier = with_chain(quote, &chain_pem).unwrap_or_default();
        guarded("PCK path", &leaf, || {
            if pck_extension(&leaf).is_ok() {
                ext_ok += 1;
            }
            let _ = platform_instance_id(&chain_pem);
            if collateral_key(&carrier).is_ok() {
                key_ok += 1;
            }
            if n.is_multiple_of(16) {
                let _ = verify_pck_chain(&chain_pem, &trusted);
            }
        });
        n += 1;
    }
    eprintln!(
        "PCK path: {n} execs ({ext_ok} extensions parsed, {key_ok} collateral keys) in {:.1?}",
        started.elapsed()
    );
}

// --- (c) collateral JSON -----------------------------------------------

const COLLATERAL_FIELDS: [&str; 9] = [
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
];

/// A field-aware mutant: hex CRLs are mutated as DER, signatures as bytes,
/// embedded JSON and PEM as text; sometimes the field's type changes.
fn mutate_collateral(rng: &mut Rng, seed: &Value) -> Value {
    let mut v = seed.clone();
    let Some(map) = v.as_object_mut() else {
        return v;
    };
    for _ in 0..=rng.below(2) {
        let key = COLLATERAL_FIELDS[rng.below(COLLATERAL_FIELDS.len())];
        let cur = map
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let new = match rng.below(10) {
            0 => {
                map.remove(key);
                continue;
            }
            1 => {
                [json!(null), json!(7), json!([]), json!({"a": 1}), json!("")][rng.below(5)].clone()
            }
            2..=4 if hex::decode(cur.trim()).is_ok() => {
                let raw = hex::decode(cur.trim()).unwrap_or_default();
                let m = if key.ends_with("crl") {
                    mutate_der(rng, &raw)
                } else {
                    mutate_bytes(rng, &raw)
                };
                json!(hex::encode(m))
            }
            _ => {
                let m = mutate_bytes(rng, cur.as_bytes());
                json!(String::from_utf8_lossy(&m))
            }
        };
        map.insert(key.to_string(), new);
    }
    v
}

#[test]
fn fuzz_collateral_json() {
    let mut rng = Rng(0x7D_0003);
    let mut texts: Vec<Vec<u8>> = Vec::new();
    if let Some(t) = vector(QVL_COLLATERAL) {
        texts.push(t);
    } else {
        eprintln!("collateral JSON: no vector collateral; synthetic seed only");
    }
    texts.push(synthetic_collateral());
    let values: Vec<Value> = texts
        .iter()
        .filter_map(|t| serde_json::from_slice(t).ok())
        .collect();
    let qvl_quote = vector(QVL_QUOTE);
    let opts = qvl_opts();

    let budget = budget();
    let started = Instant::now();
    let (mut n, mut decoded) = (0u64, 0u64);
    while started.elapsed() < budget {
        let input = if rng.below(4) == 0 || values.is_empty() {
            let t = rng.below(texts.len());
            mutate_bytes(&mut rng, &texts[t])
        } else {
            let i = rng.below(values.len());
            let v = mutate_collateral(&mut rng, &values[i]);
            serde_json::to_vec(&v).unwrap_or_default()
        };
        guarded("collateral JSON", &input, || {
            let Ok(c) = Collateral::from_json(&input) else {
                return;
            };
            decoded += 1;
            let _ = c.content_hash();
            let _ = Crl::from_der(&c.pck_crl);
            let _ = Crl::from_der(&c.root_ca_crl);
            let _ = TcbInfo::parse(&c.tcb_info);
            let _ = QeIdentity::parse(&c.qe_identity);
            if let Some(q) = &qvl_quote {
                if n.is_multiple_of(8) {
                    let _ = verify_quote(q, &c, &opts);
                }
            }
        });
        n += 1;
    }
    eprintln!(
        "collateral JSON: {n} execs ({decoded} decoded) in {:.1?}",
        started.elapsed()
    );
}
