//! UEFI device path nodes to text. Nodes this crate does not know, or whose
//! body does not fit the expected layout, print as `Path(type,subtype,hex)`
//! (upstream's fallback); only a broken node *header* is an error.

use crate::error::DetailsError;

pub(super) fn render_nodes(mut bytes: &[u8]) -> Result<Vec<String>, DetailsError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while !bytes.is_empty() {
        let invalid = |reason: String| DetailsError::Invalid {
            field: "device path node",
            reason: format!("node at device-path offset {offset}: {reason}"),
        };
        if bytes.len() < 4 {
            return Err(invalid(format!(
                "only {} bytes left, a node header is 4",
                bytes.len()
            )));
        }
        let (node_type, sub_type) = (bytes[0], bytes[1]);
        let len = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        if len < 4 {
            return Err(invalid(format!(
                "length field is {len}, below the 4-byte header"
            )));
        }
        if len > bytes.len() {
            return Err(invalid(format!(
                "length field is {len} but only {} bytes remain",
                bytes.len()
            )));
        }
        let body = &bytes[4..len];
        out.push(
            render(node_type, sub_type, body)
                .unwrap_or_else(|| format!("Path({node_type},{sub_type},{})", hex::encode(body))),
        );
        bytes = &bytes[len..];
        offset += len;
    }
    Ok(out)
}

