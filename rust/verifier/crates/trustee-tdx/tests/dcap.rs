//! Full DCAP appraisal against the shared vectors, read in place (directory
//! from `TRUSTEE_VECTORS_DIR`, else the `shared/vectors` folder beside the
//! repository). Each test returns with a message when a vector is absent
//! (a panic under `CI=true`).

use serde_json::{json, Value};
use trustee_tdx::{
    collateral_key, parse_rfc3339, verify_quote, Collateral, CollateralParts, DcapError,
    DcapVerifier, PckCaType, TcbStatus, VerifyError, VerifyOptions, INTEL_SGX_ROOT_CA_SHA256,
};

fn read(rel: &str) -> Option<Vec<u8>> {
    trustee_testvectors::read(rel)
}

const TD: &str = "trustee/deps/verifier/test_data";
const QVL_QUOTE: &str = "dcap-qvl/sample/tdx_quote";
const QVL_COLLATERAL: &str = "dcap-qvl/sample/tdx_quote_collateral.json";

fn t(s: &str) -> i64 {
    parse_rfc3339(s).expect("test date")
}

/// dcap-qvl's sample quote and its collateral (JSON form).
fn qvl_sample() -> Option<(Vec<u8>, Collateral)> {
    let q = read(QVL_QUOTE)?;
    let c = Collateral::from_json(&read(QVL_COLLATERAL)?).expect("collateral JSON decodes");
    Some((q, c))
}

/// Quote 6 with upstream's tcbInfo.json / enclaveIdentity.json, and the
/// Intel TCB-signing chain, PCK CRL (+ chain) and root CRL carried by the
/// dcap-qvl collateral.
fn quote6() -> Option<(Vec<u8>, Collateral)> {
    let q = read(&format!("{TD}/tdx_quote_6.dat"))?;
    let tcb = read(&format!("{TD}/tcbInfo.json"))?;
    let qe = read(&format!("{TD}/enclaveIdentity.json"))?;
    let src: Value = serde_json::from_slice(&read(QVL_COLLATERAL)?).unwrap();
    let s = |k: &str| src[k].as_str().unwrap().as_bytes().to_vec();
    let (tchain, qchain, pcrl, pchain, rcrl) = (
        s("tcb_info_issuer_chain"),
        s("qe_identity_issuer_chain"),
        s("pck_crl"),
        s("pck_crl_issuer_chain"),
        s("root_ca_crl"),
    );
    let c = Collateral::from_parts(CollateralParts {
        tcb_info_json: &tcb,
        tcb_info_issuer_chain: &tchain,
        qe_identity_json: &qe,
        qe_identity_issuer_chain: &qchain,
        pck_crl: &pcrl,
        pck_crl_issuer_chain: &pchain,
        root_ca_crl: &rcrl,
    })
    .expect("collateral parts decode");
    Some((q, c))
}

/// Inside both the tcbInfo and the QE identity windows of quote 6's collateral.
const Q6_NOW: &str = "2025-11-01T00:00:00Z";

