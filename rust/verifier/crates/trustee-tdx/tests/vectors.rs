//! Tests against the shared upstream vectors (read in place: `TRUSTEE_VECTORS_DIR`,
//! else the `shared` folder beside the repository). Each test returns with a
//! message when the vectors folder is absent (a panic under `CI=true`).

use serde_json::Value;
use trustee_tdx::{claims, parse_quote, verify_signatures, ParseError, VerifyError};

/// Golden keys not produced by this crate:
/// * `uefi_event_logs` — parsed CC event log (CCEL_data), out of scope here.
const EXCLUDED_GOLDEN_KEYS: &[&str] = &["uefi_event_logs"];

const TEST_DATA: &str = "trustee/deps/verifier/test_data";

fn read(name: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(&format!("{TEST_DATA}/{name}"))
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
    // QE report data: bytes 32..64 are zero (the binding layout).
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
    let Some(root) = read_root() else { return };
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
                let now = (rng.below(2) == 0).then(|| rng.next() as i64);
                let _ = verify_signatures(&p, &[sha(&root)], now);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Offline signature checks (verify_signatures)
// ---------------------------------------------------------------------------

const QUOTES: [&str; 3] = ["tdx_quote_4.dat", "tdx_quote_5.dat", "tdx_quote_6.dat"];

/// The pinned Intel SGX Root CA (dcap-qvl/TrustedRootCA.der).
fn read_root() -> Option<Vec<u8>> {
    trustee_testvectors::read("dcap-qvl/TrustedRootCA.der")
}

/// SHA-256 fingerprint of a root certificate DER.
fn sha(der: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(der).into()
}

/// Verify `m` (a mutated quote that must still parse) against `root`.
fn verify_bytes(m: &[u8], root: &[u8]) -> Result<trustee_tdx::SignatureReport, VerifyError> {
    let p = parse_quote(m).expect("mutated quote still parses");
    verify_signatures(&p, &[sha(root)], None)
}

#[test]
fn quotes_verify_offline() {
    let Some(root) = read_root() else { return };
    use sha2::Digest as _;
    let fp = hex::encode(sha2::Sha256::digest(&root));
    assert!(fp.starts_with("44a0196b") && fp.ends_with("b674d3"), "{fp}");
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        assert_eq!(p.signed_bytes(), &q[..p.signed_len], "{name}");
        let r =
            verify_signatures(&p, &[sha(&root)], None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.chain_len, 3);
        assert_eq!(hex::encode(r.root_sha256), fp);
        assert_eq!(r.validity_checked_at, None);
        assert!(r.chain_not_before < r.chain_not_after, "{name}");
        let leaf = trustee_tdx::pem_certificates(&p.signature.pck_cert_chain)
            .into_iter()
            .next()
            .unwrap();
        assert_eq!(r.pck_leaf_der, leaf);

        // Validity window (inclusive bounds).
        for now in [
            r.chain_not_before,
            r.chain_not_before + 3600,
            r.chain_not_after,
        ] {
            let ok = verify_signatures(&p, &[sha(&root)], Some(now)).unwrap();
            assert_eq!(ok.validity_checked_at, Some(now));
        }
        for now in [
            r.chain_not_before - 1,
            r.chain_not_after + 1,
            i64::MIN,
            i64::MAX,
        ] {
            let e = verify_signatures(&p, &[sha(&root)], Some(now)).unwrap_err();
            assert!(
                matches!(e, VerifyError::CertificateValidity { .. }),
                "{name} {now}: {e}"
            );
        }
    }
}

#[test]
fn flipped_signed_bytes_fail_quote_signature() {
    let Some(root) = read_root() else { return };
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        let body_start = if p.body_descriptor.is_some() { 54 } else { 48 };
        // Header user_data, every body field region, and the last signed byte.
        let mut offsets = vec![28, 47, body_start, p.signed_len - 1];
        for _ in 0..24 {
            offsets.push(body_start + rng.below(p.signed_len - body_start));
        }
        for off in offsets {
            let mut m = q.clone();
            m[off] ^= rng.nonzero_byte();
            let e = verify_bytes(&m, &root).unwrap_err();
            assert!(
                matches!(e, VerifyError::QuoteSignature(_)),
                "{name} @{off}: {e}"
            );
            assert!(e.to_string().contains("quote signature"), "{e}");
        }
        // The quote signature itself.
        let sd = p.signed_len + 4;
        for off in [sd, sd + 31, sd + 32, sd + 63] {
            let mut m = q.clone();
            m[off] ^= 0x01;
            let e = verify_bytes(&m, &root).unwrap_err();
            assert!(matches!(e, VerifyError::QuoteSignature(_)), "{name}: {e}");
        }
    }
}

