//! Intel SGX DCAP quotes (version 3, as Occlum and Gramine enclaves present
//! them): parser, upstream-shaped claims, offline signature checks and the
//! DCAP appraisal. The PCK chain, QE report, collateral and QE identity
//! checks are the TDX ones; only the body (an enclave report), the layout of
//! the signature data and the TCB matching (SGX components and PCE SVN only)
//! differ.

use serde_json::{Map, Value};

use crate::appraisal::{sgx_level, with_qe};
use crate::dcap::{
    check_collateral, check_pck, check_shared, push_unique, supplemental, CheckedCollateral,
    CheckedPck, CollateralKey, DcapTee, Outcome, VerifyOptions,
};
use crate::ecdsa::P256Key;
use crate::reader::Reader;
use crate::tcb_info::TcbStatus;
use crate::time::format_rfc3339;
use crate::verify::{signatures_of, SeenSignatures, SignatureReport, VerifyError};
use crate::{
    parse_enclave_report, parse_header, parse_signature_data, pck, to_usize, Collateral, DcapError,
    EnclaveReport, Header, ParseError, SignatureData, ATT_KEY_TYPE_ECDSA_P256, ENCLAVE_REPORT_LEN,
    HEADER_LEN,
};

/// `tee_type` (QVL: `att_key_data_0`) of an SGX quote.
pub const TEE_TYPE_SGX: u32 = 0;

/// A parsed SGX quote v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxQuote {
    pub header: Header,
    /// The enclave's report body.
    pub body: EnclaveReport,
    /// Declared signature data length.
    pub signature_data_len: u32,
    pub signature: SignatureData,
    /// Number of bytes after the signature data (ignored).
    pub trailing_len: usize,
}

impl SgxQuote {
    /// Length of the bytes the quote signature covers (header + body).
    pub const SIGNED_LEN: usize = HEADER_LEN + ENCLAVE_REPORT_LEN;

    /// The bytes covered by the quote signature; the parser keeps the header
    /// fields and the raw body, so this is lossless.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut v = Vec::with_capacity(Self::SIGNED_LEN);
        v.extend_from_slice(&h.version.to_le_bytes());
        v.extend_from_slice(&h.att_key_type.to_le_bytes());
        v.extend_from_slice(&h.tee_type.to_le_bytes());
        v.extend_from_slice(&h.reserved);
        v.extend_from_slice(&h.vendor_id);
        v.extend_from_slice(&h.user_data);
        v.extend_from_slice(&self.body.raw);
        v
    }
}

/// Parse an SGX quote v3 (ECDSA-256 attestation key, PCK chain as
/// certification data type 5). Never panics.
pub fn parse_sgx_quote(bytes: &[u8]) -> Result<SgxQuote, ParseError> {
    let mut r = Reader::new(bytes);
    let header = parse_header(&mut r)?;
    if header.version != 3 {
        return Err(ParseError::UnsupportedSgxVersion(header.version));
    }
    if header.att_key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(ParseError::UnsupportedAttKeyType(header.att_key_type));
    }
    if header.tee_type != TEE_TYPE_SGX {
        return Err(ParseError::UnsupportedSgxTeeType(header.tee_type));
    }
    let body_raw = r.take("enclave report body", ENCLAVE_REPORT_LEN)?;
    let body = parse_enclave_report(body_raw, HEADER_LEN)?;
    let signature_data_len = r.u32("signature data length")?;
    let sig_bytes = r.take("signature data", to_usize(signature_data_len))?;
    let trailing_len = r.remaining();
    let signature = parse_signature_data(sig_bytes, SgxQuote::SIGNED_LEN + 4, false)?;
    Ok(SgxQuote {
        header,
        body,
        signature_data_len,
        signature,
        trailing_len,
    })
}

/// The enclave report fields upstream names, with their byte ranges in the
/// 384-byte body (the reserved ranges are reported too).
const BODY_FIELDS: [(&str, usize, usize); 17] = [
    ("cpu_svn", 0, 16),
    ("misc_select", 16, 20),
    ("reserved1", 20, 32),
    ("isv_ext_prod_id", 32, 48),
    ("attributes.flags", 48, 56),
    ("attributes.xfrm", 56, 64),
    ("mr_enclave", 64, 96),
    ("reserved2", 96, 128),
    ("mr_signer", 128, 160),
    ("reserved3", 160, 192),
    ("config_id", 192, 256),
    ("isv_prod_id", 256, 258),
    ("isv_svn", 258, 260),
    ("config_svn", 260, 262),
    ("reserved4", 262, 304),
    ("isv_family_id", 304, 320),
    ("report_data", 320, 384),
];

/// Upstream's SGX claims: `header`, `body` (every field as hex in quote byte
/// order), `report_data`, `init_data` (the config id) and
/// `platform_instance_id` when the PCK leaf carries one.
pub fn sgx_claims(quote: &SgxQuote) -> Value {
    claims_with(
        quote,
        pck::platform_instance_id(&quote.signature.pck_cert_chain),
    )
}

