//! Appraisal checks on real collateral with one field changed, plus the
//! synthetic-CRL revocation path.

use super::*;
use crate::crl::Crl;
use crate::ecdsa::P256Key;

/// The verifying half of a test signing key, in the form the crate uses.
fn public(k: &p256::ecdsa::SigningKey) -> P256Key {
    P256Key::from_sec1(k.verifying_key().to_encoded_point(false).as_bytes()).unwrap()
}

#[test]
fn trusted_always_has_intel() {
    let o = VerifyOptions {
        now_unix: 0,
        trusted_roots_sha256: vec![[1; 32], INTEL_SGX_ROOT_CA_SHA256],
    };
    let t = o.trusted();
    assert_eq!(t.len(), 2);
    assert!(t.contains(&INTEL_SGX_ROOT_CA_SHA256));
}

// --- appraisal checks on real collateral with one field changed -------

fn vector(rel: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(rel)
}

/// The dcap-qvl sample quote with its verified collateral and PCK chain.
fn fixture() -> Option<(Quote, CheckedPck, CheckedCollateral)> {
    let q = parse_quote(&vector("dcap-qvl/sample/tdx_quote")?).ok()?;
    let c = Collateral::from_json(&vector("dcap-qvl/sample/tdx_quote_collateral.json")?).ok()?;
    let trusted = [INTEL_SGX_ROOT_CA_SHA256];
    let mut seen = SeenSignatures::default();
    let col = check_collateral(&c, DcapTee::Tdx, &trusted, &mut seen).expect("collateral verifies");
    let pck = check_pck(&q.signature, &trusted, &mut seen).expect("PCK chain verifies");
    Some((q, pck, col))
}

const NOW: i64 = 1_750_331_763; // 2025-06-19T11:16:03Z

fn run(
    f: impl FnOnce(&mut Quote, &mut CheckedPck, &mut CheckedCollateral),
) -> Option<Result<Verified, DcapError>> {
    let (mut q, mut p, mut c) = fixture()?;
    f(&mut q, &mut p, &mut c);
    Some(appraise(q, &p, &c, NOW, None).map(|(v, _)| v))
}

#[test]
fn fixture_is_up_to_date() {
    let Some(r) = run(|_, _, _| {}) else { return };
    assert_eq!(r.unwrap().tcb_status, TcbStatus::UpToDate);
}

/// DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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

/// A CRL issued under `issuer` (DER Name), signed by `key`, revoking `serials`.
fn synthetic_crl(issuer: &[u8], key: &p256::ecdsa::SigningKey, serials: &[&[u8]]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    let alg = tlv(
        0x30,
        &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
    );
    let this = tlv(0x17, b"250601000000Z");
    let next = tlv(0x17, b"250701000000Z");
    let mut revoked = Vec::new();
    for s in serials {
        let mut e = tlv(0x02, s);
        e.extend(tlv(0x17, b"250601000000Z"));
        revoked.extend(tlv(0x30, &e));
    }
    let crl_number = tlv(
        0x30,
        &[tlv(0x06, &[0x55, 0x1d, 0x14]), tlv(0x04, &tlv(0x02, &[5]))].concat(),
    );
    let exts = tlv(0xa0, &tlv(0x30, &crl_number));
    let tbs = tlv(
        0x30,
        &[
            tlv(0x02, &[1]),
            alg.clone(),
            issuer.to_vec(),
            this,
            next,
            tlv(0x30, &revoked),
            exts,
        ]
        .concat(),
    );
    let sig: p256::ecdsa::Signature = key.sign(&tbs);
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.to_der().as_bytes());
    tlv(0x30, &[tbs, alg, tlv(0x03, &bits)].concat())
}

