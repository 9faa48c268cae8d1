use crate::*;

#[test]
fn tcb_roundtrip_layouts() {
    let raw = [1, 2, 3, 4, 5, 6, 7, 8];
    let legacy = TcbVersion::decode(&raw, false);
    assert_eq!(
        (
            legacy.bootloader,
            legacy.tee,
            legacy.snp,
            legacy.microcode,
            legacy.fmc
        ),
        (1, 2, 7, 8, None)
    );
    assert_eq!(legacy.encode(false), [1, 2, 0, 0, 0, 0, 7, 8]);
    let turin = TcbVersion::decode(&raw, true);
    assert_eq!(
        (
            turin.fmc,
            turin.bootloader,
            turin.tee,
            turin.snp,
            turin.microcode
        ),
        (Some(1), 2, 3, 4, 8)
    );
    assert_eq!(turin.encode(true), [1, 2, 3, 4, 0, 0, 0, 8]);
}

#[test]
fn generations() {
    assert_eq!(Generation::from_cpuid(0x19, 0x01), Some(Generation::Milan));
    assert_eq!(Generation::from_cpuid(0x19, 0x11), Some(Generation::Genoa));
    assert_eq!(Generation::from_cpuid(0x19, 0xAF), Some(Generation::Genoa));
    assert_eq!(Generation::from_cpuid(0x19, 0xB0), None);
    assert_eq!(Generation::from_cpuid(0x1A, 0x11), Some(Generation::Turin));
    assert_eq!(Generation::from_cpuid(0x1A, 0x12), None);
}

#[test]
fn synthetic_v5_canonical_encoding() {
    let mut b = vec![0xEEu8; REPORT_LEN];
    b[0..4].copy_from_slice(&5u32.to_le_bytes());
    b[0x188] = 0x1A; // Turin
    b[0x189] = 0x02;
    let r = parse_report(&b).unwrap();
    assert_eq!(r.generation(), Some(Generation::Turin));
    assert_eq!(r.launch_mit_vector, Some(u64::from_le_bytes([0xEE; 8])));
    let c = r.canonical_bytes().unwrap();
    assert_eq!(c.len(), REPORT_LEN);
    assert_eq!(&c[0x4C..0x50], &[0; 4]); // reserved
    assert_eq!(&c[0x18B..0x1A0], &[0; 21]); // reserved
    assert_eq!(&c[0x180..0x188], &[0xEE, 0xEE, 0xEE, 0xEE, 0, 0, 0, 0xEE]);
    assert_eq!(&c[0x1F8..0x208], &[0xEE; 16]);
    assert_eq!(&c[0x208..0x2A0], &[0; 0x98][..]);
    assert_eq!(c[0x1EB], 0);
    // Signature reserved area zeroed, r/s kept.
    assert_eq!(&c[0x2A0..0x330], &[0xEE; 0x90][..]);
    assert!(c[0x330..].iter().all(|&x| x == 0));
    let claims = claims(&r);
    assert_eq!(claims["reported_tcb_bootloader"], 0xEE);
}

#[test]
fn v2_drops_cpuid_and_mitigations() {
    let mut b = vec![0x11u8; REPORT_LEN];
    b[0..4].copy_from_slice(&2u32.to_le_bytes());
    let r = parse_report(&b).unwrap();
    assert_eq!(r.cpuid_fam_id, None);
    assert_eq!(r.launch_mit_vector, None);
    // chip_id[8..] non-zero → legacy layout (sev heuristic: Genoa).
    assert_eq!(r.generation(), Some(Generation::Genoa));
    let c = r.canonical_bytes().unwrap();
    assert_eq!(&c[0x188..0x1A0], &[0; 24]);
    assert_eq!(&c[0x1F8..0x2A0], &[0; 0xA8][..]);
}

