//! Per-event-type decoding of the event data into the `details` object.

mod device_path;
mod efi_variable;
mod event_tag;
mod image_load;
mod ipl;
mod text;

use serde_json::{Map, Value};

use crate::error::DetailsError;
use crate::event_type::EventType;

/// Decoded event data. A field is present in the JSON only when set, so an
/// event type without a decoder yields `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventDetails {
    pub string: Option<String>,
    pub unicode_name: Option<String>,
    pub unicode_name_length: Option<u64>,
    /// Base64 of the variable data ("" when the variable is empty).
    pub variable_data: Option<String>,
    pub variable_data_length: Option<u64>,
    pub variable_name: Option<String>,
    pub device_paths: Option<Vec<String>>,
    /// Structured content of an attestation-agent (AAEL) tagged event.
    pub data: Option<Value>,
}

impl EventDetails {
    pub(crate) fn from_string(s: String) -> Self {
        Self {
            string: Some(s),
            ..Self::default()
        }
    }

    /// JSON object; keys are inserted in upstream's field order so an
    /// order-preserving serializer produces the same text as upstream.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(v) = &self.string {
            m.insert("string".into(), Value::from(v.as_str()));
        }
        if let Some(v) = &self.unicode_name {
            m.insert("unicode_name".into(), Value::from(v.as_str()));
        }
        if let Some(v) = self.unicode_name_length {
            m.insert("unicode_name_length".into(), Value::from(v));
        }
        if let Some(v) = &self.variable_data {
            m.insert("variable_data".into(), Value::from(v.as_str()));
        }
        if let Some(v) = self.variable_data_length {
            m.insert("variable_data_length".into(), Value::from(v));
        }
        if let Some(v) = &self.variable_name {
            m.insert("variable_name".into(), Value::from(v.as_str()));
        }
        if let Some(v) = &self.device_paths {
            m.insert("device_paths".into(), Value::from(v.clone()));
        }
        if let Some(v) = &self.data {
            m.insert("data".into(), v.clone());
        }
        Value::Object(m)
    }
}

pub(crate) fn parse(event_type: EventType, data: &[u8]) -> Result<EventDetails, DetailsError> {
    match event_type {
        EventType::EV_POST_CODE
        | EventType::EV_ACTION
        | EventType::EV_COMPACT_HASH
        | EventType::EV_OMIT_BOOT_DEVICE_EVENTS
        | EventType::EV_EFI_ACTION => text::strict_utf8(data),
        EventType::EV_PLATFORM_CONFIG_FLAGS => Ok(text::platform_config_flags(data)),
        EventType::EV_EFI_PLATFORM_FIRMWARE_BLOB2 | EventType::EV_EFI_HANDOFF_TABLES2 => {
            text::sized_description(data)
        }
        EventType::EV_EVENT_TAG => event_tag::parse(data),
        EventType::EV_IPL => ipl::parse(data),
        EventType::EV_EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EV_EFI_VARIABLE_BOOT
        | EventType::EV_EFI_VARIABLE_BOOT2
        | EventType::EV_EFI_VARIABLE_AUTHORITY => efi_variable::parse(data),
        EventType::EV_EFI_BOOT_SERVICES_APPLICATION => image_load::parse(data),
        _ => Ok(EventDetails::default()),
    }
}

fn utf8<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, DetailsError> {
    std::str::from_utf8(bytes).map_err(|e| DetailsError::InvalidUtf8 {
        field,
        valid_up_to: e.valid_up_to(),
    })
}

/// UTF-16LE code units of `bytes` (an odd trailing byte is ignored, callers
/// check parity where it matters).
fn utf16_units(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecoded_types_give_empty_details() {
        for ty in [0x0u32, 0x2, 0x3, 0x4, 0x8000_0006, 0x8000_00E2] {
            let ty = EventType::from_u32(ty).unwrap();
            let d = parse(ty, &[0xff, 0x00, 0x74]).unwrap();
            assert_eq!(d.to_json(), serde_json::json!({}));
        }
    }
}
