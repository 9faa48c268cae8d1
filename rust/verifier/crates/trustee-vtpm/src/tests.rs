use super::*;
use serde_json::Value;

const DIR: &str = "trustee/deps/verifier/test_data";

struct Vector {
    hcl: Vec<u8>,
    message: Vec<u8>,
    signature: TpmSignature,
    pcrs: Vec<[u8; 32]>,
}

fn vector(tee: &str) -> Option<Vector> {
    let hcl = trustee_testvectors::read(&format!("{DIR}/{tee}/hcl-report.bin"))?;
    let quote = trustee_testvectors::read(&format!("{DIR}/{tee}/tpm-quote-v1.json"))?;
    let quote: Value = serde_json::from_slice(&quote).unwrap();
    let hex_field = |k: &str| hex::decode(quote[k].as_str().unwrap()).unwrap();
    let pcrs: Vec<String> = serde_json::from_value(quote["pcrs"].clone()).unwrap();
    Some(Vector {
        hcl,
        message: hex_field("message"),
        signature: TpmSignature::RsaSsa(hex_field("signature")),
        pcrs: pcrs_from_hex(&pcrs).unwrap(),
    })
}

impl Vector {
    fn quote(&self) -> Quote<'_> {
        Quote {
            message: &self.message,
            signature: &self.signature,
            pcrs: &self.pcrs,
        }
    }
}

#[test]
fn snp_hcl_report_binds_its_runtime_claims() {
    let Some(v) = vector("az-snp-vtpm") else {
        return;
    };
    let hcl = HclReport::parse(&v.hcl).unwrap();
    assert_eq!(hcl.hardware(), Hardware::Snp);
    let snp = hcl.hw_report(Hardware::Snp).unwrap();
    assert_eq!(snp.len(), SNP_REPORT_LEN);
    // REPORT_DATA is at 0x50 in the SNP report.
    assert_eq!(hcl.var_data_digest().unwrap(), snp[0x50..0x70]);
    assert_eq!(
        hcl.hw_report(Hardware::Tdx).unwrap_err().to_string(),
        "HCL report is a SNP report, TDX expected"
    );
}

#[test]
fn vector_quotes_verify_with_the_hcl_ak() {
    // The claimed PCR values of these parts are checked on the full evidence (trustee-evidence).
    for tee in ["az-snp-vtpm", "az-tdx-vtpm"] {
        let Some(v) = vector(tee) else {
            return;
        };
        let hcl = HclReport::parse(&v.hcl).unwrap();
        let ak = hcl.runtime_claims().unwrap().ak;
        let attest = v.quote().verify_signature(&ak, "HCLAkPub").unwrap();
        assert_eq!(attest.extra_data, b"challenge");
        let pcrs = attest.check_pcrs(&v.pcrs).unwrap();
        assert_eq!(pcrs.len(), 24);
        assert_eq!(pcrs[0].0, 0);
        assert_eq!(pcrs[23].0, 23);
    }
}

#[test]
fn tampered_vector_parts_fail_each_on_its_own_check() {
    let Some(v) = vector("az-snp-vtpm") else {
        return;
    };
    let hcl = HclReport::parse(&v.hcl).unwrap();
    let ak = hcl.runtime_claims().unwrap().ak;

    let mut sig = v.signature.clone();
    if let TpmSignature::RsaSsa(s) = &mut sig {
        s[0] ^= 1;
    }
    let q = Quote {
        signature: &sig,
        ..v.quote()
    };
    assert_eq!(
        q.verify_signature(&ak, "HCLAkPub").unwrap_err(),
        VtpmError::SignatureInvalid { key: "HCLAkPub" }
    );

    let mut msg = v.message.clone();
    msg[0] = 0;
    let q = Quote {
        message: &msg,
        ..v.quote()
    };
    assert_eq!(
        q.verify_signature(&ak, "HCLAkPub").unwrap_err(),
        VtpmError::QuoteMagic(0x0054_4347)
    );

    let attest = parse_attest(&v.message).unwrap();
    let mut pcrs = v.pcrs.clone();
    pcrs[3][0] ^= 1;
    assert!(matches!(
        attest.check_pcrs(&pcrs).unwrap_err(),
        VtpmError::PcrDigest { .. }
    ));
    assert_eq!(
        attest.check_pcrs(&v.pcrs[..23]).unwrap_err(),
        VtpmError::PcrCount {
            given: 23,
            selected: 24
        }
    );
}

