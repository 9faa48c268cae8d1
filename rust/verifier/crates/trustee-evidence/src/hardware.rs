//! TDX and SNP: the hardware verifiers, which need more than the evidence itself.
//!
//! Collateral (TDX) and VEK certificates (SNP) come from the caller, who fetches them with
//! I/O this crate does not do; [`tdx_collateral_key`] and [`snp_needs`] say what to fetch.
//! Both keep memo caches of verified collateral and certificate chains inside
//! [`crate::Verifiers`].

use std::sync::{Arc, Mutex, PoisonError};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};

use trustee_snp::{regularize, CertType, SnpVerifier};
use trustee_tdx::{Collateral, DcapVerifier, ParseError};

use crate::{ClaimsEntry, Expectations, Inputs, Verifier, VerifyError};

/// Parsed collateral documents kept for reuse; a KBS sees a handful of platforms.
const COLLATERAL_CACHE: usize = 32;

/// DCAP appraisal (TDX and SGX quotes) against caller-fetched collateral, with parsed
/// collateral kept for reuse; one instance serves both TEEs, so a platform's PCK chain and
/// QE report are checked once.
pub(crate) struct Dcap {
    pub(crate) dcap: DcapVerifier,
    extra_roots_sha256: Vec<[u8; 32]>,
    collaterals: Mutex<Vec<(Vec<u8>, Arc<Collateral>)>>,
}

impl Dcap {
    pub(crate) fn new(extra_roots_sha256: Vec<[u8; 32]>) -> Self {
        Self {
            dcap: DcapVerifier::default(),
            extra_roots_sha256,
            collaterals: Mutex::default(),
        }
    }

    pub(crate) fn options(&self, now_unix: i64) -> trustee_tdx::VerifyOptions {
        trustee_tdx::VerifyOptions {
            now_unix,
            trusted_roots_sha256: self.extra_roots_sha256.clone(),
        }
    }

    /// `appraise` (one of [`DcapVerifier`]'s quote checks) with the caller's collateral for
    /// `tee` and the trust settings; its error becomes a refusal naming `tee`.
    pub(crate) fn appraise<T>(
        &self,
        tee: &'static str,
        inputs: &Inputs<'_>,
        appraise: impl FnOnce(
            &DcapVerifier,
            &Collateral,
            &trustee_tdx::VerifyOptions,
        ) -> Result<T, trustee_tdx::DcapError>,
    ) -> Result<T, VerifyError> {
        let collateral = self.collateral(tee, inputs)?;
        appraise(&self.dcap, &collateral, &self.options(inputs.now_unix)).map_err(|e| {
            VerifyError::Rejected {
                tee,
                reason: e.to_string(),
            }
        })
    }

    /// The caller's collateral for `tee`, parsed (or taken from the cache).
    pub(crate) fn collateral(
        &self,
        tee: &'static str,
        inputs: &Inputs<'_>,
    ) -> Result<Arc<Collateral>, VerifyError> {
        let raw = inputs.tdx_collateral.ok_or_else(|| VerifyError::Missing {
            tee,
            what: format!("DCAP collateral (configure a collateral source for the {tee} verifier)"),
        })?;
        let mut cache = self
            .collaterals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A handful of entries: comparing the bytes is cheaper than hashing ~11 KB per call.
        if let Some((_, c)) = cache.iter().find(|(k, _)| k.as_slice() == raw) {
            return Ok(Arc::clone(c));
        }
        let parsed = Arc::new(
            Collateral::from_json(raw).map_err(|e| VerifyError::Rejected {
                tee,
                reason: format!("collateral: {e}"),
            })?,
        );
        if cache.len() >= COLLATERAL_CACHE {
            cache.remove(0);
        }
        cache.push((raw.to_vec(), Arc::clone(&parsed)));
        Ok(parsed)
    }
}

/// TDX: the DCAP quote and the TD's bindings and event log.
pub(crate) struct Tdx {
    dcap: Arc<Dcap>,
}

impl Tdx {
    pub(crate) fn new(dcap: Arc<Dcap>) -> Self {
        Self { dcap }
    }

    /// DCAP appraisal of `quote` against the caller's collateral; errors name `tee`
    /// (`tdx`, or `az-tdx-vtpm` for the TD quote an Azure vTPM guest carries).
    pub(crate) fn appraise(
        &self,
        tee: &'static str,
        quote: &[u8],
        inputs: &Inputs<'_>,
    ) -> Result<trustee_tdx::Verified, VerifyError> {
        self.dcap.appraise(tee, inputs, |dcap, collateral, opts| {
            dcap.verify_quote(quote, collateral, opts)
        })
    }
}

