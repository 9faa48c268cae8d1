//! CC event log (CCEL / TCG2 crypto-agile) parsing and measurement-register
//! replay, compatible with the JSON and replay semantics of upstream
//! Trustee's event log crate.
//!
//! ```text
//! let log = trustee_eventlog::parse(&ccel_bytes)?;
//! log.check_rtmrs(&[rtmr0, rtmr1, rtmr2, rtmr3])?;   // TDX
//! claims["uefi_event_logs"] = log.claims_json();
//! ```
//!
//! The parser never panics: every malformed input yields an
//! [`EventLogError`] naming the record, offset and failed check.

mod algorithm;
mod details;
mod error;
mod event_type;
mod log;
mod reader;
mod replay;

pub use algorithm::{Algorithm, HashAlgorithm};
pub use details::EventDetails;
pub use error::{DetailsError, EventLogError, RecordError, ReplayError, Truncated};
pub use event_type::EventType;
pub use log::{parse, Event, EventDigest, EventLog};
pub use replay::{cc_mr_index_for_pcr, tdx_rtmr_for_index, TDX_RTMR_COUNT};
