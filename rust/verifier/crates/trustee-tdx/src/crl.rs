//! Certificate revocation lists of the DCAP collateral (PCK CRL, Root CA
//! CRL): decoding from DER / hex-of-DER / PEM, signature, revocation lookup.

use base64::Engine as _;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode as _;
use x509_cert::name::Name;
use x509_cert::time::Time;

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
    if let Some(der) = hex_der(trimmed) {
        return der;
    }
    Err(format!(
        "CRL is neither DER, hex of DER nor PEM (first byte {:#04x}, {} bytes)",
        input.first().copied().unwrap_or(0),
        input.len()
    ))
}

/// Value of an ASCII hex digit, 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// `None` when `text` is not (non-empty) hex at all, so the caller can try
/// the other encodings; otherwise the decoded bytes or why they are not.
/// One table-driven pass: the PCK CRL is several KB of hex per collateral.
fn hex_der(text: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let digit = |c: &u8| HEX_VALUE.get(usize::from(*c)).copied().unwrap_or(0xff);
    if text.is_empty() || text.iter().any(|c| digit(c) > 0x0f) {
        return None;
    }
    if !text.len().is_multiple_of(2) {
        return Some(Err(format!(
            "hex CRL: odd number of hex digits ({})",
            text.len()
        )));
    }
    Some(Ok(text
        .chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => (digit(hi) << 4) | digit(lo),
            _ => 0,
        })
        .collect()))
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

/// One TLV of `data` as (tag, the whole TLV with its header, rest): the
/// form the `der` decoders of a single field take.
fn next(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, _, rest) = tlv(data)?;
    let whole = data.get(..data.len().checked_sub(rest.len())?)?;
    Some((tag, whole, rest))
}

/// Whether an AlgorithmIdentifier (content of its SEQUENCE) names
/// ecdsa-with-SHA256.
fn is_ecdsa_sha256(alg: &[u8]) -> bool {
    matches!(tlv(alg), Some((0x06, oid, _)) if oid == OID_ECDSA_SHA256.as_bytes())
}

fn time(what: &str, whole: &[u8]) -> Result<i64, String> {
    Time::from_der(whole)
        .map(unix)
        .map_err(|e| format!("DER decode: {what}: {e}"))
}

