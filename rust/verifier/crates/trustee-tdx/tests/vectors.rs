//! Tests against the shared upstream vectors (read in place from the `shared`
//! folder beside the repository). Each test skips with a message when the
//! vectors folder is absent.

use std::path::PathBuf;

use serde_json::Value;
use trustee_tdx::{claims, parse_quote, ParseError};

/// Golden keys not produced by this crate:
/// * `uefi_event_logs` — parsed CC event log (CCEL_data), out of scope here.
const EXCLUDED_GOLDEN_KEYS: &[&str] = &["uefi_event_logs"];

fn test_data_dir() -> Option<PathBuf> {
    // crates/trustee-tdx -> crates -> verifier -> rust -> main -> (parent of repo)
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../../../shared/vectors/trustee/deps/verifier/test_data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: shared vectors folder not found at {} (expected the `shared` folder beside the repo)",
            dir.display()
        );
        None
    }
}

fn read(name: &str) -> Option<Vec<u8>> {
    let dir = test_data_dir()?;
    match std::fs::read(dir.join(name)) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("SKIP: cannot read vector {name}: {e}");
            None
        }
    }
}

/// Offsets of every length / type field of a v4 or v5 quote, for corruption tests.
fn length_field_offsets(q: &[u8]) -> Vec<(usize, usize)> {
    let p = parse_quote(q).expect("vector parses");
    let mut v = Vec::new();
    if p.body_descriptor.is_some() {
        v.push((48, 2)); // body type
        v.push((50, 4)); // body size
    }
    let sd = p.signed_len + 4;
    let n = p.signature.qe_auth_data.len();
    v.push((p.signed_len, 4)); // signature data length
    v.push((sd + 128, 2)); // cert data type (6)
    v.push((sd + 130, 4)); // cert data size
    v.push((sd + 582, 2)); // QE auth data size
    v.push((sd + 584 + n, 2)); // inner cert data type (5)
    v.push((sd + 586 + n, 4)); // PCK chain size
    v
}

/// Tiny deterministic PRNG (xorshift64*), no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn nonzero_byte(&mut self) -> u8 {
        (self.next() % 255) as u8 + 1
    }
}

#[test]
fn quote4_parses_v4() {
    let Some(q) = read("tdx_quote_4.dat") else {
        return;
    };
    let p = parse_quote(&q).expect("quote 4 parses");
    assert_eq!(p.header.version, 4);
    assert_eq!(p.header.att_key_type, 2);
    assert_eq!(p.header.tee_type, 0x81);
    assert_eq!(
        hex::encode(p.header.vendor_id),
        "939a7233f79c4ca9940a0db3957f0607"
    );
    assert!(p.body_descriptor.is_none());
    assert!(!p.is_td15());
    assert_eq!(p.signed_len, 632);
    assert_eq!(p.signature_data_len, 4300);
    assert_eq!(p.trailing_len, 0);
    let s = &p.signature;
    assert_eq!(s.cert_data_type, 6);
    assert_eq!(s.cert_data_size, 4166);
    assert_eq!(s.qe_report.raw.len(), 384);
    assert_eq!(s.qe_auth_data.len(), 32);
    assert_eq!(s.pck_cert_chain_type, 5);
    assert_eq!(s.pck_cert_chain.len(), 3678);
    assert_eq!(s.pck_cert_chain.last(), Some(&0));
    assert_eq!(trustee_tdx::pem_certificates(&s.pck_cert_chain).len(), 3);
    let pem = s.pck_cert_chain_pem().expect("utf-8 PEM");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(pem.trim_end().ends_with("-----END CERTIFICATE-----"));
    // QE report data: bytes 32..64 are zero (binding layout, spec §2.1).
    assert!(s.qe_report.report_data[32..].iter().all(|b| *b == 0));
    assert_eq!(
        hex::encode(p.body.tee_tcb_svn),
        "03000500000000000000000000000000"
    );
    let a = p.body.td_attributes_decoded();
    assert!(a.debug && a.septve_disable && !a.perfmon);
}