#[test]
fn init_data_is_one_extend_of_pcr8_from_zero() {
    let hash = [7u8; 32];
    let mut zero_then_hash = [0u8; 64];
    zero_then_hash[32..].copy_from_slice(&hash);
    let pcr8: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        zero_then_hash,
    ))
    .into();
    let pcrs = vec![(0, [0u8; 32]), (8, pcr8)];
    check_init_data(&pcrs, &hash).unwrap();
    assert!(matches!(
        check_init_data(&pcrs, &[8u8; 32]).unwrap_err(),
        VtpmError::InitDataMismatch { pcr: 8, .. }
    ));
    assert_eq!(
        check_init_data(&pcrs, &[7u8; 48]).unwrap_err(),
        VtpmError::InitDataLength { pcr: 8, len: 48 }
    );
    assert_eq!(
        check_init_data(&pcrs[..1], &hash).unwrap_err(),
        VtpmError::InitDataPcrMissing { pcr: 8 }
    );
}

#[test]
fn hostile_hcl_reports_are_errors_not_panics() {
    assert!(matches!(
        HclReport::parse(&[0u8; 100]).unwrap_err(),
        VtpmError::HclTooShort { .. }
    ));
    let mut bytes = vec![0u8; 1300];
    bytes[1216 + 8] = 2;
    bytes[1216 + 16..1216 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        HclReport::parse(&bytes).unwrap_err(),
        VtpmError::HclVarDataSize { .. }
    ));
    bytes[1216 + 16..1216 + 20].copy_from_slice(&2u32.to_le_bytes());
    bytes[1236..1238].copy_from_slice(b"{}");
    let hcl = HclReport::parse(&bytes).unwrap();
    assert_eq!(
        hcl.var_data_digest().unwrap_err(),
        VtpmError::HclHashType(0)
    );
    assert!(matches!(
        hcl.runtime_claims().unwrap_err(),
        VtpmError::RuntimeClaims(_)
    ));
    bytes[1216 + 8] = 3;
    assert_eq!(
        HclReport::parse(&bytes).unwrap_err(),
        VtpmError::HclReportType(3)
    );
    assert!(matches!(
        HclReport::parse(&vec![0u8; MAX_HCL_REPORT + 1]).unwrap_err(),
        VtpmError::HclTooLarge { .. }
    ));
}

#[test]
fn truncated_quote_messages_are_errors_not_panics() {
    let Some(v) = vector("az-snp-vtpm") else {
        return;
    };
    for len in 0..v.message.len() {
        assert!(parse_attest(&v.message[..len]).is_err(), "{len}");
    }
    let mut longer = v.message.clone();
    longer.push(0);
    assert!(matches!(
        parse_attest(&longer).unwrap_err(),
        VtpmError::QuoteMessage(_)
    ));
}

#[test]
fn tpmt_signatures_parse_rsassa_and_ecdsa_with_sha256_only() {
    let mut rsa = vec![0x00, 0x14, 0x00, 0x0B, 0x00, 0x03];
    rsa.extend([1, 2, 3]);
    assert_eq!(
        parse_signature(&rsa).unwrap(),
        TpmSignature::RsaSsa(vec![1, 2, 3])
    );
    let ecdsa = [0x00, 0x18, 0x00, 0x0B, 0x00, 0x01, 9, 0x00, 0x01, 8];
    assert_eq!(
        parse_signature(&ecdsa).unwrap(),
        TpmSignature::EcdsaP256 {
            r: vec![9],
            s: vec![8]
        }
    );
    let sha1 = [0x00, 0x14, 0x00, 0x04, 0x00, 0x00];
    assert_eq!(
        parse_signature(&sha1).unwrap_err(),
        VtpmError::SignatureUnsupported {
            alg: 0x14,
            hash: 0x04
        }
    );
    assert!(matches!(
        parse_signature(&rsa[..7]).unwrap_err(),
        VtpmError::SignatureMalformed(_)
    ));
    assert!(matches!(
        AkPublic::from_spki_der(b"not der").unwrap_err(),
        VtpmError::AkPublic(_)
    ));
}
