//! UEFI_VARIABLE_DATA (EV_EFI_VARIABLE_DRIVER_CONFIG / _BOOT / _BOOT2 /
//! _AUTHORITY).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{utf16_units, EventDetails};
use crate::error::DetailsError;
use crate::reader::{len_usize, Reader};

pub(super) fn parse(data: &[u8]) -> Result<EventDetails, DetailsError> {
    let mut r = Reader::new(data);
    let guid = r.take(16, "variable GUID")?;
    let name_chars = r.u64("unicode name length")?;
    let data_len = r.u64("variable data length")?;
    let name_bytes = len_usize(name_chars).saturating_mul(2);
    let name = r.take(name_bytes, "unicode name")?;
    let unicode_name =
        String::from_utf16(&utf16_units(name)).map_err(|_| DetailsError::InvalidUtf16 {
            field: "unicode name",
        })?;
    let variable_data = if data_len > 0 {
        STANDARD.encode(r.take(len_usize(data_len), "variable data")?)
    } else {
        String::new()
    };
    Ok(EventDetails {
        unicode_name: Some(unicode_name),
        unicode_name_length: Some(name_chars),
        variable_data: Some(variable_data),
        variable_data_length: Some(data_len),
        variable_name: Some(raw_guid(guid)),
        ..EventDetails::default()
    })
}

/// Upstream prints the GUID bytes as stored, grouped 4-2-2-2-6, without the
/// little-endian field swap of the canonical form; kept for parity.
fn raw_guid(g: &[u8]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let d = parse(&hex::decode("61dfe48bca93d211aa0d00e098032b8c0900000000000000020000000000000042006f006f0074004f0072006400650072000000").unwrap()).unwrap();
        assert_eq!(d.unicode_name.as_deref(), Some("BootOrder"));
        assert_eq!(d.unicode_name_length, Some(9));
        assert_eq!(d.variable_data.as_deref(), Some("AAA="));
        assert_eq!(d.variable_data_length, Some(2));
        assert_eq!(
            d.variable_name.as_deref(),
            Some("61dfe48b-ca93-d211-aa0d-00e098032b8c")
        );
        let d = parse(
            &hex::decode(
                "61dfe48bca93d211aa0d00e098032b8c0200000000000000000000000000000050004b00",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(d.unicode_name.as_deref(), Some("PK"));
        assert_eq!(d.variable_data.as_deref(), Some(""));
    }

    #[test]
    fn rejects() {
        let guid = "61dfe48bca93d211aa0d00e098032b8c";
        for bad in [
            String::new(),
            guid.to_string(),
            format!("{guid}0a00000000000000"),
            format!("{guid}0a000000000000000000000000000000"),
            format!("{guid}ffffffffffffffff0000000000000000"),
            format!("{guid}0100000000000000ffffffffffffffff4100"),
            format!("{guid}010000000000000000000000000000000dd8"),
        ] {
            assert!(parse(&hex::decode(&bad).unwrap()).is_err(), "{bad}");
        }
    }
}
