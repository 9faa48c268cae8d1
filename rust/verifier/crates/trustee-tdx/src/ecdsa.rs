//! ECDSA-P256-SHA256 verification for every signature the appraisal checks
//! (quote, QE report, X.509 certificates, CRLs, TCB info / QE identity).
//!
//! aws-lc-rs does the curve arithmetic because it is about four times faster
//! than the pure-Rust implementation, and a quote appraisal performs up to
//! a dozen verifications. The library only answers "does not verify", so
//! the encodings are checked here first: each failure then names the exact
//! check (point encoding, r/s range, DER framing) instead of a generic error.

use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// The order n of the P-256 group, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

const DOES_NOT_VERIFY: &str = "ECDSA-P256-SHA256 signature does not verify";

/// A P-256 public key whose SEC1 point is known to lie on the curve.
#[derive(Debug, Clone)]
pub(crate) struct P256Key {
    /// Parsed once so repeated raw-signature checks (the cached PCK leaf key)
    /// skip the point decoding.
    fixed: ParsedPublicKey,
}

impl P256Key {
    /// Accepts only SEC1 point encodings (uncompressed or compressed): the
    /// library would also take a SubjectPublicKeyInfo, which a certificate's
    /// BIT STRING or a quote's attestation key must never be.
    pub(crate) fn from_sec1(sec1: &[u8]) -> Result<P256Key, String> {
        let well_framed = matches!(
            (sec1.first(), sec1.len()),
            (Some(0x04), 65) | (Some(0x02 | 0x03), 33)
        );
        if !well_framed {
            return Err("public key is not a valid P-256 point".into());
        }
        let fixed = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, sec1)
            .map_err(|_| "public key is not a valid P-256 point".to_string())?;
        Ok(P256Key { fixed })
    }

    /// Verify a raw r‖s signature (quote, QE report, collateral JSON).
    pub(crate) fn verify_fixed(&self, msg: &[u8], rs: &[u8; 64]) -> Result<(), String> {
        let (r, s) = rs.split_at(32);
        if !scalar_in_range(r) || !scalar_in_range(s) {
            return Err("r or s is zero or not below the group order".into());
        }
        self.fixed
            .verify_sig(msg, rs)
            .map_err(|_| DOES_NOT_VERIFY.into())
    }

    /// Verify a DER `ECDSA-Sig-Value` (X.509 certificates, CRLs).
    pub(crate) fn verify_der(&self, msg: &[u8], der: &[u8]) -> Result<(), String> {
        // Re-encoding as r||s lets the already parsed key do the work; an
        // ASN.1-form verifier would decode the public point again per call.
        let rs = der_signature_fixed(der).ok_or("signature is not a valid DER ECDSA signature")?;
        self.fixed
            .verify_sig(msg, &rs)
            .map_err(|_| DOES_NOT_VERIFY.into())
    }
}

/// 0 < v < n for a big-endian value of at most 32 bytes.
fn scalar_in_range(v: &[u8]) -> bool {
    let Some(pad) = 32usize.checked_sub(v.len()) else {
        return false;
    };
    let mut full = [0u8; 32];
    if let Some(tail) = full.get_mut(pad..) {
        tail.copy_from_slice(v);
    }
    full.iter().any(|&b| b != 0) && full < ORDER
}

/// One DER TLV with a short or one-byte long length; signatures of P-256
/// never need more.
fn der_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = match len0 {
        0..=0x7f => (usize::from(len0), rest),
        0x81 => {
            let (&l, rest) = rest.split_first()?;
            // Lengths below 0x80 must use the short form in DER.
            if l < 0x80 {
                return None;
            }
            (usize::from(l), rest)
        }
        _ => return None,
    };
    let content = rest.get(..len)?;
    Some((tag, content, rest.get(len..)?))
}

