//! Error types. Each variant names the check that failed and the offending
//! value so that a rejected event log can be diagnosed without a hex editor.

use crate::algorithm::Algorithm;
use crate::event_type::EventType;

/// A field did not fit in the bytes that were left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at offset {offset} needs {needed} bytes but only {available} remain")]
pub struct Truncated {
    pub what: &'static str,
    /// Offset relative to the buffer being parsed (the whole log for record
    /// fields, the event data for `details` fields).
    pub offset: usize,
    pub needed: usize,
    pub available: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("event log header (TCG_PCR_EVENT / spec-ID event): {0}")]
    HeaderTruncated(Truncated),
    #[error("event log header: the first record has unknown event type {value:#x}")]
    HeaderUnknownEventType { value: u32 },
    #[error(
        "spec-ID event: algorithm #{position} has unknown TCG algorithm id {id:#06x} \
         (known: RSA 0x1, TDES 0x3, SHA-1 0x4, SHA-256 0xb, SHA-384 0xc, SHA-512 0xd, SM3 0x12)"
    )]
    SpecIdUnknownAlgorithm { id: u16, position: usize },
    #[error(
        "spec-ID event: event size field says {declared} bytes but the algorithm list and \
         vendor info end at byte {consumed}"
    )]
    SpecIdSizeMismatch { declared: u32, consumed: usize },
    /// `event` counts the records after the header from 0; `offset` is where
    /// the record starts in the log.
    #[error("event #{event} (record at offset {offset}): {source}")]
    Record {
        event: usize,
        offset: usize,
        source: RecordError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Truncated(Truncated),
    #[error(
        "only {remaining} bytes remain: expected another event, an 8-byte all-0x00 or \
         all-0xFF end marker, or the exact end of the log"
    )]
    MissingEndMarker { remaining: usize },
    #[error("unknown event type {value:#x}")]
    UnknownEventType { value: u32 },
    #[error("digest #{position} has unknown TCG algorithm id {id:#06x}")]
    UnknownAlgorithm { id: u16, position: usize },
    #[error(
        "digest #{position} uses {algorithm}, which the spec-ID event does not declare, so its \
         size is unknown"
    )]
    UndeclaredAlgorithm {
        algorithm: Algorithm,
        position: usize,
    },
    #[error(
        "digest #{position} uses {algorithm}, which cannot be checked against the event data \
         (supported: SHA-256, SHA-384, SHA-512, SM3)"
    )]
    UnsupportedDigestAlgorithm {
        algorithm: Algorithm,
        position: usize,
    },
    #[error("{event_type} event data: {source}")]
    Details {
        event_type: EventType,
        source: DetailsError,
    },
}

impl From<Truncated> for RecordError {
    fn from(t: Truncated) -> Self {
        RecordError::Truncated(t)
    }
}

/// Failure of a per-event-type `details` parser; offsets are relative to the
/// event data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    #[error("{0}")]
    Truncated(Truncated),
    #[error("{field} is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        field: &'static str,
        valid_up_to: usize,
    },
    #[error("{field} is not valid UTF-16LE (unpaired surrogate)")]
    InvalidUtf16 { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl From<Truncated> for DetailsError {
    fn from(t: Truncated) -> Self {
        DetailsError::Truncated(t)
    }
}

/// A replayed measurement register does not match the reference value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{register} (CC event log MR index {index}) does not match the event log: reference value \
     {expected_hex}, {algorithm} replay of the log gives {replayed_hex}",
    expected_hex = hex::encode(expected),
    replayed_hex = hex::encode(replayed)
)]
pub struct ReplayError {
    /// Human name of the register, e.g. `RTMR1` for TDX.
    pub register: String,
    pub index: u32,
    pub algorithm: &'static str,
    pub expected: Vec<u8>,
    pub replayed: Vec<u8>,
}