fn claims_with(quote: &SgxQuote, platform_instance_id: Option<[u8; 16]>) -> Value {
    let h = &quote.header;
    let mut header = Map::new();
    let mut put = |k: &str, v: &[u8]| {
        header.insert(k.into(), Value::String(hex::encode(v)));
    };
    put("version", &h.version.to_le_bytes());
    put("att_key_type", &h.att_key_type.to_le_bytes());
    put("att_key_data_0", &h.tee_type.to_le_bytes());
    put("qe_svn", h.reserved.get(..2).unwrap_or_default());
    put("pce_svn", h.reserved.get(2..).unwrap_or_default());
    put("vendor_id", &h.vendor_id);
    put("user_data", &h.user_data);

    let raw = &quote.body.raw;
    let body: Map<String, Value> = BODY_FIELDS
        .iter()
        .map(|&(k, a, b)| {
            let v = raw.get(a..b).map(hex::encode).unwrap_or_default();
            (k.to_owned(), Value::String(v))
        })
        .collect();

    let mut out = Map::new();
    out.insert("header".into(), Value::Object(header));
    out.insert("body".into(), Value::Object(body));
    out.insert(
        "report_data".into(),
        hex::encode(quote.body.report_data).into(),
    );
    out.insert("init_data".into(), hex::encode(quote.body.config_id).into());
    if let Some(piid) = platform_instance_id {
        out.insert("platform_instance_id".into(), hex::encode(piid).into());
    }
    Value::Object(out)
}

/// Offline signature checks of an SGX quote, as [`crate::verify_signatures`]
/// does them for a TDX quote.
pub fn verify_sgx_signatures(
    quote: &SgxQuote,
    trusted_roots_sha256: &[[u8; 32]],
    now_unix: Option<i64>,
) -> Result<SignatureReport, VerifyError> {
    signatures_of(
        &quote.signature,
        &quote.signed_bytes(),
        SgxQuote::SIGNED_LEN,
        trusted_roots_sha256,
        now_unix,
    )
}

/// Result of a successful SGX appraisal.
#[derive(Debug, Clone, PartialEq)]
pub struct SgxVerified {
    pub quote: SgxQuote,
    /// Upstream's SGX claims merged with the DCAP supplemental claims.
    pub claims: Value,
    pub tcb_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    /// RFC 3339.
    pub tcb_date: String,
    pub qe_tcb_status: TcbStatus,
    /// `true` when some collateral was not valid at `now_unix`.
    pub collateral_expired: bool,
    pub collateral_key: CollateralKey,
}

/// The per-call part of an SGX appraisal: the checks shared with TDX, then
/// the platform TCB level from the PCK certificate's SGX components.
pub(crate) fn appraise_sgx(
    quote: SgxQuote,
    pck: &CheckedPck,
    col: &CheckedCollateral,
    now: i64,
    qe_checked: Option<&P256Key>,
) -> Result<(SgxVerified, P256Key), DcapError> {
    let signed = quote.signed_bytes();
    let (qe, att_key) = check_shared(
        &quote.header,
        &quote.signature,
        (&signed, SgxQuote::SIGNED_LEN),
        pck,
        col,
        qe_checked,
    )?;
    let platform = sgx_level(&col.tcb_info, &pck.ext)?;
    let mut advisory_ids = Vec::new();
    push_unique(&mut advisory_ids, &platform.advisory_ids);
    push_unique(&mut advisory_ids, &qe.advisory_ids);
    let tcb_status = with_qe(platform.status, qe.status);
    let outcome = Outcome {
        tcb_status,
        tcb_status_current: tcb_status,
        advisory_ids,
        tcb_date: format_rfc3339(platform.tcb_date.min(qe.tcb_date)),
    };
    let mut claims = match claims_with(&quote, pck.platform_instance_id()) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let collateral_expired = supplemental(&mut claims, pck, col, now, &outcome);
    let verified = SgxVerified {
        claims: Value::Object(claims),
        tcb_status,
        advisory_ids: outcome.advisory_ids,
        tcb_date: outcome.tcb_date,
        qe_tcb_status: qe.status,
        collateral_expired,
        collateral_key: pck.key(DcapTee::Sgx),
        quote,
    };
    Ok((verified, att_key))
}

/// Appraise a raw SGX quote against its collateral (SGX TCB info, QE
/// identity `QE`), without caching.
pub fn verify_sgx_quote(
    raw_quote: &[u8],
    collateral: &Collateral,
    opts: &VerifyOptions,
) -> Result<SgxVerified, DcapError> {
    let quote = parse_sgx_quote(raw_quote)?;
    let trusted = opts.trusted();
    let mut seen = SeenSignatures::default();
    let col = check_collateral(collateral, DcapTee::Sgx, &trusted, &mut seen)?;
    let pck = check_pck(&quote.signature, &trusted, &mut seen)?;
    appraise_sgx(quote, &pck, &col, opts.now_unix, None).map(|(v, _)| v)
}