#[test]
fn regularize_pads_and_truncates() {
    assert_eq!(regularize(&[1, 2], 4), vec![1, 2, 0, 0]);
    assert_eq!(regularize(&[1, 2, 3, 4, 5], 4), vec![1, 2, 3, 4]);
    assert_eq!(regularize(&[], 2), vec![0, 0]);
}

#[test]
fn test_pki_roles_follow_amd_names() {
    use crate::anchors::role_from_name;
    assert_eq!(
        role_from_name("ARK-Milan", true),
        Some((Generation::Milan, AnchorRole::Ark))
    );
    assert_eq!(
        role_from_name("SEV-Genoa", false),
        Some((Generation::Genoa, AnchorRole::Ask))
    );
    assert_eq!(
        role_from_name("SEV-VLEK-Turin", false),
        Some((Generation::Turin, AnchorRole::Asvk))
    );
    assert_eq!(role_from_name("ARK-Milan", false), None);
    assert_eq!(role_from_name("SEV-Rome", false), None);
    assert_eq!(role_from_name("Some CA", true), None);
}

#[test]
fn memo_is_bounded_oldest_first() {
    let memo = crate::memo::LinkMemo::new(2);
    let keys: Vec<[u8; 32]> = (0u8..3)
        .map(|i| crate::memo::LinkMemo::key(&[i; 32], &[i; 32]))
        .collect();
    for k in &keys {
        memo.insert(*k);
    }
    assert_eq!(memo.len(), 2);
    assert!(!memo.contains(&keys[0]));
    assert!(memo.contains(&keys[1]) && memo.contains(&keys[2]));
    let none = crate::memo::LinkMemo::new(0);
    none.insert(keys[0]);
    assert_eq!(none.len(), 0);
}

#[test]
fn checks_name_their_values() {
    let mut b = vec![0u8; REPORT_LEN];
    b[0..4].copy_from_slice(&3u32.to_le_bytes());
    b[0x30] = 2; // VMPL 2
    b[0x50] = 0xAB;
    let r = parse_report(&b).unwrap();
    let e = check_vmpl(&r, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "VMPL Check Failed: report VMPL is 2, 0 required"
    );
    check_vmpl(&r, true).unwrap();
    check_report_data(&r, &[0xAB]).unwrap();
    let e = check_report_data(&r, &[0xAC]).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("Report Data Mismatch: expected ac00"));
    check_host_data(&r, &[]).unwrap();
    assert!(check_host_data(&r, &[1]).is_err());
}

#[test]
fn evidence_rejects_malformed_shapes() {
    for bad in [
        &b""[..],
        b"[]",
        b"{}",
        b"{\"attestation_report\": 5}",
        b"{\"attestation_report\": [1,2,3]}",
        b"{\"attestation_report\": {}, \"cert_chain\": 3}",
        b"not json at all",
    ] {
        let e = decode_evidence(bad).unwrap_err();
        assert!(
            matches!(e, VerifyError::Evidence(_) | VerifyError::Report(_)),
            "{e}"
        );
    }
}