#[test]
fn quote6_full_dcap_is_out_of_date() {
    let Some((q, c)) = quote6() else { return };
    let v = verify_quote(&q, &c, &VerifyOptions::at(t(Q6_NOW))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.tcb_status, TcbStatus::OutOfDate);
    assert!(v.advisory_ids.is_empty());
    assert_eq!(v.tcb_date, "2018-01-04T00:00:00Z");
    assert_eq!(v.qe_tcb_status, TcbStatus::UpToDate);
    assert_eq!(v.tdx_module_tcb_status, Some(TcbStatus::UpToDate));
    assert_eq!(v.collateral_key.fmspc, "00A06D080000");
    assert_eq!(v.collateral_key.ca, PckCaType::Platform);

    let c = &v.claims;
    assert_eq!(c["tcb_status"], "OutOfDate");
    assert_eq!(c["advisory_ids"], json!([]));
    assert_eq!(c["tcb_date"], "2018-01-04T00:00:00Z");
    assert_eq!(c["tcb_eval_num"], 17);
    assert_eq!(c["sgx_type"], "Scalable with Integrity");
    assert_eq!(c["is_dynamic_platform"], true);
    assert_eq!(c["is_cached_keys"], false);
    assert_eq!(c["is_smt_enabled"], true);
    assert_eq!(
        c["platform_provider_id"],
        "9c81e0b5c22e28a3f29d7b4db52c2049"
    );
    assert_eq!(
        c["platform_instance_id"],
        "99191e4ad7393cd579c4166bbaf5ea02"
    );
    assert_eq!(
        c["root_key_id"],
        "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5dcf58eef31463613de1570d516200993"
    );
    assert_eq!(c["pck_crl_num"], 1);
    assert_eq!(c["root_ca_crl_num"], 1);
    // The only PCK Platform-CA CRL available (dcap-qvl's) expired on
    // 2025-07-19, before this tcbInfo was issued: QVL reports, not rejects.
    assert_eq!(c["earliest_expiration_date"], "2025-07-19T10:00:35Z");
    assert_eq!(c["collateral_expiration_status"], "1");
    assert_eq!(c["latest_issue_date"], "2025-10-28T06:45:09Z");
    assert_eq!(c["tcb_status_current"], "OutOfDate");
    assert!(c["earliest_issue_date"].is_string());
    // Quote claims are kept alongside.
    assert_eq!(
        c["quote"]["body"]["tcb_svn"],
        "05030200000000000000000000000000"
    );
    assert!(c.get("uefi_event_logs").is_none());
}

#[test]
fn qvl_sample_is_up_to_date_within_its_window() {
    let Some((q, c)) = qvl_sample() else { return };
    let now = t("2025-06-19T11:16:03Z"); // tcbInfo issueDate + 1 h
    let v = verify_quote(&q, &c, &VerifyOptions::at(now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.tcb_status, TcbStatus::UpToDate);
    assert!(v.advisory_ids.is_empty());
    assert_eq!(v.qe_tcb_status, TcbStatus::UpToDate);
    assert!(!v.collateral_expired);
    assert_eq!(v.claims["collateral_expiration_status"], "0");
    assert_eq!(v.claims["advisory_ids"], json!([]));
    assert_eq!(v.collateral_key.fmspc, "B0C06F000000");
}

#[test]
fn expired_or_future_collateral_is_a_claim_not_an_error() {
    let Some((q, c)) = qvl_sample() else { return };
    for now in [
        t("2025-07-19T10:16:03Z"), // tcbInfo nextUpdate
        t("2026-01-01T00:00:00Z"),
        t("2025-06-19T10:00:00Z"), // before the QE identity was issued
    ] {
        let v = verify_quote(&q, &c, &VerifyOptions::at(now)).unwrap_or_else(|e| panic!("{e}"));
        assert!(v.collateral_expired, "{now}");
        assert_eq!(v.claims["collateral_expiration_status"], "1");
        assert_eq!(v.tcb_status, TcbStatus::UpToDate);
    }
}

fn expect_err(q: &[u8], c: &Collateral) -> DcapError {
    verify_quote(q, c, &VerifyOptions::at(t("2025-06-19T11:16:03Z")))
        .expect_err("tampered input must fail")
}

#[test]
fn tampered_tcb_info_and_qe_identity_fail_their_signature_checks() {
    let Some((q, c)) = qvl_sample() else { return };
    for i in [0, 10, c.tcb_info.len() / 2, c.tcb_info.len() - 1] {
        let mut m = c.clone();
        m.tcb_info[i] ^= 0x01;
        let e = expect_err(&q, &m);
        assert!(matches!(e, DcapError::TcbInfoSignature(_)), "@{i}: {e}");
        assert!(e.to_string().contains("TCB info signature"), "{e}");
    }
    for i in [0, 31, 32, 63] {
        let mut m = c.clone();
        m.tcb_info_signature[i] ^= 0x01;
        assert!(matches!(expect_err(&q, &m), DcapError::TcbInfoSignature(_)));
        let mut m = c.clone();
        m.qe_identity_signature[i] ^= 0x01;
        assert!(matches!(
            expect_err(&q, &m),
            DcapError::QeIdentitySignature(_)
        ));
    }
    let mut m = c.clone();
    let i = m.qe_identity.len() / 2;
    m.qe_identity[i] ^= 0x01;
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::QeIdentitySignature(_)), "{e}");
}

