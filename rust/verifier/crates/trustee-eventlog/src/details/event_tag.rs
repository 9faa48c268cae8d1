//! EV_EVENT_TAG (TCG_PCClientTaggedEvent), including the attestation-agent
//! event log (AAEL) entries that guest-components records in RTMR3.

use serde_json::{json, Value};

use super::{utf8, EventDetails};
use crate::error::DetailsError;
use crate::reader::Reader;

/// "AAEL" read as a little-endian u32.
const AAEL_TAGGED_EVENT_ID: u32 = 0x4141_454C;

pub(super) fn parse(data: &[u8]) -> Result<EventDetails, DetailsError> {
    let mut r = Reader::new(data);
    let id = r.u32("tagged event id")?;
    let size = r.u32("tagged event data size")?;
    let tagged = r.take(size as usize, "tagged event data")?;

    let mut details = EventDetails::from_string(String::from_utf8_lossy(tagged).replace('\0', ""));
    if id == AAEL_TAGGED_EVENT_ID {
        details.data = Some(aael_entry(utf8("AAEL event data", tagged)?)?);
        details.unicode_name = Some("AAEL".into());
    }
    Ok(details)
}

/// `"<domain> <operation> <content>"`; content is kept as JSON when it is
/// JSON, otherwise as a string.
fn aael_entry(text: &str) -> Result<Value, DetailsError> {
    let missing = |which: &str| DetailsError::Invalid {
        field: "AAEL event data",
        reason: format!(
            "no {which} space separator in {text:?} (expected \"domain operation content\")"
        ),
    };
    let (domain, rest) = text.split_once(' ').ok_or_else(|| missing("first"))?;
    let (operation, content) = rest.split_once(' ').ok_or_else(|| missing("second"))?;
    let content = serde_json::from_str::<Value>(content).unwrap_or_else(|_| Value::from(content));
    Ok(json!({ "domain": domain, "operation": operation, "content": content }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn plain_tags() {
        let d = parse(&hex::decode("ec223b8f0d0000004c696e757820696e6974726400").unwrap()).unwrap();
        assert_eq!(d, EventDetails::from_string("Linux initrd".into()));
        let d = parse(&tagged(1, &[b'a', 0xff, 0, b'b'])).unwrap();
        assert_eq!(d.string.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn aael() {
        let d = parse(&tagged(AAEL_TAGGED_EVENT_ID, b"coco.com op {\"k\": [1]}")).unwrap();
        assert_eq!(d.unicode_name.as_deref(), Some("AAEL"));
        assert_eq!(
            d.data,
            Some(json!({"domain": "coco.com", "operation": "op", "content": {"k": [1]}}))
        );
        let d = parse(&tagged(AAEL_TAGGED_EVENT_ID, b"d o some content")).unwrap();
        assert_eq!(d.data.unwrap()["content"], json!("some content"));
        assert!(parse(&tagged(AAEL_TAGGED_EVENT_ID, b"d-only")).is_err());
        assert!(parse(&tagged(AAEL_TAGGED_EVENT_ID, b"d op")).is_err());
        assert!(parse(&tagged(AAEL_TAGGED_EVENT_ID, b"d o \xff")).is_err());
    }

    #[test]
    fn short_data() {
        for bad in ["", "0f", "0f000000", "0f0000000500000041"] {
            assert!(parse(&hex::decode(bad).unwrap()).is_err(), "{bad}");
        }
    }
}