#[test]
fn quote5_parses_v5_td15() {
    let Some(q) = read("tdx_quote_5.dat") else {
        return;
    };
    let p = parse_quote(&q).expect("quote 5 parses");
    assert_eq!(p.header.version, 5);
    let d = p.body_descriptor.expect("v5 descriptor");
    assert_eq!((d.body_type, d.body_size), (3, 648));
    assert_eq!(p.signed_len, 54 + 648);
    assert_eq!(p.trailing_len, 0);
    assert_eq!(hex::encode(&p.body.tee_tcb_svn[..3]), "050102");
    let ext = p.body.v15.as_ref().expect("TD report 1.5 fields");
    assert!(
        ext.mr_servicetd.iter().any(|b| *b != 0),
        "mr_servicetd non-zero"
    );

    let c = claims(&p);
    assert_eq!(c["quote"]["header"]["version"], "0500");
    assert_eq!(c["quote"]["type"], "0300");
    assert_eq!(c["quote"]["size"], "88020000");
    assert_eq!(
        c["quote"]["body"]["tee_tcb_svn2"],
        hex::encode(ext.tee_tcb_svn2)
    );
    assert_eq!(
        c["quote"]["body"]["mr_servicetd"],
        hex::encode(ext.mr_servicetd)
    );
    assert_eq!(c["quote"]["body"].as_object().unwrap().len(), 17);
    assert!(c["platform_instance_id"].is_string());
}

#[test]
fn quote6_parses_v4_with_padding() {
    let Some(q) = read("tdx_quote_6.dat") else {
        return;
    };
    let p = parse_quote(&q).expect("quote 6 parses");
    assert_eq!(p.header.version, 4);
    assert_eq!(p.trailing_len, 70);
    assert_eq!(hex::encode(&p.body.tee_tcb_svn[..3]), "050302");
    let c = claims(&p);
    assert_eq!(c["td_attributes"]["debug"], false);
    assert_eq!(c["td_attributes"]["septve_disable"], true);
    assert_eq!(c["quote"]["body"]["td_attributes"], "0000001000000000");
    assert!(c["init_data"].as_str().unwrap().starts_with("889abf4718f0"));
    assert!(c["report_data"]
        .as_str()
        .unwrap()
        .ends_with(&"00".repeat(16)));
    assert_eq!(
        c["platform_instance_id"],
        "99191e4ad7393cd579c4166bbaf5ea02"
    );
    assert!(c.get("quote").unwrap().get("type").is_none());
}

#[test]
fn quote4_claims_match_golden() {
    let Some(q) = read("tdx_quote_4.dat") else {
        return;
    };
    let Some(g) = read("parse_tdx_claims_expected.json") else {
        return;
    };
    let mut golden: Value = serde_json::from_slice(&g).expect("golden JSON");
    let obj = golden.as_object_mut().unwrap();
    for k in EXCLUDED_GOLDEN_KEYS {
        assert!(obj.remove(*k).is_some(), "golden has {k}");
    }
    let p = parse_quote(&q).unwrap();
    let c = claims(&p);
    assert_eq!(c, golden);
}

#[test]
fn quote4_every_prefix_is_an_error() {
    let Some(q) = read("tdx_quote_4.dat") else {
        return;
    };
    for n in 0..q.len() {
        let r = parse_quote(&q[..n]);
        assert!(r.is_err(), "prefix of {n} bytes parsed");
    }
    assert!(matches!(
        parse_quote(&q[..100]),
        Err(ParseError::Truncated { .. })
    ));
}

#[test]
fn all_vectors_prefixes_never_panic() {
    for name in ["tdx_quote_5.dat", "tdx_quote_6.dat"] {
        let Some(q) = read(name) else { return };
        let end = parse_quote(&q).unwrap().signed_len + 4 + 4300;
        for n in 0..q.len() {
            let r = parse_quote(&q[..n]);
            assert_eq!(r.is_ok(), n >= end, "{name} prefix {n}");
        }
    }
}

#[test]
fn length_field_flips_are_errors() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for name in ["tdx_quote_4.dat", "tdx_quote_5.dat", "tdx_quote_6.dat"] {
        let Some(q) = read(name) else { return };
        for (off, len) in length_field_offsets(&q) {
            for i in 0..len {
                for _ in 0..32 {
                    let mut m = q.clone();
                    m[off + i] ^= rng.nonzero_byte();
                    assert!(
                        parse_quote(&m).is_err(),
                        "{name}: flip at {} accepted",
                        off + i
                    );
                }
            }
            // Extreme values.
            for fill in [0x00u8, 0xff] {
                let mut m = q.clone();
                m[off..off + len].fill(fill);
                assert!(parse_quote(&m).is_err(), "{name}: {fill:#x} fill at {off}");
            }
        }
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for name in ["tdx_quote_4.dat", "tdx_quote_5.dat", "tdx_quote_6.dat"] {
        let Some(q) = read(name) else { return };
        for _ in 0..3000 {
            let mut m = q.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(m.len());
                m[i] ^= rng.nonzero_byte();
            }
            let cut = if rng.below(4) == 0 {
                rng.below(m.len())
            } else {
                m.len()
            };
            if let Ok(p) = parse_quote(&m[..cut]) {
                let _ = claims(&p);
            }
        }
    }
}
