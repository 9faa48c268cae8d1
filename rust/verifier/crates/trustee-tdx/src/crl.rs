//! Certificate revocation lists of the DCAP collateral (PCK CRL, Root CA
//! CRL): decoding from DER / hex-of-DER / PEM, signature, revocation lookup.

use base64::Engine as _;
use x509_cert::crl::CertificateList;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::name::Name;

use crate::ecdsa::P256Key;
use crate::pck::tlv;
use crate::verify::{tbs_bytes, unix};

const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");

/// Turn a CRL as the collateral may carry it (raw DER, hex of the DER, or
/// PEM `X509 CRL`) into DER.
pub fn crl_der_from_any(input: &[u8]) -> Result<Vec<u8>, String> {
    // DER may legitimately end in zero bytes, so it is never trimmed.
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let trimmed = trim_ascii(input);
    if trimmed.starts_with(b"-----BEGIN") {
        let after = trimmed
            .iter()
            .position(|c| *c == b'\n')
            .and_then(|p| trimmed.get(p + 1..))
            .ok_or("PEM CRL has no body")?;
        let end = find(after, b"-----END").ok_or("PEM CRL has no END line")?;
        let body: Vec<u8> = after
            .get(..end)
            .unwrap_or(&[])
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        return base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("PEM CRL base64: {e}"));
    }
    if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(trimmed).map_err(|e| format!("hex CRL: {e}"));
    }
    Err(format!(
        "CRL is neither DER, hex of DER nor PEM (first byte {:#04x}, {} bytes)",
        input.first().copied().unwrap_or(0),
        input.len()
    ))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace() && *c != 0);
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace() && *c != 0);
    match (start, end) {
        (Some(s), Some(e)) => b.get(s..=e).unwrap_or(&[]),
        _ => &[],
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Certificate serial number with leading zero bytes removed, so DER
/// INTEGER encodings of the same value compare equal.
pub fn normalize_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    serial.get(start..).unwrap_or(serial)
}

/// A decoded CRL (signature not yet verified).
#[derive(Debug, Clone)]
pub struct Crl {
    pub(crate) der: Vec<u8>,
    pub(crate) issuer: Name,
    /// thisUpdate, unix seconds.
    pub this_update: i64,
    /// nextUpdate, unix seconds (`None` when absent).
    pub next_update: Option<i64>,
    /// CRL Number extension, when present.
    pub number: Option<u64>,
    /// Normalized serials of the revoked certificates.
    pub revoked: Vec<Vec<u8>>,
    signature: Vec<u8>,
    algorithm_ok: bool,
}

impl Crl {
    /// Decode a CRL from DER.
    pub fn from_der(der: &[u8]) -> Result<Crl, String> {
        let cl = CertificateList::from_der(der).map_err(|e| format!("DER decode: {e}"))?;
        let tbs = &cl.tbs_cert_list;
        let mut number = None;
        for ext in tbs.crl_extensions.iter().flatten() {
            if ext.extn_id == OID_CRL_NUMBER {
                let v = ext.extn_value.as_bytes();
                let Some((0x02, content, _)) = tlv(v) else {
                    return Err("CRL Number extension is not an INTEGER".into());
                };
                if content.first().is_none_or(|b| *b >= 0x80) || content.len() > 9 {
                    return Err(format!(
                        "CRL Number {} is negative or too large",
                        hex::encode(content)
                    ));
                }
                number = Some(
                    normalize_serial(content)
                        .iter()
                        .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
                );
            }
        }
        let revoked = tbs
            .revoked_certificates
            .iter()
            .flatten()
            .map(|r| normalize_serial(r.serial_number.as_bytes()).to_vec())
            .collect();
        Ok(Crl {
            der: der.to_vec(),
            issuer: tbs.issuer.clone(),
            this_update: unix(tbs.this_update),
            next_update: tbs.next_update.map(unix),
            number,
            revoked,
            signature: cl.signature.as_bytes().unwrap_or(&[]).to_vec(),
            algorithm_ok: cl.signature_algorithm.oid == OID_ECDSA_SHA256
                && tbs.signature.oid == OID_ECDSA_SHA256,
        })
    }

    /// The issuer name as RFC 4514 text (for error messages).
    pub fn issuer_string(&self) -> String {
        self.issuer.to_string()
    }

    /// Check the CRL's issuer name and ECDSA-P256-SHA256 signature against
    /// the issuing certificate's subject and key.
    pub(crate) fn verify_issued_by(&self, subject: &Name, key: &P256Key) -> Result<(), String> {
        if &self.issuer != subject {
            return Err(format!(
                "CRL issuer \"{}\" is not the expected issuer \"{}\"",
                self.issuer, subject
            ));
        }
        if !self.algorithm_ok {
            return Err("signature algorithm is not ecdsa-with-SHA256".into());
        }
        let tbs = tbs_bytes(&self.der).ok_or("cannot locate tbsCertList bytes")?;
        key.verify_der(tbs, &self.signature)
    }

    /// Whether `serial` (DER INTEGER content bytes) is listed as revoked.
    pub fn revokes(&self, serial: &[u8]) -> bool {
        let s = normalize_serial(serial);
        self.revoked.iter().any(|r| r.as_slice() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalization() {
        assert_eq!(normalize_serial(&[0, 0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(normalize_serial(&[0]), &[0]);
        assert_eq!(normalize_serial(&[]), &[] as &[u8]);
    }

    #[test]
    fn any_encoding() {
        assert_eq!(crl_der_from_any(b"\x30\x00").unwrap(), vec![0x30, 0]);
        assert_eq!(crl_der_from_any(b" 3000\n").unwrap(), vec![0x30, 0]);
        let pem = b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n";
        assert_eq!(crl_der_from_any(pem).unwrap(), vec![0x30, 0]);
        assert!(crl_der_from_any(b"").is_err());
        assert!(crl_der_from_any(b"zz").is_err());
        assert!(crl_der_from_any(b"-----BEGIN X509 CRL-----").is_err());
        assert!(Crl::from_der(&[0x30, 0]).is_err());
    }
}
