//! SNP evidence as upstream's attester sends it, or a bare binary report.

use crate::evidence_stream::decode_fast;
use crate::json_report::report_from_json;
use crate::report::{parse_report, Report, REPORT_LEN};
use crate::VerifyError;
use serde_json::Value;

/// `cert_type` of a GHCB certificate-table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertType {
    Ark,
    Ask,
    Vcek,
    Vlek,
    Crl,
    Empty,
    /// `{"OTHER": "<uuid>"}`.
    Other(String),
}

/// One `cert_chain` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub cert_type: CertType,
    /// DER or PEM, as the host supplied it.
    pub data: Vec<u8>,
}

/// Decoded SNP evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub report: Report,
    /// `None` when the evidence has no (or a null) `cert_chain`, or is a bare report.
    pub cert_chain: Option<Vec<ChainEntry>>,
}

fn bad(msg: impl std::fmt::Display) -> VerifyError {
    VerifyError::Evidence(msg.to_string())
}

/// Decode evidence: the attester's JSON (`attestation_report` as the serde object or as an
/// array of 1184 bytes, optional `cert_chain`) or a raw 1184-byte report.
pub fn decode_evidence(bytes: &[u8]) -> Result<Evidence, VerifyError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    // A binary report starts with its little-endian version (2..), never with '{'.
    if first != Some(b'{') {
        if bytes.len() == REPORT_LEN {
            return Ok(Evidence {
                report: parse_report(bytes)?,
                cert_chain: None,
            });
        }
        return Err(bad(format!(
            "neither a JSON object nor a {REPORT_LEN}-byte binary report ({} bytes)",
            bytes.len()
        )));
    }
    if let Some(evidence) = decode_fast(bytes) {
        return Ok(evidence);
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    decode_evidence_value(&value)
}

/// [`decode_evidence`] for already-parsed JSON.
pub fn decode_evidence_value(value: &Value) -> Result<Evidence, VerifyError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("evidence must be a JSON object"))?;
    let report_value = obj
        .get("attestation_report")
        .ok_or_else(|| bad("missing attestation_report"))?;
    let report = report_of(report_value)?;
    let cert_chain = match obj.get("cert_chain") {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) => Some(
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| chain_entry(e, i))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => {
            return Err(bad(format!(
                "cert_chain must be null or an array, got {other}"
            )))
        }
    };
    Ok(Evidence { report, cert_chain })
}

/// `attestation_report`: the serde object, or the binary report as an array of bytes.
pub(crate) fn report_of(report_value: &Value) -> Result<Report, VerifyError> {
    if report_value.is_array() {
        let raw = byte_array(report_value, "attestation_report")?;
        Ok(parse_report(&raw)?)
    } else {
        report_from_json(report_value)
    }
}

fn byte_array(v: &Value, field: &str) -> Result<Vec<u8>, VerifyError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(format!("{field}: expected an array of byte values")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| bad(format!("{field}[{i}] is not a byte: {item}")))
        })
        .collect()
}

fn chain_entry(v: &Value, index: usize) -> Result<ChainEntry, VerifyError> {
    let field = format!("cert_chain[{index}]");
    let obj = v
        .as_object()
        .ok_or_else(|| bad(format!("{field} must be an object")))?;
    let cert_type = cert_type_of(obj.get("cert_type"), index)?;
    let data = match obj.get("data") {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(d) => byte_array(d, &format!("{field}.data"))?,
        None => return Err(bad(format!("{field}.data missing"))),
    };
    Ok(ChainEntry { cert_type, data })
}

/// `cert_chain[index].cert_type`: a GHCB certificate-table type name or `{"OTHER": uuid}`.
pub(crate) fn cert_type_of(v: Option<&Value>, index: usize) -> Result<CertType, VerifyError> {
    let field = format!("cert_chain[{index}]");
    Ok(match v {
        Some(Value::String(s)) => match s.as_str() {
            "ARK" => CertType::Ark,
            "ASK" => CertType::Ask,
            "VCEK" => CertType::Vcek,
            "VLEK" => CertType::Vlek,
            "CRL" => CertType::Crl,
            "Empty" => CertType::Empty,
            other => return Err(bad(format!("{field}.cert_type {other:?} is not known"))),
        },
        Some(Value::Object(o)) => match o.get("OTHER") {
            Some(Value::String(uuid)) if o.len() == 1 => CertType::Other(uuid.clone()),
            _ => {
                return Err(bad(format!(
                    "{field}.cert_type object must be {{\"OTHER\": uuid}}"
                )))
            }
        },
        Some(other) => return Err(bad(format!("{field}.cert_type is not valid: {other}"))),
        None => return Err(bad(format!("{field}.cert_type missing"))),
    })
}
