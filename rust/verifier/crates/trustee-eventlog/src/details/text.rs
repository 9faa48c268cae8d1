//! Decoders whose result is a single `string`.

use super::{utf8, EventDetails};
use crate::error::DetailsError;

/// EV_POST_CODE, EV_ACTION, EV_COMPACT_HASH, EV_OMIT_BOOT_DEVICE_EVENTS,
/// EV_EFI_ACTION: the data is the text; invalid UTF-8 rejects the log
/// (upstream behaviour, kept for parity).
pub(super) fn strict_utf8(data: &[u8]) -> Result<EventDetails, DetailsError> {
    Ok(EventDetails::from_string(
        utf8("event text", data)?.to_owned(),
    ))
}

/// EV_PLATFORM_CONFIG_FLAGS: vendor-specific, often binary (td-shim puts a
/// HOB list here), so undecodable data becomes "" instead of an error. U+0010
/// separates words in td-shim payload info, hence the space.
pub(super) fn platform_config_flags(data: &[u8]) -> EventDetails {
    let text = std::str::from_utf8(data).unwrap_or("");
    let cleaned = text
        .chars()
        .map(|c| if c == '\u{10}' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    EventDetails::from_string(cleaned)
}

/// EV_EFI_PLATFORM_FIRMWARE_BLOB2 / EV_EFI_HANDOFF_TABLES2: a size byte `L`
/// then the description. Upstream keeps bytes `1..L`, i.e. `L - 1` bytes,
/// which drops the NUL terminator firmware puts there; kept for parity.
pub(super) fn sized_description(data: &[u8]) -> Result<EventDetails, DetailsError> {
    let Some(&size) = data.first() else {
        return Err(DetailsError::Invalid {
            field: "description size byte",
            reason: "event data is empty".into(),
        });
    };
    let end = usize::from(size);
    if end == 0 {
        return Err(DetailsError::Invalid {
            field: "description size byte",
            reason: "is 0, a description needs at least 1 byte".into(),
        });
    }
    let Some(bytes) = data.get(1..end) else {
        return Err(DetailsError::Invalid {
            field: "description",
            reason: format!(
                "size byte says {end} bytes but the event data is {} bytes",
                data.len()
            ),
        });
    };
    Ok(EventDetails::from_string(
        utf8("description", bytes)?.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(d: EventDetails) -> String {
        d.string.unwrap()
    }

    #[test]
    fn strict_text() {
        let cases: &[(&str, &str)] = &[
            ("73616d706c6520746573742064617461", "sample test data"),
            ("", ""),
            ("0f", "\u{f}"),
        ];
        for (hex_in, want) in cases {
            assert_eq!(
                s(strict_utf8(&hex::decode(hex_in).unwrap()).unwrap()),
                *want
            );
        }
        let err = strict_utf8(&[0x41, 0xff]).unwrap_err();
        assert_eq!(
            err,
            DetailsError::InvalidUtf8 {
                field: "event text",
                valid_up_to: 1
            }
        );
    }

    #[test]
    fn platform_flags() {
        assert_eq!(s(platform_config_flags(b"ACPI DATA")), "ACPI DATA");
        assert_eq!(
            s(platform_config_flags(
                b"td_payload_info\0\0\x10\0\0root=/dev/vda1\0\0"
            )),
            "td_payload_info root=/dev/vda1"
        );
        assert_eq!(s(platform_config_flags(&[0x74, 0x64, 0xff])), "");
        assert_eq!(s(platform_config_flags("a\u{85}b\u{7f}".as_bytes())), "ab");
    }

    #[test]
    fn descriptions() {
        let cases: &[(&str, &str)] = &[
            ("095464785461626c65000100000000000000", "TdxTable"),
            ("0b74645f7061796c6f6164000010900000", "td_payload"),
            ("0141", ""),
        ];
        for (hex_in, want) in cases {
            let d = sized_description(&hex::decode(hex_in).unwrap()).unwrap();
            assert_eq!(s(d), *want);
        }
        for bad in ["", "00", "0f74645f", "03ff41"] {
            assert!(
                sized_description(&hex::decode(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        let err = sized_description(&hex::decode("0f7464").unwrap()).unwrap_err();
        assert!(err.to_string().contains("says 15 bytes"), "{err}");
    }
}
