//! Azure confidential VMs: `az-snp-vtpm` and `az-tdx-vtpm`.
//!
//! The guest's vTPM signs a quote over the caller's report data with its attestation key;
//! that key sits in the HCL report's runtime claims, whose digest is the hardware report's
//! REPORT_DATA; the hardware report is then verified as SNP (VCEK to AMD's ASK/ARK) or TDX
//! (DCAP) evidence. Evidence versions 0 (byte arrays, PEM VCEK), 1 and 2 (hex quote,
//! base64url reports) are accepted; version 2 also binds the report data in `user-data`.

use std::sync::Arc;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::{Map, Value};
use trustee_vtpm::{Hardware, HclReport, TpmSignature, VtpmError};

use crate::hardware::{check_binding, Snp, Tdx};
use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

/// base64url as the attester's serde_with writes it, padded or not.
const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// A quote carries one bank of 24 PCRs; a few spare for other selections.
const MAX_PCRS: usize = 32;
const MAX_SIGNATURE: usize = 1024;
/// DER or PEM VCEK, or a TD quote with its certification data: a few KB each.
const MAX_BLOB: usize = 64 * 1024;
/// The attestation key's name in errors.
const HCL_AK: &str = "HCLAkPub";

/// The parts of Azure vTPM evidence, whatever its version.
pub(crate) struct AzEvidence {
    version: u64,
    signature: TpmSignature,
    message: Vec<u8>,
    pcrs: Vec<[u8; 32]>,
    hcl_report: Vec<u8>,
    /// The VCEK (DER, or PEM in v0) or the TD quote.
    hardware: Vec<u8>,
}

fn malformed(tee: &'static str) -> impl Fn(String) -> VerifyError {
    move |reason| VerifyError::Malformed { tee, reason }
}

fn rejected(tee: &'static str) -> impl Fn(VtpmError) -> VerifyError {
    move |e| VerifyError::Rejected {
        tee,
        reason: e.to_string(),
    }
}

impl AzEvidence {
    /// `hardware_key`: `vcek` or `td_quote`.
    fn decode(tee: &'static str, evidence: &[u8], hardware_key: &str) -> Result<Self, VerifyError> {
        let bad = malformed(tee);
        let doc: Map<String, Value> =
            serde_json::from_slice(evidence).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        Self::from_doc(tee, &doc, hardware_key)
    }

