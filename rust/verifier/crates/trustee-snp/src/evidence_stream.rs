//! Fast path of [`crate::decode_evidence`]: one pass over the JSON text that reads
//! `cert_chain[].data` byte arrays straight into bytes instead of building a JSON value per
//! byte (a VCEK is ~1,350 of them, most of the decoding time).
//!
//! It only ever answers "here is the evidence" or "not sure": anything unusual (a
//! malformed document, a value that is not a byte, a missing field, an unknown
//! `cert_type`) returns `None`, and the caller decodes again through `serde_json::Value`,
//! which produces the error message. A success is built by the same field checks as the
//! slow path, so both agree on every accepted input (the JSON fuzz target compares them).

use crate::evidence::{cert_type_of, report_of, ChainEntry, Evidence};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Decode evidence JSON, or `None` when the slow path must decide.
pub(crate) fn decode_fast(bytes: &[u8]) -> Option<Evidence> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = de.deserialize_map(TopVisitor).ok()?;
    de.end().ok()?;
    let report = report_of(&raw.report?).ok()?;
    let cert_chain = match raw.cert_chain {
        None | Some(None) => None,
        Some(Some(entries)) => Some(
            entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let cert_type = cert_type_of(e.cert_type.as_ref(), i).ok()?;
                    Some(ChainEntry {
                        cert_type,
                        data: e.data?,
                    })
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    Some(Evidence { report, cert_chain })
}

/// The top-level object; a repeated key keeps its last value, as `serde_json::Value` does.
struct RawEvidence {
    report: Option<Value>,
    /// Outer `None`: absent; inner `None`: `null`.
    cert_chain: Option<Option<Vec<RawEntry>>>,
}

struct RawEntry {
    cert_type: Option<Value>,
    data: Option<Vec<u8>>,
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = RawEvidence;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an SNP evidence object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvidence, A::Error> {
        let mut out = RawEvidence {
            report: None,
            cert_chain: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed(&["attestation_report", "cert_chain"]))? {
            match key {
                Some(0) => out.report = Some(map.next_value()?),
                Some(_) => out.cert_chain = Some(map.next_value_seed(ChainSeed)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// An object key: its index among the wanted names, or `None` for any other key (which
/// is skipped). Compared without allocating; escaped keys arrive decoded.
struct KeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|name| *name == s))
    }
}

/// `cert_chain`: `null` or an array of entries.
struct ChainSeed;

impl<'de> DeserializeSeed<'de> for ChainSeed {
    type Value = Option<Vec<RawEntry>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ChainVisitor)
    }
}

struct ChainVisitor;

impl<'de> Visitor<'de> for ChainVisitor {
    type Value = Option<Vec<RawEntry>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an array of certificate entries")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            out.push(entry);
        }
        Ok(Some(out))
    }
}

struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = RawEntry;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawEntry, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = RawEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a certificate entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
        let mut out = RawEntry {
            cert_type: None,
            data: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed(&["cert_type", "data"]))? {
            match key {
                Some(0) => out.cert_type = Some(map.next_value()?),
                Some(_) => out.data = Some(map.next_value_seed(DataSeed)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// `data`: a string (its UTF-8 bytes, e.g. PEM) or an array of integers 0..=255.
struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or an array of byte values")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
        Ok(s.as_bytes().to_vec())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // Certificates are a few kilobytes; the hint only avoids regrowth.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}
