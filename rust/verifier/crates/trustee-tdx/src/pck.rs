//! Minimal, bounds-checked extraction from the embedded PCK certificate chain:
//! PEM splitting and the SGX extension's PlatformInstanceID (spec §2.2).
//! Nothing here verifies certificates.

use base64::Engine as _;

const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// DER body of OID 1.2.840.113741.1.13.1 (Intel SGX extension).
const SGX_EXT_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
/// Sub-OID .6 (PlatformInstanceID) is SGX_EXT_OID followed by 0x06.
const SGX_PIID_LAST: u8 = 0x06;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decode every `CERTIFICATE` PEM block of `chain` to DER, in order.
/// Blocks whose base64 does not decode are skipped.
pub fn pem_certificates(chain: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = chain;
    while let Some(b) = find(rest, PEM_BEGIN) {
        let after = rest.get(b + PEM_BEGIN.len()..).unwrap_or(&[]);
        let Some(e) = find(after, PEM_END) else { break };
        let body: Vec<u8> = after
            .get(..e)
            .unwrap_or(&[])
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&body) {
            out.push(der);
        }
        rest = after.get(e + PEM_END.len()..).unwrap_or(&[]);
    }
    out
}

/// One DER TLV: returns (tag, content, rest). Single-byte tags only,
/// definite lengths up to 4 length bytes.
pub(crate) fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&l0, mut rest) = rest.split_first()?;
    let len = if l0 < 0x80 {
        usize::from(l0)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let lb = rest.get(..n)?;
        rest = rest.get(n..)?;
        lb.iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let content = rest.get(..len)?;
    Some((tag, content, rest.get(len..)?))
}

/// Iterate the TLVs of a constructed value's content.
fn children(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = tlv(data)?;
        data = rest;
        Some((tag, content))
    })
}

/// The content of the Intel SGX extension (OID 1.2.840.113741.1.13.1)
/// of a DER certificate.
fn sgx_extension(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert_der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let (_, exts) = children(tbs).find(|(tag, _)| *tag == 0xa3)?;
    let (0x30, exts, _) = tlv(exts)? else {
        return None;
    };
    for (tag, ext) in children(exts) {
        if tag != 0x30 {
            continue;
        }
        let mut it = children(ext);
        let Some((0x06, oid)) = it.next() else {
            continue;
        };
        if oid != SGX_EXT_OID {
            continue;
        }
        let value = it.find(|(t, _)| *t == 0x04).map(|(_, v)| v)?;
        let (0x30, seq, _) = tlv(value)? else {
            return None;
        };
        return Some(seq);
    }
    None
}

/// PlatformInstanceID of the PCK leaf (first certificate of `chain`), as
/// upstream reports it: the 16 bytes of SGX extension .6, **reversed**.
/// `None` when the leaf has no such field (e.g. Processor-CA PCK certs) or
/// the chain cannot be decoded.
pub fn platform_instance_id(chain: &[u8]) -> Option<[u8; 16]> {
    let certs = pem_certificates(chain);
    let leaf = certs.first()?;
    let sgx = sgx_extension(leaf)?;
    for (tag, item) in children(sgx) {
        if tag != 0x30 {
            continue;
        }
        let mut it = children(item);
        let Some((0x06, oid)) = it.next() else {
            continue;
        };
        let is_piid = oid.len() == SGX_EXT_OID.len() + 1
            && oid.starts_with(SGX_EXT_OID)
            && oid.last() == Some(&SGX_PIID_LAST);
        if !is_piid {
            continue;
        }
        let (0x04, v) = it.next()? else {
            return None;
        };
        let mut out: [u8; 16] = v.try_into().ok()?;
        out.reverse();
        return Some(out);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_does_not_panic() {
        assert_eq!(platform_instance_id(b""), None);
        assert_eq!(platform_instance_id(b"-----BEGIN CERTIFICATE-----"), None);
        assert_eq!(
            platform_instance_id(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
            None
        );
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(tlv(&[0x1f, 0x00]).is_none());
        assert_eq!(
            tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
    }
}