#[test]
fn synthetic_crl_signature_and_serial_matching() {
    use x509_cert::der::Encode as _;
    let Some((_, pck, _)) = fixture() else { return };
    let (leaf, ca) = (pck.chain.cert(0).unwrap(), pck.chain.cert(1).unwrap());
    let serial = leaf.tbs_certificate.serial_number.as_bytes();
    let issuer = ca.tbs_certificate.subject.to_der().unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
    let der = synthetic_crl(&issuer, &key, &[&[0x01, 0x02], serial]);
    let crl = Crl::from_der(&der).expect("synthetic CRL decodes");
    assert_eq!(crl.number, Some(5));
    assert!(crl.revokes(serial));
    let mut padded = vec![0u8];
    padded.extend_from_slice(serial);
    assert!(
        crl.revokes(&padded),
        "leading zero bytes do not hide a serial"
    );
    assert!(!crl.revokes(&[0x01, 0x03]));
    assert!(crl.next_update > Some(crl.this_update));
    crl.verify_issued_by(&ca.tbs_certificate.subject, &public(&key))
        .expect("signed by the test key");
    let other = p256::ecdsa::SigningKey::from_slice(&[4u8; 32]).unwrap();
    let e = crl
        .verify_issued_by(&ca.tbs_certificate.subject, &public(&other))
        .unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
    let e = crl
        .verify_issued_by(&leaf.tbs_certificate.subject, &public(&key))
        .unwrap_err();
    assert!(e.contains("CRL issuer"), "{e}");

    // In the appraisal: a PCK CRL listing the leaf revokes it...
    let leaf_hex = hex::encode(serial);
    let Some(r) = run(|_, p, c| {
        c.pck_crl = crl.clone();
        c.pck_crl_signer_der = Some(p.chain.ca_der().to_vec());
    }) else {
        return;
    };
    assert_eq!(
        r.unwrap_err(),
        DcapError::RevokedPckLeaf { serial: leaf_hex }
    );
    // ...but only when the quote's PCK CA signed it.
    let Some(r) = run(|_, _, c| {
        c.pck_crl = crl.clone();
        c.pck_crl_signer_der = None;
    }) else {
        return;
    };
    let e = r.unwrap_err();
    assert!(matches!(e, DcapError::PckCrl(_)), "{e}");
    // A root CA CRL listing the PCK CA revokes it.
    let ca_serial = ca.tbs_certificate.serial_number.as_bytes().to_vec();
    let Some(r) = run(|_, _, c| c.root_crl.revoked.push(normalize(&ca_serial))) else {
        return;
    };
    assert!(matches!(
        r.unwrap_err(),
        DcapError::RevokedByRootCrl {
            certificate: "PCK CA",
            ..
        }
    ));
}

fn normalize(s: &[u8]) -> Vec<u8> {
    crate::crl::normalize_serial(s).to_vec()
}

#[test]
fn each_matching_check_has_its_own_error() {
    type Case = (
        &'static str,
        fn(&mut Quote, &mut CheckedPck, &mut CheckedCollateral),
    );
    let cases: [Case; 11] = [
        ("vendor", |q, _, _| q.header.vendor_id[0] ^= 1),
        ("pce", |_, p, _| p.ext.pce_id[0] ^= 1),
        ("qe-mrsigner", |_, _, c| c.qe_identity.mrsigner[0] ^= 1),
        ("qe-prod", |_, _, c| c.qe_identity.isv_prod_id += 1),
        ("qe-attr", |_, _, c| c.qe_identity.attributes[0] ^= 0x01),
        ("qe-svn", |_, _, c| {
            for l in &mut c.qe_identity.tcb_levels {
                l.isv_svn = 999;
            }
        }),
        ("sgx", |_, _, c| {
            for l in &mut c.tcb_info.tcb_levels {
                l.pce_svn = 999;
            }
        }),
        ("tdx", |_, _, c| {
            for l in &mut c.tcb_info.tcb_levels {
                l.tdx_components[2] = 200;
            }
        }),
        ("module-id", |_, _, c| {
            c.tcb_info.tdx_module_identities.clear()
        }),
        ("module-signer", |_, _, c| {
            for m in &mut c.tcb_info.tdx_module_identities {
                m.mrsigner[0] ^= 1;
            }
        }),
        ("revoked", |_, _, c| {
            for l in &mut c.tcb_info.tcb_levels {
                l.status = TcbStatus::Revoked;
            }
        }),
    ];
    for (name, f) in cases {
        let Some(r) = run(f) else { return };
        let e = r.expect_err(name);
        let ok = match name {
            "vendor" => matches!(e, DcapError::QeVendorId { .. }),
            "pce" => matches!(e, DcapError::PceIdMismatch { .. }),
            "qe-mrsigner" => matches!(
                e,
                DcapError::QeIdentityMismatch {
                    field: "mrsigner",
                    ..
                }
            ),
            "qe-prod" => matches!(
                e,
                DcapError::QeIdentityMismatch {
                    field: "isvprodid",
                    ..
                }
            ),
            "qe-attr" => matches!(
                e,
                DcapError::QeIdentityMismatch {
                    field: "attributes",
                    ..
                }
            ),
            "qe-svn" => matches!(e, DcapError::QeTcbNotSupported { .. }),
            "sgx" => matches!(e, DcapError::NoSgxTcbLevel { .. }),
            "tdx" => matches!(e, DcapError::NoTdxTcbLevel { .. }),
            "module-id" => matches!(e, DcapError::TdxModuleIdentityNotFound { .. }),
            "module-signer" => matches!(
                e,
                DcapError::TdxModuleMismatch {
                    field: "mrsigner",
                    ..
                }
            ),
            "revoked" => matches!(e, DcapError::TcbRevoked { .. }),
            _ => false,
        };
        assert!(ok, "{name}: {e}");
    }
}