/// Flip one base64 character inside the `n`-th certificate of a PEM chain.
fn flip_pem(pem: &[u8], n: usize, from_end: usize) -> Vec<u8> {
    let mut out = pem.to_vec();
    let ends: Vec<usize> = pem
        .windows(25)
        .enumerate()
        .filter(|(_, w)| *w == b"-----END CERTIFICATE-----"[..25].as_ref())
        .map(|(i, _)| i)
        .collect();
    let mut i = ends[n] - from_end;
    while !out[i].is_ascii_alphanumeric() {
        i -= 1;
    }
    out[i] = if out[i] == b'A' { b'B' } else { b'A' };
    out
}

#[test]
fn tampered_issuer_chains_fail() {
    let Some((q, c)) = qvl_sample() else { return };
    // A change in the signing certificate's signature, and in the root.
    for (n, back) in [(0, 10), (1, 10), (0, 300)] {
        let mut m = c.clone();
        m.tcb_info_issuer_chain = flip_pem(&c.tcb_info_issuer_chain, n, back);
        let e = expect_err(&q, &m);
        assert!(
            matches!(e, DcapError::TcbInfoIssuerChain(_)),
            "{n}/{back}: {e}"
        );
        let mut m = c.clone();
        m.qe_identity_issuer_chain = flip_pem(&c.qe_identity_issuer_chain, n, back);
        let e = expect_err(&q, &m);
        assert!(
            matches!(e, DcapError::QeIdentityIssuerChain(_)),
            "{n}/{back}: {e}"
        );
        let mut m = c.clone();
        m.pck_crl_issuer_chain = flip_pem(&c.pck_crl_issuer_chain, n, back);
        let e = expect_err(&q, &m);
        assert!(
            matches!(e, DcapError::PckCrlIssuerChain(_)),
            "{n}/{back}: {e}"
        );
    }
    // Only the root: nothing is added, the chain is short.
    let mut m = c.clone();
    m.tcb_info_issuer_chain = without_first_cert(&c.tcb_info_issuer_chain);
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::TcbInfoIssuerChain(_)), "{e}");
    assert!(e.to_string().contains("expected 2 certificates"), "{e}");
}

const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// `pem` without its last certificate.
fn without_last_cert(pem: &[u8]) -> Vec<u8> {
    let ends: Vec<usize> = pem
        .windows(PEM_END.len())
        .enumerate()
        .filter(|(_, w)| *w == PEM_END)
        .map(|(i, _)| i + PEM_END.len())
        .collect();
    pem[..ends[ends.len() - 2]].to_vec()
}

/// `pem` without its first certificate.
fn without_first_cert(pem: &[u8]) -> Vec<u8> {
    let first_end = pem
        .windows(PEM_END.len())
        .position(|w| w == PEM_END)
        .unwrap();
    pem[first_end + PEM_END.len()..].to_vec()
}

#[test]
fn chains_that_stop_below_the_intel_root_use_the_built_in_root() {
    let Some((q, c)) = qvl_sample() else { return };
    let root = trustee_tdx::intel_sgx_root_ca_der().expect("built-in root");
    let mut m = c.clone();
    m.tcb_info_issuer_chain = without_last_cert(&c.tcb_info_issuer_chain);
    m.qe_identity_issuer_chain = without_last_cert(&c.qe_identity_issuer_chain);
    m.pck_crl_issuer_chain = without_last_cert(&c.pck_crl_issuer_chain);
    let now = t("2025-06-19T11:16:03Z");
    let v = verify_quote(&q, &m, &VerifyOptions::at(now)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.tcb_status, TcbStatus::UpToDate);
    // The quote's PCK chain without its root.
    let start = q.windows(10).position(|w| w == b"-----BEGIN").unwrap();
    let end = q
        .windows(PEM_END.len())
        .rposition(|w| w == PEM_END)
        .unwrap()
        + PEM_END.len();
    let pck = &q[start..end];
    let chain = trustee_tdx::verify_pck_chain(&without_last_cert(pck), &[INTEL_SGX_ROOT_CA_SHA256])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(chain.root_der(), root);
    // The built-in root is still only trusted by its fingerprint.
    let e = trustee_tdx::verify_pck_chain(&without_last_cert(pck), &[[1; 32]]).unwrap_err();
    assert!(matches!(e, VerifyError::UntrustedRoot { .. }), "{e}");
}

