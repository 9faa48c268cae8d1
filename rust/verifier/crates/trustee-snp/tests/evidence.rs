//! End-to-end verification of SNP evidence against the stored upstream vectors (skipped
//! with a printed reason when the vectors are absent).

mod common;

use base64::Engine as _;
use common::{anchors, e2e_evidence, pem_blocks, snp, NOW};
use serde_json::{json, Value};
use trustee_snp::{
    check_chip_id, check_tcb, fingerprint, parse_report, parse_vek_extensions, pinned,
    vcek_request, verify_evidence, AnchorRole, Generation, LeafKind, SnpVerifier, VekSource,
    VerifyError, VerifyOptions,
};

fn der_of(pem_block: &str) -> Vec<u8> {
    let body: String = pem_block
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .expect("PEM body")
}

fn pem_of(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

fn json_with(evidence: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(evidence).unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn pinned_fingerprints_match_the_vendor_files() {
    for (product, generation) in [
        ("milan", Generation::Milan),
        ("genoa", Generation::Genoa),
        ("turin", Generation::Turin),
    ] {
        let Some(pem) = anchors(product) else { return };
        let blocks = pem_blocks(&pem);
        assert_eq!(blocks.len(), 3);
        // Upstream's files hold ASK, ARK, ASVK in that order.
        for (block, role) in blocks
            .iter()
            .zip([AnchorRole::Ask, AnchorRole::Ark, AnchorRole::Asvk])
        {
            assert_eq!(
                pinned(&fingerprint(&der_of(block))),
                Some((generation, role))
            );
        }
    }
}

#[test]
fn vcek_report_with_milan_anchors_passes() {
    let (Some(report), Some(vcek), Some(milan)) = (
        snp("test-report.bin"),
        snp("test-vcek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let v = verify_evidence(
        &report,
        &[vcek.clone(), milan.clone()],
        &VerifyOptions::at(NOW),
    )
    .expect("test-report.bin verifies");
    // A v2 report has no CPUID: the product is the one whose pinned ASK signed the VCEK.
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.leaf_kind, LeafKind::Vcek);
    assert_eq!(v.vek_source, VekSource::Supplied);
    assert_eq!(v.intermediate.common_name, "SEV-Milan");
    assert_eq!(v.ark.common_name, "ARK-Milan");
    let t = v.reported_tcb;
    assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), (3, 0, 8, 115));
    assert_eq!(v.claims.as_object().unwrap().len(), 16);
    assert_eq!(v.claims["reported_tcb_microcode"], 115);
    assert_eq!(v.extended_claims["vmpl"], 0);
    assert_eq!(v.extended_claims["product"], "Milan");
    // The VCEK as PEM works the same.
    verify_evidence(&report, &[pem_of(&vcek), milan], &VerifyOptions::at(NOW)).expect("PEM VCEK");
}

