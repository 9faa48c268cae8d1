//! Bounded, deterministic fuzzing (fixed-seed PRNG, time-boxed) of the report parser, the
//! JSON evidence decoder (whose one-pass fast path must agree with the `Value`-based
//! decoder on every input) and the VEK extension parser: errors are fine, panics are not.
//! Seeds come from the shared vectors when present, synthetic inputs otherwise.
//!
//! Budget per target: `SNP_FUZZ_SECS` seconds (default 8, at most 30). Each target prints
//! how many inputs it ran.

mod common;

use common::{anchors, e2e_evidence, snp, NOW};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use trustee_snp::{
    claims, decode_evidence, decode_evidence_value, parse_report, parse_vek_extensions,
    report_from_json, vcek_request, verify_evidence, verify_report_signature, Report,
    VerifyOptions, REPORT_LEN,
};
use trustee_testvectors::fuzz::{self, Rng};

const DEFAULT_SECS: u64 = 8;
const MAX_SECS: u64 = 30;

fn budget() -> Duration {
    fuzz::budget("SNP_FUZZ_SECS", DEFAULT_SECS, MAX_SECS)
}

/// `decode_evidence` (fast path first) must give exactly what the `Value` decoder gives
/// for any JSON object, errors included.
fn assert_decoders_agree(text: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(text) else {
        return;
    };
    if !value.is_object() || text.first() != Some(&b'{') {
        return;
    }
    assert_eq!(
        decode_evidence(text),
        decode_evidence_value(&value),
        "decoders disagree on {}",
        String::from_utf8_lossy(text)
    );
}

fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(6) {
        match rng.below(6) {
            0..=2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.byte();
            }
            3 => {
                let n = rng.below(out.len() + 1);
                out.truncate(n);
            }
            4 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.byte());
            }
            _ if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            _ => out.push(rng.byte()),
        }
    }
    out
}

fn synthetic_report(rng: &mut Rng, version: u32) -> Vec<u8> {
    let mut b: Vec<u8> = (0..REPORT_LEN).map(|_| rng.byte()).collect();
    b[..4].copy_from_slice(&version.to_le_bytes());
    b[0x188] = [0x19, 0x1A, 0x17][rng.below(3)];
    b[0x189] = rng.byte() & 0xBF;
    b
}

/// The attester's serde form of a parsed report (test-side mirror of the attester's form).
fn report_to_json(r: &Report) -> Value {
    let turin = r.generation() == Some(trustee_snp::Generation::Turin);
    let tcb = |raw: &[u8; 8]| {
        let t = trustee_snp::TcbVersion::decode(raw, turin);
        json!({"fmc": t.fmc, "bootloader": t.bootloader, "tee": t.tee, "snp": t.snp,
               "microcode": t.microcode})
    };
    json!({
        "version": r.version, "guest_svn": r.guest_svn, "policy": r.policy,
        "family_id": r.family_id, "image_id": r.image_id, "vmpl": r.vmpl,
        "sig_algo": r.sig_algo, "current_tcb": tcb(&r.current_tcb_raw),
        "plat_info": r.platform_info, "key_info": r.key_info,
        "report_data": r.report_data.to_vec(), "measurement": r.measurement.to_vec(),
        "host_data": r.host_data, "id_key_digest": r.id_key_digest.to_vec(),
        "author_key_digest": r.author_key_digest.to_vec(), "report_id": r.report_id,
        "report_id_ma": r.report_id_ma, "reported_tcb": tcb(&r.reported_tcb_raw),
        "cpuid_fam_id": r.cpuid_fam_id, "cpuid_mod_id": r.cpuid_mod_id,
        "cpuid_step": r.cpuid_step, "chip_id": r.chip_id.to_vec(),
        "committed_tcb": tcb(&r.committed_tcb_raw),
        "current": {"major": r.current_major, "minor": r.current_minor, "build": r.current_build},
        "committed": {"major": r.committed_major, "minor": r.committed_minor,
                      "build": r.committed_build},
        "launch_tcb": tcb(&r.launch_tcb_raw),
        "launch_mit_vector": r.launch_mit_vector, "current_mit_vector": r.current_mit_vector,
        "signature": {"r": r.sig_r.to_vec(), "s": r.sig_s.to_vec()},
    })
}

