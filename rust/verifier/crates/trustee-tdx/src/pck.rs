//! Minimal, bounds-checked extraction from the embedded PCK certificate chain:
//! PEM splitting and the fields of the PCK leaf's SGX extension (Intel's PCK certificate profile).
//! Nothing here verifies certificates.

use base64::Engine as _;

const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// DER body of OID 1.2.840.113741.1.13.1 (Intel SGX extension).
const SGX_EXT_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
/// Sub-OID .6 (PlatformInstanceID) is SGX_EXT_OID followed by 0x06.
const SGX_PIID_LAST: u8 = 0x06;

/// First occurrence of `needle` in `hay`. Scans for the needle's first byte
/// and only then compares, which is what makes splitting a chain cheap: PEM
/// text rarely contains that byte outside the markers.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = hay.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if hay.get(at + 1..)?.starts_with(tail) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn count(mut hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    while let Some(i) = find(hay, needle) {
        n += 1;
        hay = hay.get(i + needle.len()..).unwrap_or(&[]);
    }
    n
}

/// The `CERTIFICATE` blocks of a PEM chain, split in one pass.
pub(crate) struct PemSplit {
    /// Number of `BEGIN CERTIFICATE` markers (with or without an `END`).
    pub(crate) blocks: usize,
    /// DER of every block whose base64 decodes, in order.
    pub(crate) ders: Vec<Vec<u8>>,
}

pub(crate) fn split_pem(chain: &[u8]) -> PemSplit {
    let mut split = PemSplit {
        blocks: 0,
        ders: Vec::with_capacity(3),
    };
    // One scratch buffer for the whitespace-free base64 of every block.
    let mut b64 = Vec::new();
    let mut rest = chain;
    while let Some(b) = find(rest, PEM_BEGIN) {
        let after = rest.get(b + PEM_BEGIN.len()..).unwrap_or(&[]);
        split.blocks += 1;
        let Some(e) = find(after, PEM_END) else {
            split.blocks += count(after, PEM_BEGIN);
            break;
        };
        // A BEGIN inside a block still counts, as a block that fails.
        split.blocks += count(after.get(..e).unwrap_or(&[]), PEM_BEGIN);
        b64.clear();
        b64.extend(
            after
                .get(..e)
                .unwrap_or(&[])
                .iter()
                .copied()
                .filter(|c| !c.is_ascii_whitespace()),
        );
        let mut der = Vec::with_capacity(b64.len() / 4 * 3 + 3);
        if base64::engine::general_purpose::STANDARD
            .decode_vec(&b64, &mut der)
            .is_ok()
        {
            split.ders.push(der);
        }
        rest = after.get(e + PEM_END.len()..).unwrap_or(&[]);
    }
    split
}

/// Decode every `CERTIFICATE` PEM block of `chain` to DER, in order.
/// Blocks whose base64 does not decode are skipped.
pub fn pem_certificates(chain: &[u8]) -> Vec<Vec<u8>> {
    split_pem(chain).ders
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
    platform_instance_id_of_leaf(pem_certificates(chain).first()?)
}

/// [`platform_instance_id`] of an already decoded PCK leaf (DER).
pub(crate) fn platform_instance_id_of_leaf(leaf: &[u8]) -> Option<[u8; 16]> {
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

/// The SGX-extension fields of a PCK leaf that the DCAP appraisal uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtension {
    /// .1 PPID.
    pub ppid: [u8; 16],
    /// .2.1–.2.16 SGX TCB component SVNs.
    pub sgx_tcb_components: [u8; 16],
    /// .2.17 PCE SVN.
    pub pce_svn: u16,
    /// .2.18 CPU SVN.
    pub cpu_svn: [u8; 16],
    /// .3 PCE-ID.
    pub pce_id: [u8; 2],
    /// .4 FMSPC.
    pub fmspc: [u8; 6],
    /// .5 SGX type (0 Standard, 1 Scalable, 2 Scalable with Integrity).
    pub sgx_type: u8,
    /// .6 PlatformInstanceID as carried (not reversed); Platform-CA only.
    pub platform_instance_id: Option<[u8; 16]>,
    /// .7.1 dynamicPlatform.
    pub dynamic_platform: Option<bool>,
    /// .7.2 cachedKeys.
    pub cached_keys: Option<bool>,
    /// .7.3 SMTEnabled.
    pub smt_enabled: Option<bool>,
}

/// Last arc(s) of an OID below the SGX extension OID, e.g. `[2, 17]` for .2.17.
fn sub_arcs(oid: &[u8]) -> Option<&[u8]> {
    let rest = oid.strip_prefix(SGX_EXT_OID)?;
    // Single-byte arcs only (all SGX sub-OIDs are < 128).
    if rest.is_empty() || rest.iter().any(|b| *b >= 0x80) {
        return None;
    }
    Some(rest)
}

