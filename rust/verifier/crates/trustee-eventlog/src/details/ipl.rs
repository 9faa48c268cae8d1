//! EV_IPL: vendor-defined. GCE prefixes a UTF-16LE string with `2e 00`;
//! grub/shim write NUL-terminated UTF-8.

use super::{utf16_units, EventDetails};
use crate::error::DetailsError;

const GCE_PREFIX: [u8; 2] = [0x2e, 0x00];

pub(super) fn parse(data: &[u8]) -> Result<EventDetails, DetailsError> {
    if data.len() < 2 {
        return Err(DetailsError::Invalid {
            field: "EV_IPL data",
            reason: format!("is {} bytes, at least 2 are needed", data.len()),
        });
    }
    if data[..2] == GCE_PREFIX {
        // Upstream drops as many bytes at the end as the prefix is long (the
        // UTF-16 NUL), and wants an even, non-zero length after the prefix.
        let body_len = data.len() - GCE_PREFIX.len();
        if body_len == 0 || !body_len.is_multiple_of(2) {
            return Err(DetailsError::Invalid {
                field: "GCE EV_IPL UTF-16 string",
                reason: format!(
                    "is {body_len} bytes after the 2e00 prefix, need an even number > 0"
                ),
            });
        }
        let units = utf16_units(&data[GCE_PREFIX.len()..body_len]);
        return Ok(EventDetails::from_string(String::from_utf16_lossy(&units)));
    }
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let text = match std::str::from_utf8(&data[..end]) {
        Ok(s) => s.to_owned(),
        Err(_) => hex::encode(data),
    };
    Ok(EventDetails::from_string(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let cases: &[(&str, &str)] = &[
            ("4d6f", "Mo"),
            ("4d6f6b4c69737400", "MokList"),
            ("2e006c0069006e00750078000000", "linux"),
            ("2e0073006200610074000000", "sbat"),
            ("2e000000", ""),
            (
                "677275625f636d64207365742070616765723d310000",
                "grub_cmd set pager=1",
            ),
            ("41ff00", "41ff00"),
        ];
        for (hex_in, want) in cases {
            let d = parse(&hex::decode(hex_in).unwrap()).unwrap();
            assert_eq!(d.string.as_deref(), Some(*want), "{hex_in}");
        }
    }

    #[test]
    fn rejects() {
        for bad in ["", "41", "2e00", "2e0000"] {
            assert!(parse(&hex::decode(bad).unwrap()).is_err(), "{bad}");
        }
    }
}