    /// Versions 1 and 2: the quote's parts in hex, the HCL report and the VCEK or TD quote in
    /// base64url.
    fn from_doc(
        tee: &'static str,
        doc: &Map<String, Value>,
        hardware_key: &str,
    ) -> Result<Self, VerifyError> {
        let bad = malformed(tee);
        let version = match doc.get("version") {
            None => 0,
            Some(v) => match v.as_u64() {
                Some(n @ (1 | 2)) => n,
                _ => return Err(bad(format!("`version` {v} is not 1 or 2"))),
            },
        };
        let get = |key: &str| doc.get(key).ok_or_else(|| bad(format!("missing `{key}`")));
        if version == 0 {
            return Self::from_v0(tee, doc, hardware_key);
        }
        let quote = get("tpm_quote")?;
        let hex_of = |k: &str, max: usize| -> Result<Vec<u8>, VerifyError> {
            let s = quote
                .get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("`tpm_quote.{k}` is not a hex string")))?;
            if s.len() > 2 * max {
                return Err(bad(format!("`tpm_quote.{k}` exceeds {max} bytes")));
            }
            hex::decode(s).map_err(|e| bad(format!("`tpm_quote.{k}` is not hex: {e}")))
        };
        let pcr_strings: Vec<&str> = array(
            quote.get("pcrs").unwrap_or(&Value::Null),
            MAX_PCRS,
            "tpm_quote.pcrs",
            &bad,
        )?
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| bad("`tpm_quote.pcrs` holds a non-string".into()))
        })
        .collect::<Result<_, _>>()?;
        let b64 = |key: &str, max: usize| -> Result<Vec<u8>, VerifyError> {
            let s = get(key)?
                .as_str()
                .ok_or_else(|| bad(format!("`{key}` is not a string")))?;
            if s.len() > max / 3 * 4 + 4 {
                return Err(bad(format!("`{key}` exceeds {max} bytes")));
            }
            URL_SAFE_ANY
                .decode(s)
                .map_err(|e| bad(format!("`{key}` is not base64url: {e}")))
        };
        Ok(Self {
            version,
            signature: TpmSignature::RsaSsa(hex_of("signature", MAX_SIGNATURE)?),
            message: hex_of("message", trustee_vtpm::MAX_MESSAGE)?,
            pcrs: trustee_vtpm::pcrs_from_hex(&pcr_strings).map_err(rejected(tee))?,
            hcl_report: b64("hcl_report", trustee_vtpm::MAX_HCL_REPORT)?,
            hardware: b64(hardware_key, MAX_BLOB)?,
        })
    }

    /// v0: everything as byte arrays, the quote under `quote` (SNP) or `tpm_quote` (TDX), the
    /// HCL report under `report` (SNP) or `hcl_report` (TDX), a PEM VCEK.
    fn from_v0(
        tee: &'static str,
        doc: &Map<String, Value>,
        hardware_key: &str,
    ) -> Result<Self, VerifyError> {
        let bad = malformed(tee);
        let get = |key: &str| doc.get(key).ok_or_else(|| bad(format!("missing `{key}`")));
        let (quote_key, hcl_key) = if tee == "az-snp-vtpm" {
            ("quote", "report")
        } else {
            ("tpm_quote", "hcl_report")
        };
        let quote = get(quote_key)?;
        let field = |k: &str| {
            quote
                .get(k)
                .ok_or_else(|| bad(format!("missing `{quote_key}.{k}`")))
        };
        let pcrs = array(field("pcrs")?, MAX_PCRS, &format!("{quote_key}.pcrs"), &bad)?
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let bytes = bytes_of(p, 32, &format!("{quote_key}.pcrs[{i}]"), &bad)?;
                trustee_vtpm::pcr_from_bytes(i, &bytes).map_err(rejected(tee))
            })
            .collect::<Result<_, _>>()?;
        let hardware = match get(hardware_key)? {
            Value::String(pem) if hardware_key == "vcek" => bounded(pem.as_bytes(), &bad)?,
            other => bytes_of(other, MAX_BLOB, hardware_key, &bad)?,
        };
        Ok(Self {
            version: 0,
            signature: TpmSignature::RsaSsa(bytes_of(
                field("signature")?,
                MAX_SIGNATURE,
                "signature",
                &bad,
            )?),
            message: bytes_of(
                field("message")?,
                trustee_vtpm::MAX_MESSAGE,
                "message",
                &bad,
            )?,
            pcrs,
            hcl_report: bytes_of(get(hcl_key)?, trustee_vtpm::MAX_HCL_REPORT, hcl_key, &bad)?,
            hardware,
        })
    }
}

fn bounded(bytes: &[u8], bad: &impl Fn(String) -> VerifyError) -> Result<Vec<u8>, VerifyError> {
    if bytes.len() > MAX_BLOB {
        return Err(bad(format!(
            "a field of {} bytes exceeds {MAX_BLOB}",
            bytes.len()
        )));
    }
    Ok(bytes.to_vec())
}

fn array<'v>(
    v: &'v Value,
    max: usize,
    what: &str,
    bad: &impl Fn(String) -> VerifyError,
) -> Result<&'v Vec<Value>, VerifyError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(format!("`{what}` is not an array")))?;
    if items.len() > max {
        return Err(bad(format!(
            "`{what}` has {} items, at most {max}",
            items.len()
        )));
    }
    Ok(items)
}

/// A JSON array of byte values.
fn bytes_of(
    v: &Value,
    max: usize,
    what: &str,
    bad: &impl Fn(String) -> VerifyError,
) -> Result<Vec<u8>, VerifyError> {
    array(v, max, what, bad)?
        .iter()
        .map(|b| {
            b.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| bad(format!("`{what}` holds a non-byte {b}")))
        })
        .collect()
}

/// The TD quote of az-tdx-vtpm evidence (`None` for evidence without `td_quote`).
pub(crate) fn td_quote_of(evidence: &[u8]) -> Result<Option<Vec<u8>>, VerifyError> {
    let doc: Map<String, Value> = match serde_json::from_slice(evidence) {
        Ok(doc) => doc,
        // Not ours to judge: the caller's own decoding reports it.
        Err(_) => return Ok(None),
    };
    if !doc.contains_key("td_quote") {
        return Ok(None);
    }
    Ok(Some(
        AzEvidence::from_doc("az-tdx-vtpm", &doc, "td_quote")?.hardware,
    ))
}

