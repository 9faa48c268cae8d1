//! Collateral an operator brings along (an offline bundle), checked on its own before any
//! evidence uses it, by the same code that checks it during an appraisal.

use trustee_snp::AnchorRole;
use trustee_tdx::{check_collateral_alone, Collateral, DcapTee, VerifyOptions};

/// (valid from, valid until), unix seconds.
pub type Validity = (i64, i64);

/// DCAP collateral in its JSON form (`tcb_info`, `qe_identity`, CRLs, issuer chains) for
/// `tee` (`tdx` or `sgx`): every issuer chain ends in the Intel SGX Root CA or one of
/// `extra_roots` (SHA-256 of a root's DER), every document and CRL is signed by its issuer
/// and no signer is revoked. The error is one line naming the failed check.
pub fn check_dcap_collateral(
    collateral_json: &[u8],
    tee: &str,
    extra_roots: &[[u8; 32]],
) -> Result<Validity, String> {
    let tee = match tee {
        "tdx" => DcapTee::Tdx,
        "sgx" => DcapTee::Sgx,
        other => return Err(format!("unknown DCAP TEE `{other}` (tdx or sgx)")),
    };
    let collateral = Collateral::from_json(collateral_json).map_err(|e| e.to_string())?;
    let options = VerifyOptions {
        now_unix: 0,
        trusted_roots_sha256: extra_roots.to_vec(),
    };
    let v = check_collateral_alone(&collateral, tee, &options).map_err(|e| e.to_string())?;
    Ok((v.valid_from, v.valid_until))
}

/// An SNP vendor certificate (DER): with `issuer`, signed by it (an ASK or ASVK by its ARK,
/// a VCEK by its ASK); without, a self-signed ARK that is AMD's (pinned) or one of
/// `extra_roots`. The error is one line.
pub fn check_snp_certificate(
    cert_der: &[u8],
    issuer_der: Option<&[u8]>,
    extra_roots: &[[u8; 32]],
) -> Result<Validity, String> {
    let info = trustee_snp::verify_issued_by(cert_der, issuer_der).map_err(|e| e.to_string())?;
    if issuer_der.is_none() {
        let fingerprint = trustee_snp::fingerprint(cert_der);
        let amds = matches!(
            trustee_snp::pinned(&fingerprint),
            Some((_, AnchorRole::Ark))
        );
        if !amds && !extra_roots.contains(&fingerprint) {
            return Err(format!(
                "root {:?} (SHA-256 {}) is not a trusted root: not one of AMD's ARKs",
                info.common_name,
                hex::encode(fingerprint)
            ));
        }
    }
    let wide = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
    Ok((wide(info.not_before), wide(info.not_after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(generation: trustee_snp::Generation, role: AnchorRole) -> &'static [u8] {
        trustee_snp::embedded_anchors()
            .iter()
            .find(|a| a.generation == generation && a.role == role)
            .map(|a| a.der.as_slice())
            .unwrap()
    }

    #[test]
    fn amds_ark_is_trusted_and_issues_its_ask() {
        let ark = anchor(trustee_snp::Generation::Genoa, AnchorRole::Ark);
        let ask = anchor(trustee_snp::Generation::Genoa, AnchorRole::Ask);
        let (from, until) = check_snp_certificate(ark, None, &[]).unwrap();
        assert!(from < until);
        assert!(check_snp_certificate(ask, Some(ark), &[]).is_ok());
        // An ASK is not a root, trusted or not.
        let fp = trustee_snp::fingerprint(ask);
        assert!(check_snp_certificate(ask, None, &[fp]).is_err());
    }

    #[test]
    fn an_unknown_tee_is_named() {
        let e = check_dcap_collateral(b"{}", "snp", &[]).unwrap_err();
        assert_eq!(e, "unknown DCAP TEE `snp` (tdx or sgx)");
    }

    #[test]
    fn sample_collateral_holds_under_intels_root_and_junk_is_named() {
        let Some(json) = trustee_testvectors::read("dcap-qvl/sample/tdx_quote_collateral.json")
        else {
            return;
        };
        let (from, until) = check_dcap_collateral(&json, "tdx", &[]).unwrap();
        assert!(from < until);
        let e = check_dcap_collateral(b"[]", "tdx", &[]).unwrap_err();
        assert!(e.starts_with("collateral JSON is not an object"), "{e}");
    }
}