#[test]
fn tampered_crl_signatures_fail() {
    let Some((q, c)) = qvl_sample() else { return };
    // The last bytes of a CRL are its ECDSA signature's s value.
    let mut m = c.clone();
    let n = m.root_ca_crl.len();
    m.root_ca_crl[n - 3] ^= 0x01;
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::RootCaCrl(_)), "{e}");
    assert!(e.to_string().contains("signature by the root CA"), "{e}");

    let mut m = c.clone();
    let n = m.pck_crl.len();
    m.pck_crl[n - 3] ^= 0x01;
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::PckCrl(_)), "{e}");

    // Without an issuer chain the quote's own PCK CA must have signed it.
    let mut m = c.clone();
    m.pck_crl_issuer_chain.clear();
    let n = m.pck_crl.len();
    m.pck_crl[n - 3] ^= 0x01;
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::PckCrl(_)), "{e}");
    assert!(e.to_string().contains("quote's PCK CA"), "{e}");
    let mut m = c.clone();
    m.pck_crl_issuer_chain.clear();
    verify_quote(&q, &m, &VerifyOptions::at(t("2025-06-19T11:16:03Z"))).expect("valid PCK CRL");

    // A garbage CRL names what is wrong.
    let mut m = c.clone();
    m.root_ca_crl = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    let e = expect_err(&q, &m);
    assert!(matches!(e, DcapError::RootCaCrl(_)), "{e}");
}

#[test]
fn wrong_platform_collateral_fails_fmspc() {
    let (Some(q6), Some((_, c))) = (read(&format!("{TD}/tdx_quote_6.dat")), qvl_sample()) else {
        return;
    };
    let e = verify_quote(&q6, &c, &VerifyOptions::at(t(Q6_NOW))).unwrap_err();
    assert_eq!(
        e,
        DcapError::FmspcMismatch {
            pck: "00A06D080000".into(),
            tcb_info: "B0C06F000000".into()
        }
    );
}

#[test]
fn quote_signature_still_checked() {
    let Some((q, c)) = qvl_sample() else { return };
    let mut m = q.clone();
    m[60] ^= 0x01; // inside the TD report body
    let e = expect_err(&m, &c);
    assert!(
        matches!(e, DcapError::Signature(VerifyError::QuoteSignature(_))),
        "{e}"
    );
    // An unknown root is not trusted even if the caller trusts other roots.
    let opts = VerifyOptions {
        now_unix: t("2025-06-19T11:16:03Z"),
        trusted_roots_sha256: vec![[7; 32]],
    };
    verify_quote(&q, &c, &opts).expect("Intel root stays trusted with extra roots");
}

#[test]
fn collateral_keys() {
    for (path, fmspc) in [
        (format!("{TD}/tdx_quote_6.dat"), "00A06D080000"),
        (format!("{TD}/tdx_quote_4.dat"), "50806F000000"),
        (format!("{TD}/tdx_quote_5.dat"), "90C06F000000"),
        (QVL_QUOTE.to_string(), "B0C06F000000"),
    ] {
        let Some(q) = read(&path) else { return };
        let k = collateral_key(&q).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(k.fmspc, fmspc, "{path}");
        assert_eq!(k.ca, PckCaType::Platform);
        assert_eq!(k.ca.as_str(), "platform");
        assert_eq!(k.pce_id, "0000");
    }
    assert!(matches!(
        collateral_key(b"\x04\x00"),
        Err(DcapError::Parse(_))
    ));
}