/// What the vTPM half establishes: the quoted PCRs (index, value) and the quote's nonce.
struct VtpmChecked {
    pcrs: Vec<(u8, [u8; 32])>,
    nonce: Vec<u8>,
}

/// The steps both Azure verifiers share, in upstream's order: the quote's signature by the
/// HCL's AK, its nonce against the report data (exactly, no padding), the PCR digest, then
/// the HCL variable-data digest against the hardware REPORT_DATA and, for version 2, the
/// report data at the start of `user-data`.
fn check_vtpm(
    tee: &'static str,
    ev: &AzEvidence,
    hcl: &HclReport<'_>,
    hw_report_data: &[u8],
    report_data: &[u8],
) -> Result<VtpmChecked, VerifyError> {
    let reject = rejected(tee);
    let runtime = hcl.runtime_claims().map_err(&reject)?;
    let quote = trustee_vtpm::Quote {
        message: &ev.message,
        signature: &ev.signature,
        pcrs: &ev.pcrs,
    };
    let attest = quote
        .verify_signature(&runtime.ak, HCL_AK)
        .map_err(&reject)?;
    check_binding(tee, "TPM quote nonce", report_data, &attest.extra_data)?;
    let pcrs = attest.check_pcrs(&ev.pcrs).map_err(&reject)?;
    let digest = hcl.var_data_digest().map_err(&reject)?;
    let bound = hw_report_data.get(..digest.len()).unwrap_or(hw_report_data);
    check_binding(
        tee,
        "hardware REPORT_DATA (HCL variable data digest)",
        &digest,
        bound,
    )?;
    if ev.version >= 2
        && !trustee_vtpm::user_data_starts_with(runtime.user_data.as_deref(), report_data)
    {
        return Err(VerifyError::Rejected {
            tee,
            reason: "user data in HCL variable data doesn't match report data".into(),
        });
    }
    Ok(VtpmChecked {
        pcrs,
        nonce: attest.extra_data,
    })
}

fn require_report_data<'a>(
    tee: &'static str,
    expected: &Expectations<'a>,
) -> Result<&'a [u8], VerifyError> {
    expected.report_data.ok_or_else(|| VerifyError::Missing {
        tee,
        what: "expected report data (the quote nonce must be bound to the session)".into(),
    })
}

fn check_init_data(
    tee: &'static str,
    checked: &VtpmChecked,
    expected: &Expectations<'_>,
) -> Result<(), VerifyError> {
    match expected.init_data_hash {
        Some(hash) => trustee_vtpm::check_init_data(&checked.pcrs, hash).map_err(rejected(tee)),
        None => Ok(()),
    }
}

/// Upstream's extension of the hardware claims: `tpm` {pcrNN}, then `init_data` (PCR8) and
/// `report_data` (the quote nonce) overwriting the hardware report's.
fn extend_claims(claims: &mut Map<String, Value>, checked: &VtpmChecked) {
    let tpm: Map<String, Value> = checked
        .pcrs
        .iter()
        .map(|(i, v)| (format!("pcr{i:02}"), Value::String(hex::encode(v))))
        .collect();
    claims.insert("tpm".into(), Value::Object(tpm));
    if let Some(pcr8) = trustee_vtpm::pcr_value(&checked.pcrs, trustee_vtpm::INIT_DATA_PCR) {
        claims.insert("init_data".into(), Value::String(hex::encode(pcr8)));
    }
    claims.insert(
        "report_data".into(),
        Value::String(hex::encode(&checked.nonce)),
    );
}

/// `az-snp-vtpm`: the vTPM steps, then the HCL's SNP report with the evidence's VCEK.
pub(crate) struct AzSnpVtpm {
    pub(crate) snp: Arc<Snp>,
}

const AZ_SNP: &str = "az-snp-vtpm";