#[test]
fn vlek_report_needs_nonzero_vmpl_allowed() {
    let (Some(report), Some(vlek), Some(milan)) = (
        snp("test-vlek-report.bin"),
        snp("test-vlek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let certs = [vlek, milan];
    let err = verify_evidence(&report, &certs, &VerifyOptions::at(NOW)).unwrap_err();
    assert_eq!(err, VerifyError::Vmpl { vmpl: 1 });
    assert!(err.to_string().contains("VMPL"), "{err}");
    let opts = VerifyOptions {
        allow_nonzero_vmpl: true,
        ..VerifyOptions::at(NOW)
    };
    let v = verify_evidence(&report, &certs, &opts).expect("VLEK report with VMPL allowed");
    assert_eq!(v.leaf_kind, LeafKind::Vlek);
    assert_eq!(v.generation, Generation::Milan);
    assert_eq!(v.intermediate.common_name, "SEV-VLEK-Milan");
    assert_eq!(v.extended_claims["vmpl"], 1);
    assert_eq!(v.extended_claims["signing_key"], "VLEK");
}

#[test]
fn invalid_vceks_fail_the_chain() {
    let (Some(report), Some(milan)) = (snp("test-report.bin"), anchors("milan")) else {
        return;
    };
    for name in ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"] {
        let Some(vcek) = snp(name) else { return };
        let err =
            verify_evidence(&report, &[vcek, milan.clone()], &VerifyOptions::at(NOW)).unwrap_err();
        assert!(
            matches!(err, VerifyError::InvalidSignature(_)),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("SEV-Milan -> SEV-VCEK"), "{err}");
    }
}

#[test]
fn e2e_evidence_passes_offline_with_genoa_anchors() {
    let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) else {
        return;
    };
    let genoa = vec![genoa];
    let v =
        verify_evidence(&evidence, &genoa, &VerifyOptions::at(NOW)).expect("e2e evidence verifies");
    assert_eq!(v.generation, Generation::Genoa);
    assert_eq!(v.vek_source, VekSource::Evidence);
    assert_eq!(v.leaf_kind, LeafKind::Vcek);
    let c = &v.claims;
    assert_eq!(c.as_object().unwrap().len(), 16);
    assert_eq!(c["policy_abi_major"], 0);
    assert_eq!(c["policy_abi_minor"], 0);
    assert_eq!(c["policy_smt_allowed"], true);
    assert_eq!(c["policy_migrate_ma"], false);
    assert_eq!(c["policy_debug_allowed"], false);
    assert_eq!(c["policy_single_socket"], false);
    assert_eq!(c["reported_tcb_bootloader"], 10);
    assert_eq!(c["reported_tcb_tee"], 0);
    assert_eq!(c["reported_tcb_snp"], 23);
    assert_eq!(c["reported_tcb_microcode"], 25);
    assert_eq!(c["platform_smt_enabled"], true);
    assert_eq!(c["platform_tsme_enabled"], false);
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    assert!(s("measurement").starts_with("6a6519d7") && s("measurement").ends_with("5506e73e"));
    assert!(s("report_data").starts_with("7e732088") && s("report_data").ends_with("150cf9b0"));
    assert_eq!(s("init_data"), "0".repeat(64));
    assert!(s("chip_id").starts_with("371c55d6") && s("chip_id").ends_with("de8718e8"));

    // Report-data binding: the expected value is zero-padded to 64 bytes.
    let rd = hex::decode(s("report_data")).unwrap();
    let opts = VerifyOptions {
        expected_report_data: Some(rd.clone()),
        expected_host_data: Some(vec![]),
        ..VerifyOptions::at(NOW)
    };
    verify_evidence(&evidence, &genoa, &opts).expect("bindings match");
    let mut wrong = rd.clone();
    wrong[0] ^= 1;
    let opts = VerifyOptions {
        expected_report_data: Some(wrong),
        ..VerifyOptions::at(NOW)
    };
    let err = verify_evidence(&evidence, &genoa, &opts).unwrap_err();
    assert!(
        matches!(err, VerifyError::ReportDataMismatch { .. }),
        "{err}"
    );
    let opts = VerifyOptions {
        expected_host_data: Some(vec![1; 32]),
        ..VerifyOptions::at(NOW)
    };
    let err = verify_evidence(&evidence, &genoa, &opts).unwrap_err();
    assert!(matches!(err, VerifyError::HostDataMismatch { .. }), "{err}");

    // The anchors may also come inside the evidence cert_chain (pinned, so accepted).
    let blocks = pem_blocks(&genoa[0]);
    let with_anchors = json_with(&evidence, |v| {
        let chain = v["cert_chain"].as_array_mut().unwrap();
        chain.push(json!({"cert_type": "ASK", "data": der_of(&blocks[0])}));
        chain.push(json!({"cert_type": "ARK", "data": der_of(&blocks[1])}));
        chain.push(json!({"cert_type": "CRL", "data": [1, 2, 3]}));
    });
    verify_evidence(&with_anchors, &[], &VerifyOptions::at(NOW)).expect("anchors in chain");
}

#[test]
fn e2e_evidence_verifies_offline_with_the_built_in_anchors() {
    let Some(evidence) = e2e_evidence() else {
        return;
    };
    // The cert_chain holds only the VCEK; ASK and ARK are the built-in ones.
    let v = verify_evidence(&evidence, &[], &VerifyOptions::at(NOW)).expect("built-in anchors");
    assert_eq!(v.generation, Generation::Genoa);
    assert_eq!(v.vek_source, VekSource::Evidence);
    assert_eq!(v.intermediate.common_name, "SEV-Genoa");
    assert_eq!(v.ark.common_name, "ARK-Genoa");
    // Another product's anchors supplied change nothing.
    if let Some(milan) = anchors("milan") {
        let with_milan = verify_evidence(&evidence, &[milan], &VerifyOptions::at(NOW));
        assert_eq!(with_milan.expect("milan supplied"), v);
    }
    // cert_chain present but without a VEK, and nothing supplied.
    let no_vek = json_with(&evidence, |v| v["cert_chain"] = json!([]));
    let err = verify_evidence(&no_vek, &[], &VerifyOptions::at(NOW)).unwrap_err();
    assert!(matches!(err, VerifyError::MissingVek(_)), "{err}");
}