#[test]
fn one_pass_decoder_takes_the_usual_evidence_shape() {
    let bytes_json = |n: usize| format!("[{}]", vec!["7"; n].join(","));
    let tcb = r#"{"bootloader":1,"tee":2,"snp":3,"microcode":4}"#;
    let fw = r#"{"major":1,"minor":2,"build":3}"#;
    let text = format!(
        r#"{{"attestation_report":{{"version":2,"guest_svn":0,"policy":196608,
        "family_id":{f16},"image_id":{f16},"vmpl":0,"sig_algo":1,"current_tcb":{tcb},
        "plat_info":0,"key_info":0,"report_data":{f64},"measurement":{f48},"host_data":{f32},
        "id_key_digest":{f48},"author_key_digest":{f48},"report_id":{f32},"report_id_ma":{f32},
        "reported_tcb":{tcb},"chip_id":{f64},"committed_tcb":{tcb},"current":{fw},
        "committed":{fw},"launch_tcb":{tcb},"signature":{{"r":{f72},"s":{f72}}}}},
        "cert_chain":[{{"cert_type":"VCEK","data":[1,2,255]}},{{"cert_type":"ARK","data":"PEM"}}]}}"#,
        f16 = bytes_json(16),
        f32 = bytes_json(32),
        f48 = bytes_json(48),
        f64 = bytes_json(64),
        f72 = bytes_json(72),
    );
    let fast = crate::evidence_stream::decode_fast(text.as_bytes()).expect("fast path taken");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(Ok(fast.clone()), decode_evidence_value(&value));
    let chain = fast.cert_chain.expect("chain");
    assert_eq!(chain[0].data, [1, 2, 255]);
    assert_eq!(chain[1].data, b"PEM");
    // A non-byte value leaves the decision (and the message) to the value decoder.
    let bad = text.replace("[1,2,255]", "[1,2,256]");
    assert!(crate::evidence_stream::decode_fast(bad.as_bytes()).is_none());
    let e = decode_evidence(bad.as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains("cert_chain[0].data[2] is not a byte: 256"),
        "{e}"
    );
}

#[test]
fn raw_report_verifies_with_a_vek_given_beside_it() {
    // Azure's HCL report carries the SNP report at offset 0x20 and the VCEK separately.
    let dir = "trustee/deps/verifier";
    let (Some(hcl), Some(vcek)) = (
        trustee_testvectors::read(&format!("{dir}/test_data/az-snp-vtpm/hcl-report.bin")),
        trustee_testvectors::read(&format!("{dir}/test_data/az-snp-vtpm/vcek.pem")),
    ) else {
        return;
    };
    let report = &hcl[0x20..0x20 + REPORT_LEN];
    // AMD's Milan ASK/ARK are built in.
    let anchors: [Vec<u8>; 0] = [];
    let verifier = SnpVerifier::default();
    let opts = VerifyOptions::at(1_750_000_000);
    let verified = verifier
        .verify_report_with_vek(report, &vcek, &anchors, &opts)
        .unwrap();
    assert_eq!(verified.generation, Generation::Milan);
    assert_eq!(verified.vek_source, VekSource::Supplied);
    assert!(matches!(
        verifier.verify_report_with_vek(&report[1..], &vcek, &anchors, &opts),
        Err(VerifyError::Report(ParseError::Length { .. }))
    ));
    let mut tampered = report.to_vec();
    tampered[0x186] = 0; // REPORTED_TCB.SNP
    assert!(matches!(
        verifier.verify_report_with_vek(&tampered, &vcek, &anchors, &opts),
        Err(VerifyError::ReportSignature(_))
    ));
}

#[test]
fn each_embedded_link_is_issued_by_its_ark_and_no_other() {
    let of = |g: Generation, r: AnchorRole| {
        embedded_anchors()
            .iter()
            .find(|a| a.generation == g && a.role == r)
            .map(|a| a.der.as_slice())
            .unwrap()
    };
    for g in [Generation::Milan, Generation::Genoa, Generation::Turin] {
        let ark = of(g, AnchorRole::Ark);
        let ask = of(g, AnchorRole::Ask);
        assert!(verify_issued_by(ark, None).is_ok());
        let info = verify_issued_by(ask, Some(ark)).unwrap();
        assert!(info.common_name.starts_with("SEV-"), "{}", info.common_name);
        // An ASK is not self-signed, and an ARK does not issue another product's ASK.
        assert!(verify_issued_by(ask, None).is_err());
    }
    let milan_ask = of(Generation::Milan, AnchorRole::Ask);
    let genoa_ark = of(Generation::Genoa, AnchorRole::Ark);
    let e = verify_issued_by(milan_ask, Some(genoa_ark)).unwrap_err();
    assert!(e.to_string().contains("issuer name does not match"), "{e}");
    assert!(verify_issued_by(b"not a certificate", None).is_err());
}