#[test]
fn verifier_caches_collateral_and_chain() {
    let Some((q, c)) = quote6() else { return };
    let v = DcapVerifier::new(4);
    let opts = VerifyOptions::at(t(Q6_NOW));
    let first = v.verify_quote(&q, &c, &opts).unwrap();
    let s = v.stats();
    assert_eq!((s.collateral_misses, s.pck_chain_misses), (1, 1));
    assert_eq!((s.collateral_hits, s.pck_chain_hits), (0, 0));
    let second = v.verify_quote(&q, &c, &opts).unwrap();
    let s = v.stats();
    assert_eq!((s.collateral_hits, s.pck_chain_hits), (1, 1));
    assert_eq!((s.collateral_misses, s.pck_chain_misses), (1, 1));
    assert_eq!(first, second);
    assert_eq!(first, verify_quote(&q, &c, &opts).unwrap());

    // Time is judged per call, even on a cache hit.
    let Some((sq, sc)) = qvl_sample() else { return };
    let ok = v
        .verify_quote(&sq, &sc, &VerifyOptions::at(t("2025-06-19T11:16:03Z")))
        .unwrap();
    let late = v
        .verify_quote(&sq, &sc, &VerifyOptions::at(t("2026-01-01T00:00:00Z")))
        .unwrap();
    assert_eq!(ok.claims["collateral_expiration_status"], "0");
    assert_eq!(late.claims["collateral_expiration_status"], "1");
    // A tampered quote fails even though its chain and collateral are cached.
    let mut m = sq.clone();
    m[60] ^= 0x01;
    assert!(v.verify_quote(&m, &sc, &opts).is_err());
    // A different trust set is a different cache entry.
    let before = v.stats();
    let extra = VerifyOptions {
        now_unix: opts.now_unix,
        trusted_roots_sha256: vec![[9; 32]],
    };
    v.verify_quote(&q, &c, &extra).unwrap();
    let after = v.stats();
    assert_eq!(after.collateral_misses, before.collateral_misses + 1);
}

#[test]
fn corrupted_quotes_never_panic() {
    let Some((q, c)) = qvl_sample() else { return };
    let opts = VerifyOptions::at(t("2025-06-19T11:16:03Z"));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..80 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = q.clone();
        let i = (x % m.len() as u64) as usize;
        m[i] ^= (x >> 32) as u8 | 1;
        let _ = verify_quote(&m, &c, &opts);
        let mut mc = c.clone();
        let j = (x >> 8) as usize % mc.tcb_info.len();
        mc.tcb_info[j] ^= 0x20;
        let _ = verify_quote(&q, &mc, &opts);
    }
    let p = trustee_tdx::parse_quote(&q).unwrap();
    let sig_end = p.signed_len + 4 + p.signature_data_len as usize;
    for n in [0, 1, 48, 600, sig_end - 1] {
        assert!(verify_quote(&q[..n], &c, &opts).is_err());
    }
}

#[test]
fn verifier_rechecks_collateral_edited_after_construction() {
    let Some((q, c)) = qvl_sample() else { return };
    let opts = VerifyOptions::at(t("2025-06-19T11:16:03Z"));
    let v = DcapVerifier::new(4);
    v.verify_quote(&q, &c, &opts).unwrap();
    // The edited copy still carries the original construction-time hash.
    let mut m = c.clone();
    let i = m.tcb_info.len() / 2;
    m.tcb_info[i] ^= 0x01;
    let e = v.verify_quote(&q, &m, &opts).unwrap_err();
    assert!(matches!(e, DcapError::TcbInfoSignature(_)), "{e}");
    v.verify_quote(&q, &c, &opts).unwrap();
}

/// The CRL decoder reads only the fields the appraisal needs; a complete
/// X.509 decoding of the real Intel CRLs must agree on every one of them.
#[test]
fn crl_fields_agree_with_a_full_x509_decoding() {
    use x509_cert::der::Decode as _;
    let Some((_, c)) = qvl_sample() else { return };
    for der in [&c.pck_crl, &c.root_ca_crl] {
        let ours = trustee_tdx::Crl::from_der(der).expect("sample CRL decodes");
        let full = x509_cert::crl::CertificateList::from_der(der).expect("full decode");
        let tbs = &full.tbs_cert_list;
        let secs = |t: x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
        assert_eq!(ours.this_update, secs(tbs.this_update));
        assert_eq!(ours.next_update, tbs.next_update.map(secs));
        assert_eq!(ours.issuer_string(), tbs.issuer.to_string());
        let serials: Vec<Vec<u8>> = tbs
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| trustee_tdx::normalize_serial(r.serial_number.as_bytes()).to_vec())
            .collect();
        assert_eq!(ours.revoked, serials);
        assert_eq!(ours.number, Some(1));
    }
}