/// A DER INTEGER's content as a scalar in [1, n-1], minimally encoded.
fn der_scalar(content: &[u8]) -> Option<&[u8]> {
    let magnitude = match content {
        [] => return None,
        [0, next, ..] if *next < 0x80 => return None,
        [0, rest @ ..] => rest,
        [first, ..] if *first >= 0x80 => return None,
        all => all,
    };
    scalar_in_range(magnitude).then_some(magnitude)
}

/// SEQUENCE { INTEGER r, INTEGER s } in strict DER with nothing trailing,
/// as the fixed 64-byte r||s form.
fn der_signature_fixed(der: &[u8]) -> Option<[u8; 64]> {
    let Some((0x30, body, [])) = der_tlv(der) else {
        return None;
    };
    let Some((0x02, r, rest)) = der_tlv(body) else {
        return None;
    };
    let Some((0x02, s, [])) = der_tlv(rest) else {
        return None;
    };
    let (r, s) = (der_scalar(r)?, der_scalar(s)?);
    let mut rs = [0u8; 64];
    // der_scalar bounds both magnitudes to 32 bytes, so the offsets exist.
    rs.get_mut(32usize.checked_sub(r.len())?..32)?
        .copy_from_slice(r);
    rs.get_mut(64usize.checked_sub(s.len())?..)?
        .copy_from_slice(s);
    Some(rs)
}

#[cfg(test)]
fn der_signature_ok(der: &[u8]) -> bool {
    der_signature_fixed(der).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_range() {
        assert!(!scalar_in_range(&[0; 32]));
        assert!(scalar_in_range(&[1]));
        assert!(!scalar_in_range(&ORDER));
        let mut below = ORDER;
        below[31] -= 1;
        assert!(scalar_in_range(&below));
        assert!(!scalar_in_range(&[1; 33]));
    }

    #[test]
    fn der_framing() {
        assert!(der_signature_ok(&[0x30, 6, 2, 1, 1, 2, 1, 1]));
        // Trailing byte, non-minimal integer, negative integer, zero.
        assert!(!der_signature_ok(&[0x30, 6, 2, 1, 1, 2, 1, 1, 0]));
        assert!(!der_signature_ok(&[0x30, 7, 2, 2, 0, 1, 2, 1, 1]));
        assert!(!der_signature_ok(&[0x30, 6, 2, 1, 0x80, 2, 1, 1]));
        assert!(!der_signature_ok(&[0x30, 6, 2, 1, 0, 2, 1, 1]));
        assert!(!der_signature_ok(&[0x30, 0x81, 6, 2, 1, 1, 2, 1, 1]));
        assert!(!der_signature_ok(&[]));
    }

    #[test]
    fn key_encodings() {
        assert!(P256Key::from_sec1(&[]).is_err());
        assert!(P256Key::from_sec1(&[4; 65]).is_err());
        assert!(P256Key::from_sec1(&[4; 64]).is_err());
        assert!(P256Key::from_sec1(&[0]).is_err());
    }

    #[test]
    fn agrees_with_an_independent_signer() {
        use p256::ecdsa::signature::Signer as _;
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let point = sk.verifying_key().to_encoded_point(false);
        let key = P256Key::from_sec1(point.as_bytes()).unwrap();
        let compressed = sk.verifying_key().to_encoded_point(true);
        assert!(P256Key::from_sec1(compressed.as_bytes()).is_ok());
        let sig: p256::ecdsa::Signature = sk.sign(b"message");
        let rs: [u8; 64] = sig.to_bytes().into();
        key.verify_fixed(b"message", &rs).unwrap();
        key.verify_der(b"message", sig.to_der().as_bytes()).unwrap();
        let e = key.verify_fixed(b"massage", &rs).unwrap_err();
        assert_eq!(e, DOES_NOT_VERIFY);
        let e = key
            .verify_der(b"massage", sig.to_der().as_bytes())
            .unwrap_err();
        assert_eq!(e, DOES_NOT_VERIFY);
        let mut zero_r = rs;
        zero_r[..32].fill(0);
        let e = key.verify_fixed(b"message", &zero_r).unwrap_err();
        assert!(e.contains("group order"), "{e}");
    }
}
