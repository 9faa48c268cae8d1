//! `tpm`: a plain TPM 2.0 quote signed by an attestation key the evidence names.
//!
//! Upstream's evidence does not vouch for the AK: the claims carry it (`ak_public`, the
//! evidence's base64 string) and the policy decides whether it is trusted, as upstream's
//! policy does with `input.tpm.ak_public in query_reference_value("trusted_aks")`.
//!
//! Our extension: the evidence may also carry the AK's X.509 certificate (`ak_cert`) and its
//! intermediates (`ak_cert_chain`). When roots are configured (`tpm_ak_roots`), evidence is
//! accepted only with a certificate chaining to one of them, and `ak_certified` says so.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use trustee_vtpm::{AkCertificate, AkPublic, AkRoots, Quote, MAX_AK_CERT, MAX_AK_INTERMEDIATES};

use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

const TEE: &str = "tpm";
/// The nonce is the report data zero-padded or truncated to this length (the attester does
/// the same, as a TPM2B_DATA nonce is bounded).
const REPORT_DATA_LEN: usize = 32;
const MAX_PCRS: usize = 32;
const MAX_FIELD: usize = 8 * 1024;
/// Base64 of the largest accepted certificate.
pub(crate) const MAX_CERT_FIELD: usize = MAX_AK_CERT.div_ceil(3) * 4;

/// `{"ak_public": base64 DER SPKI, "tpm_quote": {"signature": base64 TPMT_SIGNATURE,
/// "message": base64 TPMS_ATTEST, "pcrs": [hex, …]}}`, and optionally (our extension)
/// `"ak_cert"`: base64 DER and `"ak_cert_chain"`: [base64 DER, …].
struct Evidence {
    ak_public: String,
    signature: String,
    message: String,
    pcrs: Vec<String>,
    ak_cert: Option<String>,
    ak_cert_chain: Vec<String>,
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
        let ak_cert = match doc.get("ak_cert") {
            None | Some(Value::Null) => None,
            v => Some(string(v, "ak_cert")?),
        };
        let chain = match doc.get("ak_cert_chain") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(malformed("`ak_cert_chain` is not an array".into())),
        };
        if chain.len() > MAX_AK_INTERMEDIATES {
            return Err(rejected(trustee_vtpm::VtpmError::AkCertChainLength {
                count: chain.len(),
                limit: MAX_AK_INTERMEDIATES,
            }));
        }
        Ok(Self {
            ak_cert,
            ak_cert_chain: chain
                .iter()
                .map(|c| string(Some(c), "ak_cert_chain[]"))
                .collect::<Result<_, _>>()?,
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

pub(crate) struct Tpm {
    /// `tpm_ak_roots`: when not empty, the AK must be certified by one of them.
    pub(crate) roots: AkRoots,
}

impl Tpm {
    /// The AK certificate checked against `ak_spki`; `None` without one (upstream's
    /// evidence), which configured roots refuse.
    fn ak_certificate(
        &self,
        ev: &Evidence,
        ak_spki: &[u8],
        now_unix: i64,
    ) -> Result<Option<AkCertificate>, VerifyError> {
        let Some(cert) = &ev.ak_cert else {
            if self.roots.is_empty() {
                return Ok(None);
            }
            return Err(rejected(trustee_vtpm::VtpmError::AkNotCertified(
                "the evidence carries no `ak_cert`".into(),
            )));
        };
        let cert = base64_field("ak_cert", cert, MAX_CERT_FIELD)?;
        let chain = ev
            .ak_cert_chain
            .iter()
            .map(|c| base64_field("ak_cert_chain[]", c, MAX_CERT_FIELD))
            .collect::<Result<Vec<_>, _>>()?;
        trustee_vtpm::verify_ak_certificate(ak_spki, &cert, &chain, &self.roots, now_unix)
            .map(Some)
            .map_err(rejected)
    }
}

fn malformed(reason: String) -> VerifyError {
    VerifyError::Malformed { tee: TEE, reason }
}

fn rejected(e: trustee_vtpm::VtpmError) -> VerifyError {
    VerifyError::Rejected {
        tee: TEE,
        reason: e.to_string(),
    }
}

fn base64_field(what: &str, s: &str, limit: usize) -> Result<Vec<u8>, VerifyError> {
    if s.len() > limit {
        return Err(malformed(format!("`{what}` exceeds {limit} characters")));
    }
    STANDARD
        .decode(s)
        .map_err(|e| malformed(format!("`{what}` is not base64: {e}")))
}

impl Verifier for Tpm {
    /// Signature by the AK, PCR digest, nonce == report data zero-padded or truncated to 32 bytes (when
    /// expected), init data through PCR8 (when expected), then the AK certificate (when present,
    /// or required by configured roots): after the quote, so a forged quote costs no X.509 work.
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let ev = Evidence::decode(evidence)?;
        let ak_spki = base64_field("ak_public", &ev.ak_public, MAX_FIELD)?;
        let ak = AkPublic::from_spki_der(&ak_spki).map_err(rejected)?;
        let signature = trustee_vtpm::parse_signature(&base64_field(
            "tpm_quote.signature",
            &ev.signature,
            MAX_FIELD,
        )?)
        .map_err(rejected)?;
        let message = base64_field("tpm_quote.message", &ev.message, MAX_FIELD)?;
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
        let certificate = self.ak_certificate(&ev, &ak_spki, inputs.now_unix)?;
        let mut claims = Map::new();
        add_certificate_claims(&mut claims, certificate.as_ref());
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

/// `ak_certified`, and for a certified AK its certificate's subject, issuer and notAfter.
fn add_certificate_claims(claims: &mut Map<String, Value>, cert: Option<&AkCertificate>) {
    let certified = cert.filter(|c| c.certified);
    claims.insert("ak_certified".into(), Value::Bool(certified.is_some()));
    if let Some(c) = certified {
        claims.insert("ak_cert_subject".into(), Value::String(c.subject.clone()));
        claims.insert("ak_cert_issuer".into(), Value::String(c.issuer.clone()));
        claims.insert(
            "ak_cert_not_after".into(),
            Value::String(c.not_after.clone()),
        );
    }
}

#[cfg(test)]
#[path = "tpm_cert_tests.rs"]
mod cert_tests;
#[cfg(test)]
#[path = "tpm_tests.rs"]
mod tests;
