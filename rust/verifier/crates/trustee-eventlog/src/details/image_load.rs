//! EV_EFI_BOOT_SERVICES_APPLICATION (UEFI_IMAGE_LOAD_EVENT): only the device
//! path is decoded.

use super::device_path;
use super::EventDetails;
use crate::error::DetailsError;
use crate::reader::{len_usize, Reader};

/// Size of the end-of-device-path node, which upstream strips unconditionally.
const END_NODE_LEN: u64 = 4;

pub(super) fn parse(data: &[u8]) -> Result<EventDetails, DetailsError> {
    let mut r = Reader::new(data);
    r.take(24, "image location, length and link-time address")?;
    let path_len = r.u64("device path length")?;
    if path_len == 0 {
        return Ok(EventDetails::default());
    }
    if path_len < END_NODE_LEN {
        return Err(DetailsError::Invalid {
            field: "device path length",
            reason: format!("is {path_len}, shorter than the 4-byte end node"),
        });
    }
    let nodes = r.take(len_usize(path_len - END_NODE_LEN), "device path")?;
    if nodes.len() < 4 {
        return Err(DetailsError::Invalid {
            field: "device path",
            reason: format!(
                "has {} bytes before the end node, a node needs at least 4",
                nodes.len()
            ),
        });
    }
    Ok(EventDetails {
        device_paths: Some(device_path::render_nodes(nodes)?),
        ..EventDetails::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &[u8], declared: u64) -> Vec<u8> {
        let mut v = vec![0u8; 24];
        v.extend_from_slice(&declared.to_le_bytes());
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn decodes_paths() {
        // PciRoot-style ACPI node, PCI node, file path, end node.
        let path = hex::decode(
            concat!(
                "02010c00d041030a00000000",
                "01010600 0001",
                "040416005c0045004600490042004f004f0054000000",
                "7fff0400"
            )
            .replace(' ', ""),
        )
        .unwrap();
        let d = parse(&event(&path, path.len() as u64)).unwrap();
        assert_eq!(
            d.device_paths.unwrap(),
            ["ACPI(PNP0A03,0)", "Pci(0,1)", "File(\\EFIBOOT)"]
        );
        assert_eq!(parse(&event(&[], 0)).unwrap(), EventDetails::default());
    }

    #[test]
    fn rejects() {
        assert!(parse(&[0u8; 31]).is_err());
        assert!(parse(&event(&[0; 8], 3)).is_err());
        assert!(parse(&event(&[0; 8], 7)).is_err());
        assert!(parse(&event(&[0; 8], 13)).is_err());
        assert!(parse(&event(&[0; 8], u64::MAX)).is_err());
    }
}
