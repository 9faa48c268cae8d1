//! TCG2 crypto-agile event log: the SHA-1-format header record carrying the
//! spec-ID event, then TCG_PCR_EVENT2 records until an end marker or the end
//! of the buffer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::algorithm::{Algorithm, DigestSizes};
use crate::details::{self, EventDetails};
use crate::error::{EventLogError, RecordError};
use crate::event_type::EventType;
use crate::reader::Reader;

/// One digest of an event, sized as the spec-ID event declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    pub algorithm: Algorithm,
    pub value: Vec<u8>,
}

/// One TCG_PCR_EVENT2 record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// CC measurement register index (TDX: 1..=4 are RTMR0..3).
    pub index: u32,
    pub event_type: EventType,
    pub digests: Vec<EventDigest>,
    /// Raw event data.
    pub data: Vec<u8>,
    /// Whether every digest equals the hash of `data` (true with no digests).
    /// Many firmware events measure something other than their own data, so
    /// `false` is normal and not an error.
    pub digest_matches_event: bool,
    pub details: EventDetails,
}

/// A parsed CC event log. The header record is consumed, not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLog {
    pub events: Vec<Event>,
}

/// Parses a CC event log (e.g. the CCEL ACPI table contents or the
/// `cc_eventlog` of TDX evidence after base64 decoding).
pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
    let mut r = Reader::new(bytes);
    let sizes = parse_header(&mut r)?;
    let mut events = Vec::new();
    while r.remaining() > 0 {
        let offset = r.pos();
        let at = |source: RecordError| EventLogError::Record {
            event: events.len(),
            offset,
            source,
        };
        // Firmware reserves a fixed-size area and fills the unused tail with
        // 0x00 or 0xFF; fewer than 8 bytes left cannot hold a marker.
        let Some(marker) = r.peek_u64() else {
            return Err(at(RecordError::MissingEndMarker {
                remaining: r.remaining(),
            }));
        };
        if marker == 0 || marker == u64::MAX {
            break;
        }
        let event = parse_record(&mut r, &sizes).map_err(at)?;
        events.push(event);
    }
    Ok(EventLog { events })
}

fn parse_header(r: &mut Reader<'_>) -> Result<DigestSizes, EventLogError> {
    let t = EventLogError::HeaderTruncated;
    r.u32("first record PCR index").map_err(t)?;
    let raw_type = r.u32("first record event type").map_err(t)?;
    let event_type = EventType::from_u32(raw_type)
        .ok_or(EventLogError::HeaderUnknownEventType { value: raw_type })?;
    r.take(20, "first record SHA-1 digest").map_err(t)?;
    let size = r.u32("first record event size").map_err(t)?;
    if event_type != EventType::EV_NO_ACTION {
        // Upstream leaves the cursor at this record's data in that case (and
        // typically fails later for lack of digest sizes); kept for parity.
        return Ok(DigestSizes::default());
    }
    let body = r.take(size as usize, "spec-ID event data").map_err(t)?;
    parse_spec_id(body, size)
}

/// TCG_EfiSpecIDEvent: signature, platform class, versions and uintn size
/// (24 bytes, not checked), then the algorithm list and vendor info.
fn parse_spec_id(body: &[u8], declared: u32) -> Result<DigestSizes, EventLogError> {
    let t = EventLogError::HeaderTruncated;
    let mut r = Reader::new(body);
    r.take(24, "spec-ID signature, platform class and versions")
        .map_err(t)?;
    let count = r.u32("spec-ID number of algorithms").map_err(t)?;
    let mut sizes = DigestSizes::default();
    for position in 0..count {
        let id = r.u16("spec-ID algorithm id").map_err(t)?;
        let size = r.u16("spec-ID digest size").map_err(t)?;
        let alg = Algorithm::from_id(id).ok_or(EventLogError::SpecIdUnknownAlgorithm {
            id,
            position: position as usize,
        })?;
        sizes.set(alg, size);
    }
    let vendor_size = r.u8("spec-ID vendor info size").map_err(t)?;
    let consumed = r.pos() + usize::from(vendor_size);
    if consumed != body.len() {
        return Err(EventLogError::SpecIdSizeMismatch { declared, consumed });
    }
    Ok(sizes)
}

fn parse_record(r: &mut Reader<'_>, sizes: &DigestSizes) -> Result<Event, RecordError> {
    let index = r.u32("MR index")?;
    let raw_type = r.u32("event type")?;
    let event_type =
        EventType::from_u32(raw_type).ok_or(RecordError::UnknownEventType { value: raw_type })?;
    let count = r.u32("digest count")?;
    // The count is untrusted: grow with what actually parses.
    let mut digests = Vec::with_capacity(count.min(8) as usize);
    for position in 0..count as usize {
        let id = r.u16("digest algorithm id")?;
        let algorithm =
            Algorithm::from_id(id).ok_or(RecordError::UnknownAlgorithm { id, position })?;
        let size = sizes
            .get(algorithm)
            .ok_or(RecordError::UndeclaredAlgorithm {
                algorithm,
                position,
            })?;
        let value = r.take(usize::from(size), "digest")?.to_vec();
        digests.push(EventDigest { algorithm, value });
    }
    let size = r.u32("event data size")?;
    let data = r.take(size as usize, "event data")?;

    let digest_matches_event = digests_match(data, &digests)?;
    let details = details::parse(event_type, data)
        .map_err(|source| RecordError::Details { event_type, source })?;
    Ok(Event {
        index,
        event_type,
        digests,
        data: data.to_vec(),
        digest_matches_event,
        details,
    })
}

/// Stops at the first mismatch, so an uncheckable algorithm after a mismatch
/// is not an error (upstream order).
fn digests_match(data: &[u8], digests: &[EventDigest]) -> Result<bool, RecordError> {
    for (position, d) in digests.iter().enumerate() {
        let hash = d
            .algorithm
            .hash()
            .ok_or(RecordError::UnsupportedDigestAlgorithm {
                algorithm: d.algorithm,
                position,
            })?;
        if hash.hash(&[data]) != d.value {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Event {
    /// One `uefi_event_logs[i]` entry.
    pub fn to_json(&self) -> Value {
        let digests = self
            .digests
            .iter()
            .map(|d| {
                let mut m = Map::new();
                m.insert("alg".into(), Value::from(d.algorithm.name()));
                m.insert("digest".into(), Value::from(hex::encode(&d.value)));
                Value::Object(m)
            })
            .collect();
        let mut m = Map::new();
        m.insert("details".into(), self.details.to_json());
        m.insert(
            "digest_matches_event".into(),
            Value::from(self.digest_matches_event),
        );
        m.insert("digests".into(), Value::Array(digests));
        m.insert("event".into(), Value::from(STANDARD.encode(&self.data)));
        m.insert("index".into(), Value::from(self.index));
        m.insert("type_name".into(), Value::from(self.event_type.name()));
        Value::Object(m)
    }
}

impl EventLog {
    /// `{"uefi_event_logs": [...]}`, the JSON upstream's parser serializes to.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("uefi_event_logs".into(), self.claims_json());
        Value::Object(m)
    }

    /// The array that goes under the `uefi_event_logs` key of the TDX claims.
    pub fn claims_json(&self) -> Value {
        Value::Array(self.events.iter().map(Event::to_json).collect())
    }
}