#[test]
fn a_supplied_ask_that_is_not_pinned_is_refused_despite_built_in_anchors() {
    let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) else {
        return;
    };
    // AMD's Genoa ASK with one signature bit flipped: it parses, but is not AMD's.
    let mut ask = der_of(&pem_blocks(&genoa)[0]);
    let last = ask.len() - 1;
    ask[last] ^= 1;
    for (evidence, certs) in [
        (evidence.clone(), vec![ask.clone()]),
        (
            json_with(&evidence, |v| {
                let chain = v["cert_chain"].as_array_mut().unwrap();
                chain.push(json!({"cert_type": "ASK", "data": ask.clone()}));
            }),
            vec![],
        ),
    ] {
        let err = verify_evidence(&evidence, &certs, &VerifyOptions::at(NOW)).unwrap_err();
        assert!(
            matches!(&err, VerifyError::UntrustedCertificate { role: "ASK", subject, .. } if subject == "SEV-Genoa"),
            "{err}"
        );
    }
}

#[test]
fn flipped_report_bytes_fail_the_signature() {
    let (Some(report), Some(vcek), Some(milan)) = (
        snp("test-report.bin"),
        snp("test-vcek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let certs = [vcek, milan];
    for off in [0x2A, 0x50, 0x90, 0x1A0] {
        let mut bad = report.clone();
        bad[off] ^= 0x01;
        let err = verify_evidence(&bad, &certs, &VerifyOptions::at(NOW)).unwrap_err();
        assert!(
            matches!(err, VerifyError::ReportSignature(_)),
            "flip at {off:#x}: {err}"
        );
    }
    if let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) {
        let bad = json_with(&evidence, |v| {
            let m = &mut v["attestation_report"]["measurement"][0];
            *m = json!(m.as_u64().unwrap() ^ 1);
        });
        let err = verify_evidence(&bad, &[genoa], &VerifyOptions::at(NOW)).unwrap_err();
        assert!(matches!(err, VerifyError::ReportSignature(_)), "{err}");
    }
}

#[test]
fn milan_reports_verify_with_the_built_in_milan_anchors() {
    let genoa = anchors("genoa").unwrap_or_default();
    let supplied = |vek: Vec<u8>| {
        if genoa.is_empty() {
            vec![vek]
        } else {
            vec![vek, genoa.clone()]
        }
    };
    if let (Some(report), Some(vcek)) = (snp("test-report.bin"), snp("test-vcek.der")) {
        let v =
            verify_evidence(&report, &supplied(vcek), &VerifyOptions::at(NOW)).expect("Milan VCEK");
        assert_eq!(v.generation, Generation::Milan);
        assert_eq!(v.intermediate.common_name, "SEV-Milan");
    }
    if let (Some(report), Some(vlek)) = (snp("test-vlek-report.bin"), snp("test-vlek.der")) {
        let opts = VerifyOptions {
            allow_nonzero_vmpl: true,
            ..VerifyOptions::at(NOW)
        };
        let v = verify_evidence(&report, &supplied(vlek), &opts).expect("Milan VLEK");
        assert_eq!(v.intermediate.common_name, "SEV-VLEK-Milan");
        assert_eq!(v.ark.common_name, "ARK-Milan");
    }
}

#[test]
fn expired_and_not_yet_valid_vcek_fail() {
    let (Some(report), Some(vcek), Some(milan)) = (
        snp("test-report.bin"),
        snp("test-vcek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let certs = [vcek, milan];
    // 2031-01-01: after the VCEK's notAfter (2030-01-24).
    let err = verify_evidence(&report, &certs, &VerifyOptions::at(1_924_992_000)).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Expired { subject, .. } if subject == "SEV-VCEK"),
        "{err}"
    );
    // 2022-01-01: before the VCEK's notBefore (2023-01-24).
    let err = verify_evidence(&report, &certs, &VerifyOptions::at(1_640_995_200)).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
}

#[test]
fn chip_id_check_compares_hw_id() {
    let (Some(report), Some(vcek)) = (snp("test-report.bin"), snp("test-vcek.der")) else {
        return;
    };
    let parsed = parse_report(&report).unwrap();
    let ext = parse_vek_extensions(&vcek).unwrap();
    assert_eq!(ext.common_name, "SEV-VCEK");
    check_chip_id(&parsed.chip_id, Generation::Milan, &ext).expect("real chip ID matches");
    let mut other = parsed.chip_id;
    other[17] ^= 0x80;
    let err = check_chip_id(&other, Generation::Milan, &ext).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch { .. }), "{err}");
    // Turin VCEKs carry an 8-byte hwID compared with the first 8 bytes of CHIP_ID.
    let mut turin_ext = ext.clone();
    turin_ext.hw_id = Some(parsed.chip_id[..8].to_vec());
    check_chip_id(&parsed.chip_id, Generation::Turin, &turin_ext).expect("Turin 8-byte hwID");
    assert!(check_chip_id(&parsed.chip_id, Generation::Milan, &turin_ext).is_err());
    turin_ext.hw_id = None;
    assert!(check_chip_id(&parsed.chip_id, Generation::Turin, &turin_ext).is_err());
}