#[test]
fn out_of_date_qe_and_module_pull_status_down() {
    let Some(r) = run(|_, _, c| {
        for l in &mut c.qe_identity.tcb_levels {
            l.status = TcbStatus::OutOfDate;
            l.advisory_ids = vec!["INTEL-SA-TEST".into()];
        }
    }) else {
        return;
    };
    let v = r.unwrap();
    assert_eq!(v.tcb_status, TcbStatus::OutOfDate);
    assert_eq!(v.qe_tcb_status, TcbStatus::OutOfDate);
    assert_eq!(v.advisory_ids, vec!["INTEL-SA-TEST".to_string()]);
    let Some(r) = run(|_, _, c| {
        for m in &mut c.tcb_info.tdx_module_identities {
            for l in &mut m.tcb_levels {
                l.status = TcbStatus::OutOfDate;
            }
        }
    }) else {
        return;
    };
    let v = r.unwrap();
    assert_eq!(v.tcb_status, TcbStatus::OutOfDate);
    assert_eq!(v.tdx_module_tcb_status, Some(TcbStatus::OutOfDate));
}

// --- collateral checked on its own, as a bundle is ---------------------

fn sample_collateral() -> Option<Collateral> {
    Collateral::from_json(&vector("dcap-qvl/sample/tdx_quote_collateral.json")?).ok()
}

#[test]
fn collateral_alone_holds_and_spans_every_dated_item() {
    let Some(c) = sample_collateral() else { return };
    let v = check_collateral_alone(&c, DcapTee::Tdx, &VerifyOptions::at(0)).unwrap();
    let info = TcbInfo::parse_for(&c.tcb_info, DcapTee::Tdx).unwrap();
    // The window lies within the TCB info's own and is what an appraisal reports as
    // latest_issue_date / earliest_expiration_date.
    assert!(v.valid_from >= info.issue_date && v.valid_until <= info.next_update);
    assert!(v.valid_from < v.valid_until);
    assert!(v.valid_from <= NOW);
}

#[test]
fn collateral_alone_refuses_each_broken_signature() {
    let Some(good) = sample_collateral() else {
        return;
    };
    let opts = VerifyOptions::at(0);
    let mut c = good.clone();
    let at = c.tcb_info.iter().position(|&b| b == b'U').unwrap();
    c.tcb_info[at] = b'u';
    let e = check_collateral_alone(&c, DcapTee::Tdx, &opts).unwrap_err();
    assert!(matches!(e, DcapError::TcbInfoSignature(_)), "{e}");

    let mut c = good.clone();
    c.qe_identity_signature[0] ^= 1;
    let e = check_collateral_alone(&c, DcapTee::Tdx, &opts).unwrap_err();
    assert!(matches!(e, DcapError::QeIdentitySignature(_)), "{e}");

    let mut c = good.clone();
    let last = c.pck_crl.len() - 1;
    c.pck_crl[last] ^= 1;
    let e = check_collateral_alone(&c, DcapTee::Tdx, &opts).unwrap_err();
    assert!(matches!(e, DcapError::PckCrl(_)), "{e}");

    let mut c = good.clone();
    c.pck_crl_issuer_chain.clear();
    let e = check_collateral_alone(&c, DcapTee::Tdx, &opts).unwrap_err();
    assert!(matches!(e, DcapError::PckCrlIssuerChain(_)), "{e}");

    // TDX collateral is not SGX collateral.
    let e = check_collateral_alone(&good, DcapTee::Sgx, &opts).unwrap_err();
    assert!(matches!(e, DcapError::TcbInfoFormat(_)), "{e}");
}
