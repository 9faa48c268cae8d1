//! The Intel SGX Root CA shipped with the crate (`anchors/`, from Intel PCS), so that a PCK
//! chain or a collateral issuer chain that stops just below the root can still be checked.
//!
//! The file is only used when its SHA-256 is [`INTEL_SGX_ROOT_CA_SHA256`] (checked once, on
//! first use); otherwise it is ignored and such chains fail as they would without it. The
//! appended root then goes through the same trusted-fingerprint check as a supplied one.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use x509_cert::der::Decode as _;
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::verify::INTEL_SGX_ROOT_CA_SHA256;

const ROOT_DER: &[u8] =
    include_bytes!("../anchors/Intel_SGX_Provisioning_Certification_RootCA.der");

struct Root {
    der: &'static [u8],
    subject: Name,
}

fn root() -> Option<&'static Root> {
    static ROOT: OnceLock<Option<Root>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let digest: [u8; 32] = Sha256::digest(ROOT_DER).into();
        if digest != INTEL_SGX_ROOT_CA_SHA256 {
            return None;
        }
        let cert = Certificate::from_der(ROOT_DER).ok()?;
        Some(Root {
            der: ROOT_DER,
            subject: cert.tbs_certificate.subject,
        })
    })
    .as_ref()
}

/// DER of the built-in Intel SGX Root CA, if it matches its pinned fingerprint.
pub fn intel_sgx_root_ca_der() -> Option<&'static [u8]> {
    root().map(|r| r.der)
}

/// Complete a chain one certificate short of `expected_len` whose last certificate names
/// the Intel root as its issuer (and is not itself self-issued) with the built-in root.
pub(crate) fn complete_chain(ders: &mut Vec<Vec<u8>>, expected_len: usize) {
    if ders.len().checked_add(1) != Some(expected_len) {
        return;
    }
    let (Some(root), Some(last)) = (root(), ders.last()) else {
        return;
    };
    let Ok(last) = Certificate::from_der(last) else {
        return; // reported by the chain check itself
    };
    let tbs = &last.tbs_certificate;
    if tbs.issuer == root.subject && tbs.subject != tbs.issuer {
        ders.push(root.der.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_root_matches_its_pin() {
        let der = intel_sgx_root_ca_der().expect("shipped root matches INTEL_SGX_ROOT_CA_SHA256");
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(der)),
            INTEL_SGX_ROOT_CA_SHA256
        );
    }
}