impl Verifier for Tdx {
    /// The quote against its collateral, the report-data and init-data bindings, and the CC
    /// event log replayed against the RTMRs. One `cpu` entry.
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let ev = TdxEvidence::decode(evidence)?;
        refuse_version("tdx", &ev.quote, |v| v == 3, ParseError::UnsupportedVersion)?;
        let verified = self.appraise("tdx", &ev.quote, inputs)?;
        let body = &verified.quote.body;
        check_dcap_bindings(
            "tdx",
            &expected,
            &body.report_data,
            ("MRCONFIGID", &body.mr_config_id),
        )?;
        let mut claims = verified.claims;
        if let Some(log) = ev.cc_eventlog.filter(|l| !l.is_empty()) {
            let parsed = trustee_eventlog::parse(&log).map_err(|e| VerifyError::Rejected {
                tee: "tdx",
                reason: format!("CC event log: {e}"),
            })?;
            parsed
                .check_rtmrs(&body.rtmr)
                .map_err(|e| VerifyError::Rejected {
                    tee: "tdx",
                    reason: format!("CC event log replay: {e}"),
                })?;
            if let Value::Object(map) = &mut claims {
                map.insert("uefi_event_logs".into(), parsed.claims_json());
            }
        }
        Ok(vec![(claims, "cpu".into())])
    }
}

/// SNP: the report and its VEK chain, with the chain memo of [`SnpVerifier`].
pub(crate) struct Snp {
    pub(crate) snp: SnpVerifier,
    pub(crate) extra_roots_sha256: Vec<[u8; 32]>,
    allow_nonzero_vmpl: bool,
}

impl Snp {
    pub(crate) fn new(extra_roots_sha256: Vec<[u8; 32]>, allow_nonzero_vmpl: bool) -> Self {
        Self {
            snp: SnpVerifier::default(),
            extra_roots_sha256,
            allow_nonzero_vmpl,
        }
    }
}

impl Verifier for Snp {
    /// The report, its VEK chain to the pinned (or explicitly trusted) AMD roots, the TCB
    /// and chip-ID checks, VMPL, and the report-data / host-data bindings.
    fn verify(
        &self,
        evidence: &[u8],
        expected: Expectations<'_>,
        inputs: &Inputs<'_>,
    ) -> Result<Vec<ClaimsEntry>, VerifyError> {
        let opts = trustee_snp::VerifyOptions {
            now_unix: inputs.now_unix,
            expected_report_data: expected.report_data.map(<[u8]>::to_vec),
            expected_host_data: expected.init_data_hash.map(<[u8]>::to_vec),
            allow_nonzero_vmpl: self.allow_nonzero_vmpl,
            extra_trusted_sha256: self.extra_roots_sha256.clone(),
        };
        let verified = self
            .snp
            .verify(evidence, inputs.snp_certs, &opts)
            .map_err(|e| VerifyError::Rejected {
                tee: "snp",
                reason: e.to_string(),
            })?;
        // Upstream's claims stay exactly as they are; VMPL and the other report bits that
        // upstream does not expose are added beside them for policies to judge.
        let mut claims = verified.claims;
        if let (Value::Object(map), Value::Object(extra)) = (&mut claims, verified.extended_claims)
        {
            for (k, v) in extra {
                map.entry(k).or_insert(v);
            }
        }
        Ok(vec![(claims, "cpu".into())])
    }
}

/// The attester's TDX evidence: `{"quote": base64, "cc_eventlog": base64 | null}`.
struct TdxEvidence {
    quote: Vec<u8>,
    cc_eventlog: Option<Vec<u8>>,
}

/// The evidence document and its `quote` member (base64 standard, non-empty): the form the
/// TDX and SGX attesters share.
pub(crate) fn quote_document(
    tee: &'static str,
    evidence: &[u8],
) -> Result<(Map<String, Value>, Vec<u8>), VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed { tee, reason };
    let doc: Map<String, Value> =
        serde_json::from_slice(evidence).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let quote = match doc.get("quote") {
        Some(Value::String(s)) if !s.is_empty() => STANDARD
            .decode(s)
            .map_err(|e| malformed(format!("`quote` is not base64: {e}")))?,
        Some(Value::String(_)) => return Err(malformed("`quote` is empty".into())),
        Some(_) => return Err(malformed("`quote` is not a string".into())),
        None => return Err(malformed("missing `quote`".into())),
    };
    Ok((doc, quote))
}

impl TdxEvidence {
    fn decode(evidence: &[u8]) -> Result<Self, VerifyError> {
        let malformed = |reason: String| VerifyError::Malformed { tee: "tdx", reason };
        let (doc, quote) = quote_document("tdx", evidence)?;
        let cc_eventlog = match doc.get("cc_eventlog") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                STANDARD
                    .decode(s)
                    .map_err(|e| malformed(format!("`cc_eventlog` is not base64: {e}")))?,
            ),
            Some(_) => return Err(malformed("`cc_eventlog` is not a string".into())),
        };
        Ok(Self { quote, cc_eventlog })
    }
}