#[test]
fn flipped_qe_report_fails_qe_report_signature() {
    let Some(root) = read_root() else { return };
    let mut rng = Rng(0x5555_aaaa_1234_4321);
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        let qe = p.signed_len + 4 + 134;
        let mut offsets = vec![qe, qe + 320, qe + 383, qe + 384, qe + 447];
        for _ in 0..16 {
            offsets.push(qe + rng.below(384 + 64));
        }
        for off in offsets {
            let mut m = q.clone();
            m[off] ^= rng.nonzero_byte();
            let e = verify_bytes(&m, &root).unwrap_err();
            assert!(
                matches!(e, VerifyError::QeReportSignature(_)),
                "{name} @{off}: {e}"
            );
            assert!(e.to_string().contains("QE report signature"), "{e}");
        }
    }
}

#[test]
fn flipped_auth_data_or_attestation_key_fails_binding() {
    let Some(root) = read_root() else { return };
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        let sd = p.signed_len + 4;
        let n = p.signature.qe_auth_data.len();
        assert!(n > 0);
        // QE auth data, then the attestation key (both hashed into the binding).
        for off in [sd + 584, sd + 584 + n - 1, sd + 64, sd + 127] {
            let mut m = q.clone();
            m[off] ^= 0x80;
            let e = verify_bytes(&m, &root).unwrap_err();
            assert!(
                matches!(e, VerifyError::QeReportDataBinding(_)),
                "{name} @{off}: {e}"
            );
            assert!(e.to_string().contains("binding"), "{e}");
        }
    }
}

/// DER length header of the TLV at the start of `b`: (header length, content length).
fn der_header(b: &[u8]) -> (usize, usize) {
    let l0 = b[1] as usize;
    if l0 < 0x80 {
        (2, l0)
    } else {
        let n = l0 & 0x7f;
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | x as usize);
        (2 + n, len)
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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

/// A self-signed certificate with the Intel root's names and validity but our
/// own P-256 key (re-signed with it).
fn self_made_root(intel_root: &[u8]) -> Vec<u8> {
    use p256::ecdsa::{signature::Signer as _, Signature, SigningKey};
    let sk = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let pk = sk.verifying_key().to_encoded_point(false);
    let (h, _) = der_header(intel_root);
    let outer = &intel_root[h..];
    let (th, tl) = der_header(outer);
    let mut tbs = outer[..th + tl].to_vec();
    let rest = &outer[th + tl..];
    let (ah, al) = der_header(rest);
    let alg = &rest[..ah + al];
    let intel_key =
        hex::decode("040ba9c4c0c0c86193a3fe23d6b02cda10a8bbd4e88e48b4458561a36e705525f567918e2edc88e40d860bd0cc4ee26aacc988e505a953558c453f6b0904ae7394").unwrap();
    let pos = tbs
        .windows(65)
        .position(|w| w == intel_key.as_slice())
        .expect("Intel root key in TBS");
    tbs[pos..pos + 65].copy_from_slice(pk.as_bytes());
    let sig: Signature = sk.sign(&tbs);
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.to_der().as_bytes());
    let mut content = tbs;
    content.extend_from_slice(alg);
    content.extend_from_slice(&der_tlv(0x03, &bits));
    der_tlv(0x30, &content)
}

fn pem(ders: &[Vec<u8>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut s = String::new();
    for d in ders {
        s.push_str("-----BEGIN CERTIFICATE-----\n");
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(d));
        s.push_str("\n-----END CERTIFICATE-----\n");
    }
    let mut v = s.into_bytes();
    v.push(0);
    v
}

