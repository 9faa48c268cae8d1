//! `tpm`: a plain TPM 2.0 quote signed by an attestation key the evidence names.
//!
//! Nothing here vouches for the AK: the claims carry it (`ak_public`, the evidence's base64
//! string) and the policy decides whether it is trusted, as upstream's policy does with
//! `input.tpm.ak_public in query_reference_value("trusted_aks")`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use trustee_vtpm::{AkPublic, Quote};

use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

const TEE: &str = "tpm";
/// The nonce is the report data zero-padded or truncated to this length (the attester does
/// the same, as a TPM2B_DATA nonce is bounded).
const REPORT_DATA_LEN: usize = 32;
const MAX_PCRS: usize = 32;
const MAX_FIELD: usize = 8 * 1024;

/// `{"ak_public": base64 DER SPKI, "tpm_quote": {"signature": base64 TPMT_SIGNATURE,
/// "message": base64 TPMS_ATTEST, "pcrs": [hex, …]}}`.
struct Evidence {
    ak_public: String,
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

impl Evidence {
    fn decode(evidence: &[u8]) -> Result<Self, VerifyError> {
        let doc: Value = serde_json::from_slice(evidence)
            .map_err(|e| malformed(format!("not a JSON object: {e}")))?;
        let string = |v: Option<&Value>, what: &str| -> Result<String, VerifyError> {
            v.and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("`{what}` is missing or not a string")))
        };
        let quote = doc.get("tpm_quote");
        let field = |k: &str| quote.and_then(|q| q.get(k));
        let pcrs = field("pcrs")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("`tpm_quote.pcrs` is missing or not an array".into()))?;
        if pcrs.len() > MAX_PCRS {
            return Err(malformed(format!(
                "{} PCR values, at most {MAX_PCRS}",
                pcrs.len()
            )));
        }
        Ok(Self {
            ak_public: string(doc.get("ak_public"), "ak_public")?,
            signature: string(field("signature"), "tpm_quote.signature")?,
            message: string(field("message"), "tpm_quote.message")?,
            pcrs: pcrs
                .iter()
                .map(|p| string(Some(p), "tpm_quote.pcrs[]"))
                .collect::<Result<_, _>>()?,
        })
    }
}

pub(crate) struct Tpm;

fn malformed(reason: String) -> VerifyError {
    VerifyError::Malformed { tee: TEE, reason }
}

fn rejected(e: trustee_vtpm::VtpmError) -> VerifyError {
    VerifyError::Rejected {
        tee: TEE,
        reason: e.to_string(),
    }
}

fn base64_field(what: &str, s: &str) -> Result<Vec<u8>, VerifyError> {
    if s.len() > MAX_FIELD {
        return Err(malformed(format!(
            "`{what}` exceeds {MAX_FIELD} characters"
        )));
    }
    STANDARD
        .decode(s)
        .map_err(|e| malformed(format!("`{what}` is not base64: {e}")))
}

impl Verifier for Tpm {
    /// Signature by the AK, PCR digest, nonce == report data zero-padded or truncated to 32 bytes (when
    /// expected), init data through PCR8 (when expected).
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        _inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let ev = Evidence::decode(evidence)?;
        let ak = AkPublic::from_spki_der(&base64_field("ak_public", &ev.ak_public)?)
            .map_err(rejected)?;
        let signature =
            trustee_vtpm::parse_signature(&base64_field("tpm_quote.signature", &ev.signature)?)
                .map_err(rejected)?;
        let message = base64_field("tpm_quote.message", &ev.message)?;
        let pcrs = trustee_vtpm::pcrs_from_hex(&ev.pcrs).map_err(rejected)?;
        let quote = Quote {
            message: &message,
            signature: &signature,
            pcrs: &pcrs,
        };
        let attest = quote.verify_signature(&ak, "AK").map_err(rejected)?;
        let pcrs = attest.check_pcrs(&pcrs).map_err(rejected)?;
        if let Some(report_data) = expected.report_data {
            let padded = trustee_snp::regularize(report_data, REPORT_DATA_LEN);
            crate::hardware::check_binding(TEE, "TPM quote nonce", &padded, &attest.extra_data)?;
        }
        if let Some(hash) = expected.init_data_hash {
            trustee_vtpm::check_init_data(&pcrs, hash).map_err(rejected)?;
        }
        let mut claims = Map::new();
        let pcr8 = trustee_vtpm::pcr_value(&pcrs, trustee_vtpm::INIT_DATA_PCR);
        claims.insert(
            "init_data".into(),
            Value::String(pcr8.map(hex::encode).unwrap_or_default()),
        );
        claims.insert(
            "report_data".into(),
            Value::String(hex::encode(&attest.extra_data)),
        );
        claims.insert("ak_public".into(), Value::String(ev.ak_public));
        for (i, v) in &pcrs {
            claims.insert(format!("pcr{i:02}"), Value::String(hex::encode(v)));
        }
        Ok(vec![(Value::Object(claims), "cpu".into())])
    }
}

#[cfg(test)]
#[path = "tpm_tests.rs"]
mod tests;