#[test]
fn json_form_round_trips_to_the_canonical_binary() {
    let mut rng = Rng(7);
    let mut reports: Vec<Vec<u8>> = ["test-report.bin", "test-vlek-report.bin"]
        .into_iter()
        .filter_map(snp)
        .collect();
    for v in [2, 3, 5] {
        reports.push(synthetic_report(&mut rng, v));
    }
    for raw in reports {
        let Ok(parsed) = parse_report(&raw) else {
            continue;
        };
        let Some(canonical) = parsed.canonical_bytes() else {
            continue;
        };
        let decoded = report_from_json(&report_to_json(&parsed)).expect("JSON form decodes");
        assert_eq!(decoded.raw, canonical, "version {}", parsed.version);
        assert_eq!(claims(&decoded), claims(&parsed));
    }
    // Signatures verify through the JSON form too.
    if let (Some(raw), Some(vlek)) = (snp("test-vlek-report.bin"), snp("test-vlek.der")) {
        let decoded = report_from_json(&report_to_json(&parse_report(&raw).unwrap())).unwrap();
        verify_report_signature(&decoded.raw, &vlek).expect("JSON-rebuilt report verifies");
    }
}

#[test]
fn fuzz_report_parser() {
    let mut rng = Rng(0x5EED_0001);
    let mut seeds: Vec<Vec<u8>> = ["test-report.bin", "test-vlek-report.bin"]
        .into_iter()
        .filter_map(snp)
        .collect();
    for v in [2, 3, 4, 5, 6] {
        seeds.push(synthetic_report(&mut rng, v));
    }
    let vcek = snp("test-vcek.der");
    let budget = budget();
    let started = Instant::now();
    let mut n = 0u32;
    while n < 200_000 && started.elapsed() < budget {
        let seed = &seeds[rng.below(seeds.len())];
        let input = if rng.below(4) == 0 {
            // Same length, a few bytes changed: reaches the deeper paths.
            let mut b = seed.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(b.len());
                b[i] = rng.byte();
            }
            b
        } else {
            mutate_bytes(&mut rng, seed)
        };
        if let Ok(r) = parse_report(&input) {
            let _ = claims(&r);
            let _ = r.canonical_bytes();
            let _ = r.cpuid_generation();
            for g in trustee_snp::Generation::ALL {
                let _ = r.canonical_bytes_for(g);
                let _ = trustee_snp::claims_for(&r, g);
            }
        }
        let _ = decode_evidence(&input);
        let _ = vcek_request(&input);
        if n.is_multiple_of(500) {
            if let Some(v) = &vcek {
                let _ = verify_report_signature(&input, v);
            }
        }
        n += 1;
    }
    eprintln!("report parser: {n} inputs in {:?}", started.elapsed());
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.next()),
        2 => json!(-(rng.below(1000) as i64) - 1),
        3 => json!(rng.below(300)),
        4 => json!(format!("s{}", rng.byte())),
        5 => json!(1.5),
        6 => Value::Array(
            (0..[0, 1, 8, 16, 32, 48, 64, 72, 1184][rng.below(9)])
                .map(|_| json!(rng.below(260)))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for k in [
                "r",
                "s",
                "fmc",
                "bootloader",
                "tee",
                "snp",
                "microcode",
                "major",
            ] {
                if rng.below(2) == 0 {
                    m.insert(k.into(), random_value(rng, depth + 1));
                }
            }
            Value::Object(m)
        }
    }
}

fn mutate_json(rng: &mut Rng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            match rng.below(4) {
                0 => {
                    m.remove(k);
                }
                1 => {
                    m.insert(k.clone(), random_value(rng, 0));
                }
                _ => {
                    if let Some(child) = m.get_mut(k) {
                        mutate_json(rng, child);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            match rng.below(4) {
                0 => {
                    a.remove(i);
                }
                1 => a.push(random_value(rng, 1)),
                _ => mutate_json(rng, &mut a[i]),
            }
        }
        other => *other = random_value(rng, 1),
    }
}

#[test]
fn fuzz_json_report_decoder() {
    let mut rng = Rng(0x5EED_0002);
    let mut seeds: Vec<Value> = Vec::new();
    if let Some(e) = e2e_evidence() {
        seeds.push(serde_json::from_slice(&e).unwrap());
    }
    for v in [2, 3, 5] {
        let raw = synthetic_report(&mut rng, v);
        if let Ok(r) = parse_report(&raw) {
            seeds.push(json!({"attestation_report": report_to_json(&r), "cert_chain": null}));
            // Every entry form the one-pass decoder reads itself.
            seeds.push(json!({
                "attestation_report": report_to_json(&r),
                "cert_chain": [
                    {"cert_type": "VCEK", "data": [48, 130, 1, 0, 255]},
                    {"cert_type": {"OTHER": "00000000-0000-0000-0000-000000000000"}, "data": "PEM"},
                    {"cert_type": "CRL", "data": [], "extra": {"ignored": [1, 2]}},
                ],
                "extra": [null, {"x": 1}],
            }));
        }
    }
    let budget = budget();
    let started = Instant::now();
    let mut n = 0u32;
    while n < 100_000 && started.elapsed() < budget {
        let mut v = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            mutate_json(&mut rng, &mut v);
        }
        let text = serde_json::to_vec(&v).unwrap_or_default();
        assert_decoders_agree(&text);
        if let Some(r) = v.get("attestation_report") {
            if let Ok(rep) = report_from_json(r) {
                assert_eq!(rep.raw.len(), REPORT_LEN);
                let _ = claims(&rep);
            }
        }
        if n.is_multiple_of(8) {
            let mutated = mutate_bytes(&mut rng, &text);
            let _ = decode_evidence(&mutated);
            assert_decoders_agree(&mutated);
            let _ = vcek_request(&text);
        }
        n += 1;
    }
    eprintln!("JSON decoder: {n} inputs in {:?}", started.elapsed());
}