impl Verifier for AzSnpVtpm {
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let report_data = require_report_data(AZ_SNP, &expected)?;
        let ev = AzEvidence::decode(AZ_SNP, evidence, "vcek")?;
        let hcl = HclReport::parse(&ev.hcl_report).map_err(rejected(AZ_SNP))?;
        let raw = hcl.hw_report(Hardware::Snp).map_err(rejected(AZ_SNP))?;
        // REPORT_DATA sits at 0x50..0x90 of the SNP report.
        let checked = check_vtpm(
            AZ_SNP,
            &ev,
            &hcl,
            raw.get(0x50..0x90).unwrap_or(&[]),
            report_data,
        )?;
        let opts = trustee_snp::VerifyOptions {
            now_unix: inputs.now_unix,
            // The HCL always runs at VMPL 0; the guest OS's own reports are not accepted here.
            allow_nonzero_vmpl: false,
            extra_trusted_sha256: self.snp.extra_roots_sha256.clone(),
            ..Default::default()
        };
        let verified = self
            .snp
            .snp
            .verify_report_with_vek(raw, &ev.hardware, inputs.snp_certs, &opts)
            .map_err(|e| VerifyError::Rejected {
                tee: AZ_SNP,
                reason: format!("SNP report: {e}"),
            })?;
        check_init_data(AZ_SNP, &checked, &expected)?;
        let mut claims = az_snp_claims(&verified);
        extend_claims(&mut claims, &checked);
        Ok(vec![(Value::Object(claims), "cpu".into())])
    }
}

/// Upstream's Azure SNP claims: the SNP claims with every value a string, `measurement`,
/// `report_data` and `init_data` in base64, and no `chip_id`.
fn az_snp_claims(verified: &trustee_snp::Verified) -> Map<String, Value> {
    let Value::Object(base) = trustee_snp::claims_for(&verified.report, verified.generation) else {
        return Map::new();
    };
    let report = &verified.report;
    base.into_iter()
        .filter_map(|(k, v)| {
            let value = match k.as_str() {
                "chip_id" => return None,
                "measurement" => STANDARD.encode(report.measurement),
                "report_data" => STANDARD.encode(report.report_data),
                "init_data" => STANDARD.encode(report.host_data),
                _ => match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            };
            Some((k, Value::String(value)))
        })
        .collect()
}

/// `az-tdx-vtpm`: the vTPM steps, then the TD quote through the TDX verifier's DCAP path.
pub(crate) struct AzTdxVtpm {
    pub(crate) tdx: Arc<Tdx>,
}

const AZ_TDX: &str = "az-tdx-vtpm";

/// Everything but the DCAP appraisal: the TD quote's bytes and the vTPM result.
fn az_tdx_prechecked(
    evidence: &[u8],
    expected: &Expectations<'_>,
) -> Result<(Vec<u8>, VtpmChecked), VerifyError> {
    let report_data = require_report_data(AZ_TDX, expected)?;
    let ev = AzEvidence::decode(AZ_TDX, evidence, "td_quote")?;
    let hcl = HclReport::parse(&ev.hcl_report).map_err(rejected(AZ_TDX))?;
    hcl.hw_report(Hardware::Tdx).map_err(rejected(AZ_TDX))?;
    if ev.hardware.get(..2) == Some(&[3, 0]) {
        return Err(VerifyError::Rejected {
            tee: AZ_TDX,
            reason: "expected a TDX quote (v4/v5), got an SGX quote (v3)".into(),
        });
    }
    let quote = trustee_tdx::parse_quote(&ev.hardware).map_err(|e| VerifyError::Rejected {
        tee: AZ_TDX,
        reason: format!("TD quote: {e}"),
    })?;
    let checked = check_vtpm(AZ_TDX, &ev, &hcl, &quote.body.report_data, report_data)?;
    check_init_data(AZ_TDX, &checked, expected)?;
    Ok((ev.hardware, checked))
}

impl Verifier for AzTdxVtpm {
    /// The vTPM and binding checks first (cheap), then DCAP.
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let (quote, checked) = az_tdx_prechecked(evidence, &expected)?;
        let verified = self.tdx.appraise(AZ_TDX, &quote, inputs)?;
        let mut claims = match verified.claims {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        extend_claims(&mut claims, &checked);
        Ok(vec![(Value::Object(claims), "cpu".into())])
    }
}

#[cfg(test)]
#[path = "azure_tests.rs"]
mod tests;