fn render(node_type: u8, sub_type: u8, d: &[u8]) -> Option<String> {
    match (node_type, sub_type) {
        (1, 1) => pci(d),
        (2, 1) => acpi(d),
        (3, 0x05) => usb(d),
        (3, 0x0B) => mac(d),
        (3, 0x0C) => ipv4(d),
        (3, 0x15) => fibre_ex(d),
        (4, 1) => hard_drive(d),
        (4, 3) => vendor_media(d),
        (4, 4) => file_path(d),
        (5, 1) => bbs(d),
        _ => None,
    }
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

fn pci(d: &[u8]) -> Option<String> {
    let (function, device) = (d.first()?, d.get(1)?);
    Some(format!("Pci({function},{device})"))
}

/// `_HID` is a compressed EISA id: three 5-bit letters and a 16-bit product.
fn acpi(d: &[u8]) -> Option<String> {
    let hid = u32_at(d, 0)?;
    let uid = u32_at(d, 4)?;
    let letter = |shift: u32| char::from(((hid >> shift) & 0x1F) as u8 + b'@');
    Some(format!(
        "ACPI({}{}{}{:04X},{uid})",
        letter(10),
        letter(5),
        letter(0),
        hid >> 16
    ))
}

fn usb(d: &[u8]) -> Option<String> {
    let (port, interface) = (d.first()?, d.get(1)?);
    Some(format!("USB({port},{interface})"))
}

/// Upstream renders 31 of the 32 address bytes and trims trailing '0' hex
/// digits (not bytes); kept for parity.
fn mac(d: &[u8]) -> Option<String> {
    if d.len() != 33 {
        return None;
    }
    let hex = hex::encode_upper(&d[..31]);
    Some(format!("Mac({},{:#04x})", hex.trim_end_matches('0'), d[32]))
}

/// Upstream reads each address as a little-endian u32 and prints it
/// most-significant byte first, which reverses the octets; kept for parity.
fn ipv4(d: &[u8]) -> Option<String> {
    let addr = |at: usize| -> Option<String> {
        let b = d.get(at..at + 4)?;
        Some(format!("{}.{}.{}.{}", b[3], b[2], b[1], b[0]))
    };
    let local = addr(0)?;
    let remote = addr(4)?;
    let protocol = match u16_at(d, 12)? {
        6 => "TCP",
        17 => "UDP",
        _ => "",
    };
    let origin = match d.get(14)? {
        0 => "DHCP",
        1 => "Static",
        _ => "",
    };
    let gateway = u32_at(d, 15)?;
    let mask = u32_at(d, 19)?;
    let extra = if gateway != 0 || mask != 0 {
        format!(",{gateway},{mask}")
    } else {
        String::new()
    };
    Some(format!("IPv4({remote},{protocol},{origin},{local}{extra})"))
}

fn fibre_ex(d: &[u8]) -> Option<String> {
    let wwn = d.get(0..8)?;
    let lun = d.get(8..16)?;
    Some(format!(
        "FibreEx(0x{},0x{})",
        hex::encode(wwn),
        hex::encode(lun)
    ))
}

/// Upstream requires 37 body bytes but reads the 38th (signature type); we
/// require 38 so a 37-byte node falls back to `Path(...)` instead of panicking.
fn hard_drive(d: &[u8]) -> Option<String> {
    if d.len() < 38 {
        return None;
    }
    let number = u32_at(d, 0)?;
    let start = u64_at(d, 4)?;
    let size = u64_at(d, 12)?;
    let signature = &d[20..36];
    let (format, sig) = match d[36] {
        1 => ("MBR", format!("{:#010x}", u32_at(signature, 0)?)),
        2 => ("GPT", uefi_guid(signature)?),
        _ => return None,
    };
    let range = if number != 0 {
        format!(",{start:#x},{size:#x}")
    } else {
        String::new()
    };
    Some(format!("HD({number},{format},{sig}{range})"))
}

fn vendor_media(d: &[u8]) -> Option<String> {
    let guid = uefi_guid(d.get(..16)?)?;
    Some(format!("VenMedia({guid},{})", hex::encode(&d[16..])))
}

/// Drops the last UTF-16 unit (the NUL terminator) without checking it.
fn file_path(d: &[u8]) -> Option<String> {
    if d.is_empty() || !d.len().is_multiple_of(2) {
        return None;
    }
    let units = super::utf16_units(&d[..d.len() - 2]);
    Some(format!("File({})", String::from_utf16_lossy(&units)))
}

fn bbs(d: &[u8]) -> Option<String> {
    let device_type = match u16_at(d, 0)? {
        0x01 => "FLOPPY".to_string(),
        0x02 => "HARD_DRIVE".to_string(),
        0x03 => "CDROM".to_string(),
        0x04 => "PCMCIA".to_string(),
        0x05 => "USB".to_string(),
        0x06 => "EMBEDDED_NETWORK".to_string(),
        0x80 => "DEV".to_string(),
        0xFF => "UNKNOWN".to_string(),
        other => other.to_string(),
    };
    let flags = u16_at(d, 2)?;
    let desc = &d[4..];
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    let desc = std::str::from_utf8(&desc[..end]).ok()?;
    Some(format!("BBS({device_type},{desc},{flags})"))
}

/// Canonical (registry-format) GUID: first three fields little-endian.
fn uefi_guid(g: &[u8]) -> Option<String> {
    let d1 = u32_at(g, 0)?;
    let d2 = u16_at(g, 4)?;
    let d3 = u16_at(g, 6)?;
    let tail = g.get(8..16)?;
    Some(format!(
        "{d1:08X}-{d2:04X}-{d3:04X}-{}-{}",
        hex::encode_upper(&tail[..2]),
        hex::encode_upper(&tail[2..])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(t: u8, s: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t, s];
        v.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    fn one(t: u8, s: u8, body_hex: &str) -> String {
        let n = node(t, s, &hex::decode(body_hex).unwrap());
        let mut v = render_nodes(&n).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn node_texts() {
        let cases: Vec<(u8, u8, String, &str)> = vec![
            (1, 1, "0001".into(), "Pci(0,1)"),
            (2, 1, "d041030a00000000".into(), "ACPI(PNP0A03,0)"),
            (3, 5, "0203".into(), "USB(2,3)"),
            (
                3,
                0x0B,
                format!("5254001234{}01", "00".repeat(27)),
                "Mac(5254001234,0x01)",
            ),
            (
                3,
                0x0C,
                "c0a80102c0a801010000000006000100000000ffffff00".into(),
                "IPv4(1.1.168.192,TCP,Static,2.1.168.192,0,16777215)",
            ),
            (
                3,
                0x0C,
                "0a0000010a000002000000001100000000000000000000".into(),
                "IPv4(2.0.0.10,UDP,DHCP,1.0.0.10)",
            ),
            (
                3,
                0x15,
                "00112233445566778899aabbccddeeff".into(),
                "FibreEx(0x0011223344556677,0x8899aabbccddeeff)",
            ),
            (
                4,
                3,
                "72f728144ab61e44b8c39ebdd7f893c7".into(),
                "VenMedia(1428F772-B64A-441E-B8C3-9EBDD7F893C7,)",
            ),
            (4, 4, "6b00650072006e0065006c000000".into(), "File(kernel)"),
            (5, 1, "020001004469736b00".into(), "BBS(HARD_DRIVE,Disk,1)"),
            (5, 1, "3412000041".into(), "BBS(4660,A,0)"),
            (3, 2, "00000000".into(), "Path(3,2,00000000)"),
            (7, 9, "".into(), "Path(7,9,)"),
            (2, 1, "d041".into(), "Path(2,1,d041)"),
        ];
        for (t, s, body, want) in cases {
            assert_eq!(one(t, s, &body), want, "{t}/{s} {body}");
        }
    }

    #[test]
    fn hard_drive_nodes() {
        let mut body = Vec::new();
        body.extend_from_slice(&15u32.to_le_bytes());
        body.extend_from_slice(&0x2800u64.to_le_bytes());
        body.extend_from_slice(&0x35000u64.to_le_bytes());
        body.extend_from_slice(&hex::decode("5e27f1007553d5439eb5de2add4c9932").unwrap());
        body.extend_from_slice(&[2, 2]);
        assert_eq!(
            render_nodes(&node(4, 1, &body)).unwrap(),
            ["HD(15,GPT,00F1275E-5375-43D5-9EB5-DE2ADD4C9932,0x2800,0x35000)"]
        );
        body[0] = 0;
        body[36] = 1;
        assert_eq!(
            render_nodes(&node(4, 1, &body)).unwrap(),
            ["HD(0,MBR,0x00f1275e)"]
        );
        // 37-byte body: upstream panics here, we fall back.
        body.pop();
        assert!(render_nodes(&node(4, 1, &body)).unwrap()[0].starts_with("Path(4,1,"));
    }

    #[test]
    fn broken_headers() {
        assert!(render_nodes(&[1, 1, 6]).is_err());
        assert!(render_nodes(&[1, 1, 3, 0]).is_err());
        assert!(render_nodes(&[1, 1, 0, 0]).is_err());
        assert!(render_nodes(&[1, 1, 9, 0, 0]).is_err());
    }
}