/// The CRL Number among `crlExtensions` (content of the `[0]` wrapper).
fn crl_number(wrapped: &[u8]) -> Result<Option<u64>, String> {
    let Some((0x30, mut exts, [])) = tlv(wrapped) else {
        return Err("DER decode: crlExtensions is not one SEQUENCE".into());
    };
    let mut number = None;
    while !exts.is_empty() {
        let Some((0x30, ext, rest)) = tlv(exts) else {
            return Err("DER decode: a CRL extension is not a SEQUENCE".into());
        };
        exts = rest;
        let Some((0x06, oid, mut fields)) = tlv(ext) else {
            return Err("DER decode: a CRL extension has no OID".into());
        };
        // Optional `critical` BOOLEAN before the OCTET STRING value.
        if let Some((0x01, _, rest)) = tlv(fields) {
            fields = rest;
        }
        let Some((0x04, value, [])) = tlv(fields) else {
            return Err("DER decode: a CRL extension value is not an OCTET STRING".into());
        };
        if oid != OID_CRL_NUMBER.as_bytes() {
            continue;
        }
        let Some((0x02, content, _)) = tlv(value) else {
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
    Ok(number)
}

/// Normalized serials of a `revokedCertificates` SEQUENCE's content.
fn revoked_serials(mut entries: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !entries.is_empty() {
        let Some((0x30, entry, rest)) = tlv(entries) else {
            return Err(format!(
                "DER decode: revoked certificate entry {} is not a SEQUENCE",
                out.len()
            ));
        };
        entries = rest;
        let Some((0x02, serial, _)) = tlv(entry) else {
            return Err(format!(
                "DER decode: revoked certificate entry {} has no INTEGER serial",
                out.len()
            ));
        };
        out.push(normalize_serial(serial).to_vec());
    }
    Ok(out)
}

impl Crl {
    /// Decode a CRL from DER. Only what the appraisal reads is decoded
    /// (issuer, dates, CRL Number, revoked serials, signature); the rest of
    /// the structure is walked for framing only, and is covered by the
    /// signature check anyway.
    pub fn from_der(der: &[u8]) -> Result<Crl, String> {
        let Some((0x30, outer, [])) = tlv(der) else {
            return Err("DER decode: CRL is not one SEQUENCE".into());
        };
        let Some((0x30, mut tbs, rest)) = tlv(outer) else {
            return Err("DER decode: tbsCertList is not a SEQUENCE".into());
        };
        let Some((0x30, outer_alg, rest)) = tlv(rest) else {
            return Err("DER decode: signatureAlgorithm is not a SEQUENCE".into());
        };
        let Some((0x03, bits, [])) = tlv(rest) else {
            return Err("DER decode: signatureValue is not a trailing BIT STRING".into());
        };
        // Only a whole-byte BIT STRING can hold a DER signature.
        let signature = match bits.split_first() {
            Some((0, sig)) => sig.to_vec(),
            _ => Vec::new(),
        };

        if let Some((0x02, _, rest)) = tlv(tbs) {
            tbs = rest;
        }
        let Some((0x30, tbs_alg, rest)) = tlv(tbs) else {
            return Err("DER decode: tbsCertList.signature is not a SEQUENCE".into());
        };
        let Some((0x30, issuer_whole, rest)) = next(rest) else {
            return Err("DER decode: tbsCertList.issuer is not a SEQUENCE".into());
        };
        let issuer =
            Name::from_der(issuer_whole).map_err(|e| format!("DER decode: issuer: {e}"))?;
        let Some((0x17 | 0x18, this_whole, mut rest)) = next(rest) else {
            return Err("DER decode: tbsCertList.thisUpdate is not a Time".into());
        };
        let this_update = time("thisUpdate", this_whole)?;
        let mut next_update = None;
        if let Some((0x17 | 0x18, whole, after)) = next(rest) {
            next_update = Some(time("nextUpdate", whole)?);
            rest = after;
        }
        let mut revoked = Vec::new();
        if let Some((0x30, entries, after)) = tlv(rest) {
            revoked = revoked_serials(entries)?;
            rest = after;
        }
        let mut number = None;
        if let Some((0xa0, exts, after)) = tlv(rest) {
            number = crl_number(exts)?;
            rest = after;
        }
        if !rest.is_empty() {
            return Err(format!(
                "DER decode: {} unexpected trailing bytes in tbsCertList",
                rest.len()
            ));
        }
        Ok(Crl {
            der: der.to_vec(),
            issuer,
            this_update,
            next_update,
            number,
            revoked,
            signature,
            algorithm_ok: is_ecdsa_sha256(outer_alg) && is_ecdsa_sha256(tbs_alg),
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
        let e = crl_der_from_any(b"300").unwrap_err();
        assert!(e.contains("odd number of hex digits (3)"), "{e}");
        assert_eq!(crl_der_from_any(b"aBcD").unwrap(), vec![0xab, 0xcd]);
    }

    #[test]
    fn framing_errors_name_the_field() {
        // SEQUENCE { SEQUENCE {}, SEQUENCE {}, BIT STRING } with an empty TBS.
        let e = Crl::from_der(&[0x30, 0x07, 0x30, 0x00, 0x30, 0x00, 0x03, 0x01, 0x00]).unwrap_err();
        assert!(e.contains("tbsCertList.signature"), "{e}");
        let e = Crl::from_der(&[0x30, 0x04, 0x30, 0x00, 0x30, 0x00]).unwrap_err();
        assert!(e.contains("signatureValue"), "{e}");
    }
}