/// Unsigned value of a DER INTEGER / ENUMERATED content (at most 8 bytes).
fn uint(content: &[u8]) -> Option<u64> {
    // Negative or empty values are malformed for SVNs and enumerations.
    if content.first().is_none_or(|b| *b >= 0x80) {
        return None;
    }
    let start = content
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(content.len());
    let c = content.get(start..)?;
    if c.len() > 8 {
        return None;
    }
    Some(c.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

fn fixed<const N: usize>(what: &str, tag: u8, content: &[u8]) -> Result<[u8; N], String> {
    if tag != 0x04 {
        return Err(format!(
            "{what}: expected OCTET STRING, found tag {tag:#04x}"
        ));
    }
    content
        .try_into()
        .map_err(|_| format!("{what}: expected {N} bytes, found {}", content.len()))
}

/// Parse the SGX extension of a PCK leaf certificate (DER). Every field the
/// appraisal needs (.1–.5) must be present; .6/.7 are optional.
pub fn pck_extension(leaf_der: &[u8]) -> Result<PckExtension, String> {
    let sgx = sgx_extension(leaf_der)
        .ok_or("PCK leaf has no decodable SGX extension (OID 1.2.840.113741.1.13.1)")?;
    let mut ppid = None;
    let mut comps: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    let mut pce_id = None;
    let mut fmspc = None;
    let mut sgx_type = None;
    let mut piid = None;
    let (mut dynamic_platform, mut cached_keys, mut smt_enabled) = (None, None, None);
    for (tag, item) in children(sgx) {
        if tag != 0x30 {
            continue;
        }
        let mut it = children(item);
        let Some((0x06, oid)) = it.next() else {
            continue;
        };
        let Some((vtag, value)) = it.next() else {
            return Err("SGX extension entry without a value".into());
        };
        match sub_arcs(oid) {
            Some([1]) => ppid = Some(fixed::<16>("PPID", vtag, value)?),
            Some([2]) => {
                if vtag != 0x30 {
                    return Err(format!("TCB: expected SEQUENCE, found tag {vtag:#04x}"));
                }
                for (t, e) in children(value) {
                    if t != 0x30 {
                        continue;
                    }
                    let mut f = children(e);
                    let (Some((0x06, o)), Some((vt, v))) = (f.next(), f.next()) else {
                        continue;
                    };
                    match sub_arcs(o) {
                        Some([2, k @ 1..=16]) => {
                            let n = uint(v)
                                .filter(|_| vt == 0x02)
                                .ok_or_else(|| format!("TCB component {k}: not a small INTEGER"))?;
                            let n = u8::try_from(n)
                                .map_err(|_| format!("TCB component {k}: SVN {n} above 255"))?;
                            if let Some(slot) = comps.get_mut(usize::from(*k) - 1) {
                                *slot = Some(n);
                            }
                        }
                        Some([2, 17]) => {
                            let n = uint(v)
                                .filter(|_| vt == 0x02)
                                .ok_or("PCESVN: not a small INTEGER")?;
                            pce_svn = Some(
                                u16::try_from(n).map_err(|_| format!("PCESVN {n} above 65535"))?,
                            );
                        }
                        Some([2, 18]) => cpu_svn = Some(fixed::<16>("CPUSVN", vt, v)?),
                        _ => {}
                    }
                }
            }
            Some([3]) => pce_id = Some(fixed::<2>("PCE-ID", vtag, value)?),
            Some([4]) => fmspc = Some(fixed::<6>("FMSPC", vtag, value)?),
            Some([5]) => {
                let n = uint(value)
                    .filter(|_| vtag == 0x0a)
                    .ok_or("SGX type: not an ENUMERATED")?;
                sgx_type = Some(u8::try_from(n).map_err(|_| format!("SGX type {n} above 255"))?);
            }
            Some([6]) => piid = Some(fixed::<16>("PlatformInstanceID", vtag, value)?),
            Some([7]) => {
                if vtag != 0x30 {
                    return Err(format!(
                        "configuration: expected SEQUENCE, found tag {vtag:#04x}"
                    ));
                }
                for (t, e) in children(value) {
                    if t != 0x30 {
                        continue;
                    }
                    let mut f = children(e);
                    let (Some((0x06, o)), Some((0x01, [b]))) = (f.next(), f.next()) else {
                        continue;
                    };
                    match sub_arcs(o) {
                        Some([7, 1]) => dynamic_platform = Some(*b != 0),
                        Some([7, 2]) => cached_keys = Some(*b != 0),
                        Some([7, 3]) => smt_enabled = Some(*b != 0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let mut sgx_tcb_components = [0u8; 16];
    for (i, c) in comps.iter().enumerate() {
        let v = c.ok_or_else(|| format!("TCB component {} (.2.{}) missing", i + 1, i + 1))?;
        if let Some(slot) = sgx_tcb_components.get_mut(i) {
            *slot = v;
        }
    }
    Ok(PckExtension {
        ppid: ppid.ok_or("PPID (.1) missing")?,
        sgx_tcb_components,
        pce_svn: pce_svn.ok_or("PCESVN (.2.17) missing")?,
        cpu_svn: cpu_svn.ok_or("CPUSVN (.2.18) missing")?,
        pce_id: pce_id.ok_or("PCE-ID (.3) missing")?,
        fmspc: fmspc.ok_or("FMSPC (.4) missing")?,
        sgx_type: sgx_type.ok_or("SGX type (.5) missing")?,
        platform_instance_id: piid,
        dynamic_platform,
        cached_keys,
        smt_enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_counts_every_begin_marker() {
        let ok = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let s = split_pem(ok);
        assert_eq!((s.blocks, s.ders), (1, vec![vec![0x30, 0]]));
        let mut two = ok.to_vec();
        two.extend_from_slice(b"-----BEGIN CERTIFICATE-----\nMAA=\n");
        let s = split_pem(&two);
        assert_eq!((s.blocks, s.ders.len()), (2, 1));
        let nested = b"-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----";
        let s = split_pem(nested);
        assert_eq!((s.blocks, s.ders.len()), (2, 0));
        assert_eq!(find(b"a-b--c", b"--c"), Some(3));
        assert_eq!(find(b"--", b"---"), None);
        assert_eq!(find(b"abc", b""), None);
    }

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