#[test]
fn decoders_agree_on_json_the_fuzzer_cannot_produce() {
    let Some(e2e) = e2e_evidence() else {
        return;
    };
    let text = String::from_utf8(e2e).expect("UTF-8 evidence");
    let body = text.trim().trim_start_matches('{');
    let cases = [
        // Repeated keys: the last one counts, for the evidence and for each entry.
        format!(r#"{{"cert_chain": 7, {body}"#),
        format!(r#"{{"cert_chain": null, {body}"#),
        text.replacen(r#""cert_chain""#, r#""cert_chain": null, "cert_chain""#, 1),
        text.replacen(r#""data""#, r#""data": "x", "data""#, 1),
        text.replacen(r#""data""#, r#""data": [1], "data": 3, "ignored""#, 1),
        text.replacen(r#""cert_type""#, r#""cert_type": "ARK", "cert_type""#, 1),
        // Escaped key names and non-byte numbers.
        text.replacen(r#""cert_chain""#, r#""cert\u005fchain""#, 1),
        text.replacen(r#""data""#, r#""d\u0061ta""#, 1),
        text.replacen(r#""data":["#, r#""data":[1.0, "#, 1),
        text.replacen(r#""data":["#, r#""data":[-1, "#, 1),
        text.replacen(r#""data":["#, r#""data":[256, "#, 1),
        text.replacen(r#""data":["#, r#""data":[18446744073709551616, "#, 1),
        text.replacen(r#""data":["#, r#""data":[null, "#, 1),
        // Trailing garbage and a second document.
        format!("{text} x"),
        format!("{text} {{}}"),
    ];
    for case in &cases {
        assert_ne!(case, &text, "every case edits the evidence");
        assert_decoders_agree(case.as_bytes());
    }
    assert!(decode_evidence(cases[1].as_bytes())
        .expect("last cert_chain wins")
        .cert_chain
        .is_some());
    assert!(decode_evidence(cases[2].as_bytes()).is_ok());
}

#[test]
fn fuzz_vek_extension_parser() {
    let mut rng = Rng(0x5EED_0003);
    let mut seeds: Vec<Vec<u8>> = [
        "test-vcek.der",
        "test-vlek.der",
        "test-vcek-invalid-legacy.der",
        "test-vcek-invalid-new.der",
    ]
    .into_iter()
    .filter_map(snp)
    .collect();
    if seeds.is_empty() {
        eprintln!("SKIP: no certificate seeds; fuzzing random bytes only");
        seeds.push((0..1300).map(|_| rng.byte()).collect());
    }
    let report = snp("test-report.bin");
    let milan = anchors("milan");
    let budget = budget();
    let started = Instant::now();
    let mut n = 0u32;
    while n < 100_000 && started.elapsed() < budget {
        let seed = &seeds[rng.below(seeds.len())];
        let mut input = seed.clone();
        // Mostly same-length edits so that the DER framing often survives.
        if rng.below(3) == 0 {
            input = mutate_bytes(&mut rng, &input);
        } else {
            for _ in 0..=rng.below(3) {
                let i = rng.below(input.len().max(1));
                if let Some(b) = input.get_mut(i) {
                    *b = rng.byte();
                }
            }
        }
        let _ = parse_vek_extensions(&input);
        if n.is_multiple_of(400) {
            if let (Some(r), Some(m)) = (&report, &milan) {
                let _ = verify_evidence(r, &[input.clone(), m.clone()], &VerifyOptions::at(NOW));
            }
        }
        n += 1;
    }
    eprintln!("extension parser: {n} inputs in {:?}", started.elapsed());
}