/// The claims of TDX evidence without any verification (no signature, collateral or
/// event-log replay): for inspecting evidence that cannot be appraised here.
pub fn tdx_parsed_claims(evidence: &[u8]) -> Result<Value, VerifyError> {
    let ev = TdxEvidence::decode(evidence)?;
    let rejected = |reason: String| VerifyError::Rejected { tee: "tdx", reason };
    let quote = trustee_tdx::parse_quote(&ev.quote).map_err(|e| rejected(e.to_string()))?;
    let mut claims = trustee_tdx::claims(&quote);
    if let Some(log) = ev.cc_eventlog.filter(|l| !l.is_empty()) {
        let parsed =
            trustee_eventlog::parse(&log).map_err(|e| rejected(format!("CC event log: {e}")))?;
        if let Value::Object(map) = &mut claims {
            map.insert("uefi_event_logs".into(), parsed.claims_json());
        }
    }
    Ok(claims)
}

/// What a caller must fetch to verify a DCAP quote: the quote's TEE, its platform's FMSPC and
/// PCK CA type. Takes `tdx` or `sgx` evidence (which share the `quote` member) and
/// `az-tdx-vtpm` evidence (which carries its TD quote as `td_quote`).
pub fn tdx_collateral_key(evidence: &[u8]) -> Result<trustee_tdx::CollateralKey, VerifyError> {
    let (tee, quote) = match crate::azure::td_quote_of(evidence)? {
        Some(quote) => ("az-tdx-vtpm", quote),
        None => ("tdx", quote_document("tdx", evidence)?.1),
    };
    trustee_tdx::collateral_key(&quote).map_err(|e| VerifyError::Malformed {
        tee,
        reason: e.to_string(),
    })
}

/// What a caller may need to fetch for SNP evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpNeeds {
    /// The VCEK to fetch, when the evidence carries no VCEK/VLEK.
    pub vcek: Option<trustee_snp::VcekRequest>,
    /// Product from the report's CPUID fields (`None` for v2 reports).
    pub product: Option<&'static str>,
}

pub fn snp_needs(evidence: &[u8]) -> Result<SnpNeeds, VerifyError> {
    let malformed = |e: trustee_snp::VerifyError| VerifyError::Malformed {
        tee: "snp",
        reason: e.to_string(),
    };
    let ev = trustee_snp::decode_evidence(evidence).map_err(malformed)?;
    let chain = ev.cert_chain.unwrap_or_default();
    let has = |t: &CertType| chain.iter().any(|e| &e.cert_type == t);
    let has_vek = has(&CertType::Vcek) || has(&CertType::Vlek);
    let vcek = if has_vek {
        None
    } else {
        Some(trustee_snp::vcek_request(evidence).map_err(malformed)?)
    };
    Ok(SnpNeeds {
        vcek,
        product: ev
            .report
            .cpuid_generation()
            .map_err(malformed)?
            .map(|g| g.name()),
    })
}

/// Refuse a quote of the other DCAP TEE before any collateral is looked for, so the error
/// names the wrong quote rather than missing collateral.
pub(crate) fn refuse_version(
    tee: &'static str,
    quote: &[u8],
    refused: fn(u16) -> bool,
    error: fn(u16) -> ParseError,
) -> Result<(), VerifyError> {
    match quote.get(..2) {
        Some(&[lo, hi]) if refused(u16::from_le_bytes([lo, hi])) => Err(VerifyError::Rejected {
            tee,
            reason: error(u16::from_le_bytes([lo, hi])).to_string(),
        }),
        _ => Ok(()),
    }
}

/// REPORT_DATA and the quote's init-data field against what the caller expects, each
/// regularized as upstream does: zero-padded or truncated to the field's size.
pub(crate) fn check_dcap_bindings(
    tee: &'static str,
    expected: &Expectations<'_>,
    report_data: &[u8],
    (init_field, init_data): (&'static str, &[u8]),
) -> Result<(), VerifyError> {
    if let Some(e) = expected.report_data {
        check_binding(
            tee,
            "REPORT_DATA",
            &regularize(e, report_data.len()),
            report_data,
        )?;
    }
    if let Some(e) = expected.init_data_hash {
        check_binding(tee, init_field, &regularize(e, init_data.len()), init_data)?;
    }
    Ok(())
}

pub(crate) fn check_binding(
    tee: &'static str,
    field: &'static str,
    expected: &[u8],
    actual: &[u8],
) -> Result<(), VerifyError> {
    if expected == actual {
        return Ok(());
    }
    Err(VerifyError::BindingMismatch {
        tee,
        field,
        expected_hex: hex::encode(expected),
        actual_hex: hex::encode(actual),
    })
}