#[test]
fn reported_tcb_above_the_vcek_fails() {
    let (Some(report), Some(vcek)) = (snp("test-report.bin"), snp("test-vcek.der")) else {
        return;
    };
    let ext = parse_vek_extensions(&vcek).unwrap();
    // Milan layout: [0] bootloader, [1] TEE, [6] SNP, [7] microcode.
    for (idx, field) in [(0, "Boot loader"), (1, "TEE"), (6, "SNP"), (7, "Microcode")] {
        let mut bad = report.clone();
        bad[0x180 + idx] += 1;
        let parsed = parse_report(&bad).unwrap();
        let err = check_tcb(&parsed, Generation::Milan, &ext).unwrap_err();
        match &err {
            VerifyError::TcbMismatch {
                field: f,
                certificate,
                report,
            } => {
                assert_eq!(*f, field);
                assert_eq!(*report, certificate + 1);
            }
            other => panic!("expected TcbMismatch, got {other}"),
        }
        assert!(err.to_string().contains("version mismatch"), "{err}");
    }
}

#[test]
fn unpinned_self_signed_ark_is_rejected() {
    let (Some(report), Some(vcek), Some(milan)) = (
        snp("test-report.bin"),
        snp("test-vcek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let blocks = pem_blocks(&milan);
    let ask = der_of(&blocks[0]);
    let mut fake_ark = der_of(&blocks[1]);
    // Change the last signature byte: still a parseable self-issued ARK-Milan, not pinned.
    let last = fake_ark.len() - 1;
    fake_ark[last] ^= 0x01;
    let certs = [vcek.clone(), ask.clone(), fake_ark.clone()];
    let err = verify_evidence(&report, &certs, &VerifyOptions::at(NOW)).unwrap_err();
    assert!(
        matches!(&err, VerifyError::UntrustedCertificate { role: "ARK", subject, .. } if subject == "ARK-Milan"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains(&hex::encode(fingerprint(&fake_ark))));
    // Trusting its fingerprint explicitly (a test PKI) still requires a valid self-signature.
    let opts = VerifyOptions {
        extra_trusted_sha256: vec![fingerprint(&fake_ark)],
        ..VerifyOptions::at(NOW)
    };
    let err = verify_evidence(&report, &certs, &opts).unwrap_err();
    assert!(
        matches!(&err, VerifyError::InvalidSignature(m) if m.contains("ARK-Milan -> ARK-Milan")),
        "{err}"
    );
    // An unpinned ARK inside the evidence cert_chain is rejected the same way.
    if let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) {
        let bad = json_with(&evidence, |v| {
            v["cert_chain"]
                .as_array_mut()
                .unwrap()
                .push(json!({"cert_type": "ARK", "data": fake_ark}));
        });
        let err = verify_evidence(&bad, &[genoa], &VerifyOptions::at(NOW)).unwrap_err();
        assert!(
            matches!(err, VerifyError::UntrustedCertificate { .. }),
            "{err}"
        );
    }
}

#[test]
fn vcek_request_from_evidence() {
    if let Some(evidence) = e2e_evidence() {
        let r = vcek_request(&evidence).expect("request");
        assert_eq!(r.product, Some("Genoa"));
        assert_eq!(r.hw_id_hex.len(), 128);
        assert!(r.hw_id_hex.starts_with("371c55d6"));
        assert_eq!(
            (r.bl, r.tee, r.snp, r.microcode, r.fmc),
            (10, 0, 23, 25, None)
        );
        assert_eq!(
            r.kds_path("Genoa"),
            format!(
                "vcek/v1/Genoa/{}?blSPL=10&teeSPL=00&snpSPL=23&ucodeSPL=25",
                r.hw_id_hex
            )
        );
    }
    if let Some(report) = snp("test-report.bin") {
        let r = vcek_request(&report).expect("v2 request");
        assert_eq!(r.product, None);
        assert_eq!((r.bl, r.tee, r.snp, r.microcode), (3, 0, 8, 115));
    }
    if let Some(report) = snp("test-vlek-report.bin") {
        assert_eq!(vcek_request(&report), Err(VerifyError::MaskedChipId));
    }
}

#[test]
fn memoising_verifier_skips_repeat_chain_work_but_rechecks_time() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SnpVerifier>();
    let (Some(evidence), Some(genoa)) = (e2e_evidence(), anchors("genoa")) else {
        return;
    };
    let verifier = SnpVerifier::new(16);
    let certs = [genoa];
    let first = verifier
        .verify(&evidence, &certs, &VerifyOptions::at(NOW))
        .expect("first");
    // ASK->VCEK only: the links between built-in anchors (ARK self, ARK->ASK) were checked
    // once, when they were loaded, and supplied copies of them are the same certificates.
    assert_eq!(verifier.memo_len(), 1);
    assert_eq!(verifier.parsed_memo_len(), 2); // the evidence's VCEK, the Genoa bundle
    let started = std::time::Instant::now();
    let second = verifier
        .verify(&evidence, &certs, &VerifyOptions::at(NOW))
        .expect("second");
    eprintln!("memoised verification took {:?}", started.elapsed());
    assert_eq!(first, second);
    assert_eq!(verifier.memo_len(), 1);
    // Nothing supplied: the same result from the built-in anchors, no new link.
    let bare = verifier
        .verify(&evidence, &[], &VerifyOptions::at(NOW))
        .expect("built-in anchors");
    assert_eq!(bare, first);
    assert_eq!(verifier.memo_len(), 1);
    assert_eq!(verifier.parsed_memo_len(), 2);
    // 2033: after the e2e VCEK's notAfter (2032-05-27), memo or not.
    let err = verifier
        .verify(&evidence, &certs, &VerifyOptions::at(1_988_150_400))
        .unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");
    // Bounded.
    let tiny = SnpVerifier::new(2);
    tiny.verify(&evidence, &certs, &VerifyOptions::at(NOW))
        .expect("tiny memo");
    assert_eq!(tiny.memo_len(), 1);
    assert_eq!(tiny.parsed_memo_len(), 2);
    // A memoised VEK is still checked against each report: a flipped report byte fails.
    let mut edited: serde_json::Value = serde_json::from_slice(&evidence).unwrap();
    edited["attestation_report"]["guest_svn"] = serde_json::json!(1);
    let err = verifier
        .verify(
            &serde_json::to_vec(&edited).unwrap(),
            &certs,
            &VerifyOptions::at(NOW),
        )
        .unwrap_err();
    assert!(matches!(err, VerifyError::ReportSignature(_)), "{err}");
    let none = SnpVerifier::new(0);
    none.verify(&evidence, &certs, &VerifyOptions::at(NOW))
        .expect("no memo");
    assert_eq!((none.memo_len(), none.parsed_memo_len()), (0, 0));
}

#[test]
fn report_as_byte_array_in_json_and_raw_report() {
    let (Some(report), Some(vcek), Some(milan)) = (
        snp("test-report.bin"),
        snp("test-vcek.der"),
        anchors("milan"),
    ) else {
        return;
    };
    let evidence = serde_json::to_vec(&json!({
        "attestation_report": report,
        "cert_chain": [{"cert_type": "VCEK", "data": vcek}],
    }))
    .unwrap();
    let v = verify_evidence(&evidence, &[milan], &VerifyOptions::at(NOW)).expect("array form");
    assert_eq!(v.vek_source, VekSource::Evidence);
}