#[test]
fn other_roots_fail_chain() {
    let Some(root) = read_root() else { return };
    let fake = self_made_root(&root);
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        let certs = trustee_tdx::pem_certificates(&p.signature.pck_cert_chain);
        assert_eq!(certs.len(), 3);
        assert_eq!(certs[2], root, "{name}: chain root is the exact Intel DER");

        // The self-made root is a valid self-signed P-256 certificate...
        let mut own = p.clone();
        own.signature.pck_cert_chain = pem(std::slice::from_ref(&fake));
        let e = verify_signatures(&own, &[sha(&fake)], None).unwrap_err();
        assert!(matches!(e, VerifyError::ChainStructure(_)), "{e}");

        // ...but the quote's chain does not end in it.
        for other in [&fake, &certs[0], &certs[1]] {
            let e = verify_signatures(&p, &[sha(other)], None).unwrap_err();
            assert!(
                matches!(e, VerifyError::UntrustedRoot { .. }),
                "{name}: {e}"
            );
            assert!(e.to_string().contains("chain root"), "{e}");
        }

        // Swapping the self-made root into the chain: the PCK CA is not signed by it.
        let mut swapped = p.clone();
        swapped.signature.pck_cert_chain = pem(&[certs[0].clone(), certs[1].clone(), fake.clone()]);
        let e = verify_signatures(&swapped, &[sha(&fake)], None).unwrap_err();
        assert!(
            matches!(e, VerifyError::ChainSignature { index: 1, .. }),
            "{name}: {e}"
        );

        // Chain shape errors (leaf and PCK CA alone get the built-in root: not one).
        for chain in [
            vec![certs[0].clone()],
            vec![certs[1].clone(), root.clone()],
            vec![
                certs[0].clone(),
                certs[1].clone(),
                root.clone(),
                root.clone(),
            ],
        ] {
            let mut m = p.clone();
            m.signature.pck_cert_chain = pem(&chain);
            let e = verify_signatures(&m, &[sha(&root)], None).unwrap_err();
            assert!(matches!(e, VerifyError::ChainStructure(_)), "{name}: {e}");
        }
        // Wrong order: issuer/subject chaining fails.
        let mut m = p.clone();
        m.signature.pck_cert_chain = pem(&[certs[1].clone(), certs[0].clone(), root.clone()]);
        let e = verify_signatures(&m, &[sha(&root)], None).unwrap_err();
        assert!(matches!(e, VerifyError::ChainStructure(_)), "{name}: {e}");

        // A leaf signed by someone else (its signature bytes altered).
        let mut leaf = certs[0].clone();
        let n = leaf.len();
        leaf[n - 5] ^= 0x01;
        let mut m = p.clone();
        m.signature.pck_cert_chain = pem(&[leaf, certs[1].clone(), root.clone()]);
        let e = verify_signatures(&m, &[sha(&root)], None).unwrap_err();
        assert!(
            matches!(
                e,
                VerifyError::ChainSignature { index: 0, .. } | VerifyError::ChainStructure(_)
            ),
            "{name}: {e}"
        );
    }
    // No trusted fingerprint, or the Intel one with a bit flipped.
    let Some(q) = read("tdx_quote_4.dat") else {
        return;
    };
    let p = parse_quote(&q).unwrap();
    let mut flipped = sha(&root);
    flipped[0] ^= 1;
    for trusted in [&[][..], &[flipped][..]] {
        let e = verify_signatures(&p, trusted, None).unwrap_err();
        assert!(matches!(e, VerifyError::UntrustedRoot { .. }), "{e}");
        assert!(e.to_string().contains(&hex::encode(sha(&root))), "{e}");
    }
    assert_eq!(sha(&root), trustee_tdx::INTEL_SGX_ROOT_CA_SHA256);
}

#[test]
fn pem_chain_flips_fail_chain_checks() {
    let Some(root) = read_root() else { return };
    let mut rng = Rng(0x1357_9bdf_2468_ace0);
    for name in QUOTES {
        let Some(q) = read(name) else { return };
        let p = parse_quote(&q).unwrap();
        let chain = &p.signature.pck_cert_chain;
        for _ in 0..200 {
            let mut m = p.clone();
            let i = rng.below(chain.len());
            let c = chain[i];
            if !c.is_ascii_alphanumeric() && c != b'+' && c != b'/' {
                continue; // only base64 payload characters
            }
            m.signature.pck_cert_chain[i] = if c == b'A' { b'B' } else { b'A' };
            if let Err(e) = verify_signatures(&m, &[sha(&root)], None) {
                assert!(
                    matches!(
                        e,
                        VerifyError::ChainStructure(_)
                            | VerifyError::ChainSignature { .. }
                            | VerifyError::UntrustedRoot { .. }
                            | VerifyError::QeReportSignature(_)
                    ),
                    "{name} @{i}: {e}"
                );
            } else {
                // Only a flip inside the PEM armour text could be harmless.
                let s = &chain[i.saturating_sub(30)..(i + 30).min(chain.len())];
                assert!(s.contains(&b'-'), "{name}: base64 flip at {i} accepted");
            }
        }
    }
}

#[test]
fn synthetic_quote_fails_without_panic() {
    let Some(root) = read_root() else { return };
    let Some(q) = read("tdx_quote_4.dat") else {
        return;
    };
    let mut p = parse_quote(&q).unwrap();
    p.signature.pck_cert_chain = Vec::new();
    assert!(matches!(
        verify_signatures(&p, &[sha(&root)], None),
        Err(VerifyError::ChainStructure(_))
    ));
    p.signature.pck_cert_chain =
        b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----".to_vec();
    assert!(matches!(
        verify_signatures(&p, &[sha(&root)], None),
        Err(VerifyError::ChainStructure(_))
    ));
}
