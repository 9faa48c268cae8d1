//! Full DCAP appraisal of a TDX quote against its collateral, with Intel
//! QVL semantics (Intel's quote verification library): collateral signatures and chains, CRLs
//! and revocation, FMSPC / PCE-ID, QE identity, TCB level and TDX module
//! matching, status convergence, expiry as a claim rather than a failure.

use serde_json::{Map, Value};
use sha2::{Digest, Sha384};
use x509_cert::Certificate;

use crate::appraisal::{qe_level, relaunch, td_tcb, with_qe};
use crate::claims::claims_with;
use crate::collateral::Collateral;
use crate::crl::Crl;
use crate::ecdsa::P256Key;
use crate::error::DcapError;
use crate::pck::{
    pck_extension, pem_certificates, platform_instance_id_of_leaf, split_pem, PckExtension,
};
use crate::tcb_info::{IsvLevel, QeIdentity, TcbInfo, TcbStatus};
use crate::time::format_rfc3339;
use crate::verify::{
    check_pem_chain, check_qe_binding, check_qe_report_signature, check_quote_signature,
    check_raw_signature, check_split_chain, p256_key, pck_chain_with, unix, CheckedChain, PckChain,
    SeenSignatures, INTEL_SGX_ROOT_CA_SHA256,
};
use crate::{parse_quote, parse_sgx_quote, Header, Quote, SignatureData};

/// Caller-controlled inputs of an appraisal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Time at which validity windows are judged (unix seconds).
    pub now_unix: i64,
    /// Extra trusted root fingerprints (SHA-256 of the root DER), e.g. a
    /// test PKI. The Intel SGX Root CA is always trusted; empty = Intel only.
    pub trusted_roots_sha256: Vec<[u8; 32]>,
}

impl VerifyOptions {
    /// Intel root only, judged at `now_unix`.
    pub fn at(now_unix: i64) -> VerifyOptions {
        VerifyOptions {
            now_unix,
            trusted_roots_sha256: Vec::new(),
        }
    }

    pub(crate) fn trusted(&self) -> Vec<[u8; 32]> {
        let mut v = vec![INTEL_SGX_ROOT_CA_SHA256];
        v.extend(self.trusted_roots_sha256.iter().copied());
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Which PCK CA issued the PCK leaf (selects the PCK CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PckCaType {
    Processor,
    Platform,
}

impl PckCaType {
    /// `"processor"` / `"platform"`, as the PCS `ca` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCaType::Processor => "processor",
            PckCaType::Platform => "platform",
        }
    }
}

impl std::fmt::Display for PckCaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which TEE a DCAP quote comes from: it selects the collateral (PCS
/// `/tdx/…` or `/sgx/…` TCB info and QE identity) and the TCB matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DcapTee {
    Tdx,
    Sgx,
}

impl DcapTee {
    /// `"tdx"` / `"sgx"`, as in the PCS paths and the TEE names.
    pub fn as_str(self) -> &'static str {
        match self {
            DcapTee::Tdx => "tdx",
            DcapTee::Sgx => "sgx",
        }
    }
}

/// What a caller needs to fetch the collateral of a quote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CollateralKey {
    pub tee: DcapTee,
    /// FMSPC, upper-case hex (as the PCS `fmspc` parameter).
    pub fmspc: String,
    pub ca: PckCaType,
    /// PCE-ID, upper-case hex.
    pub pce_id: String,
}

/// Result of a successful appraisal.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub quote: Quote,
    /// Quote claims (upstream's, without `uefi_event_logs`) merged with the DCAP
    /// supplemental claims.
    pub claims: Value,
    pub tcb_status: TcbStatus,
    pub advisory_ids: Vec<String>,
    /// RFC 3339.
    pub tcb_date: String,
    pub qe_tcb_status: TcbStatus,
    /// Status of the TDX module identity level (versioned modules only).
    pub tdx_module_tcb_status: Option<TcbStatus>,
    /// `true` when some collateral was not valid at `now_unix`.
    pub collateral_expired: bool,
    pub collateral_key: CollateralKey,
}

/// Collateral whose signatures, chains and CRL signatures (where they do
/// not depend on the quote) were verified; independent of time.
#[derive(Debug, Clone)]
pub(crate) struct CheckedCollateral {
    pub(crate) tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    pck_crl: Crl,
    root_crl: Crl,
    /// PCK CA (DER) that was shown to have signed the PCK CRL.
    pck_crl_signer_der: Option<Vec<u8>>,
    root_sha256: [u8; 32],
    /// Certificate windows of the TCB-info, QE-identity and PCK-CRL chains.
    windows: Vec<(i64, i64)>,
}

/// A verified PCK chain with its decoded leaf extension.
#[derive(Debug, Clone)]
pub(crate) struct CheckedPck {
    chain: PckChain,
    pub(crate) ext: PckExtension,
    ca: PckCaType,
    /// The `platform_instance_id` claim, read once from the same chain bytes.
    platform_instance_id: Option<[u8; 16]>,
}

/// The only QE vendor the TCB info / QE identity collateral describes.
const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

const SIGNER_ROLES: [&str; 2] = ["TCB signing cert", "root CA"];
const PCK_CRL_ROLES: [&str; 2] = ["PCK CA", "root CA"];

fn serial_hex(c: &Certificate) -> String {
    hex::encode(c.tbs_certificate.serial_number.as_bytes())
}

fn check_signed_json(chain: &CheckedChain, body: &[u8], sig: &[u8]) -> Result<(), String> {
    let signer = chain.certs.first().ok_or("issuer chain is empty")?;
    let key = p256_key(signer).map_err(|e| format!("signing certificate key: {e}"))?;
    let rs: &[u8; 64] = sig
        .try_into()
        .map_err(|_| format!("signature is {} bytes, expected 64 (r||s)", sig.len()))?;
    check_raw_signature(&key, body, rs)
}

/// Verify the time-independent parts of the collateral.
pub(crate) fn check_collateral(
    c: &Collateral,
    tee: DcapTee,
    trusted: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<CheckedCollateral, DcapError> {
    let tcb_chain = check_pem_chain(&c.tcb_info_issuer_chain, &SIGNER_ROLES, trusted, seen)
        .map_err(|e| DcapError::TcbInfoIssuerChain(e.to_string()))?;
    // Intel serves the same issuer chain for both documents; the check is a
    // function of the bytes, so identical bytes need it once.
    let qe_chain = if c.qe_identity_issuer_chain == c.tcb_info_issuer_chain {
        tcb_chain.clone()
    } else {
        check_pem_chain(&c.qe_identity_issuer_chain, &SIGNER_ROLES, trusted, seen)
            .map_err(|e| DcapError::QeIdentityIssuerChain(e.to_string()))?
    };
    if qe_chain.root_sha256 != tcb_chain.root_sha256 {
        return Err(DcapError::QeIdentityIssuerChain(format!(
            "root SHA-256 {} differs from the TCB info issuer chain root {}",
            hex::encode(qe_chain.root_sha256),
            hex::encode(tcb_chain.root_sha256)
        )));
    }
    let root = tcb_chain
        .certs
        .last()
        .ok_or_else(|| DcapError::TcbInfoIssuerChain("issuer chain is empty".into()))?;
    let root_key = p256_key(root).map_err(DcapError::TcbInfoIssuerChain)?;

    let root_crl = Crl::from_der(&c.root_ca_crl).map_err(DcapError::RootCaCrl)?;
    root_crl
        .verify_issued_by(&root.tbs_certificate.subject, &root_key)
        .map_err(|e| DcapError::RootCaCrl(format!("signature by the root CA: {e}")))?;
    for (name, chain) in [
        ("TCB info signing certificate", &tcb_chain),
        ("QE identity signing certificate", &qe_chain),
    ] {
        if let Some(signer) = chain.certs.first() {
            if root_crl.revokes(signer.tbs_certificate.serial_number.as_bytes()) {
                return Err(DcapError::RevokedByRootCrl {
                    certificate: name,
                    serial: serial_hex(signer),
                });
            }
        }
    }

    check_signed_json(&tcb_chain, &c.tcb_info, &c.tcb_info_signature)
        .map_err(DcapError::TcbInfoSignature)?;
    check_signed_json(&qe_chain, &c.qe_identity, &c.qe_identity_signature)
        .map_err(DcapError::QeIdentitySignature)?;
    let tcb_info = TcbInfo::parse_for(&c.tcb_info, tee).map_err(DcapError::TcbInfoFormat)?;
    let qe_identity =
        QeIdentity::parse_for(&c.qe_identity, tee).map_err(DcapError::QeIdentityFormat)?;

    let pck_crl = Crl::from_der(&c.pck_crl).map_err(DcapError::PckCrl)?;
    let mut windows = tcb_chain.windows();
    windows.extend(qe_chain.windows());
    let mut pck_crl_signer_der = None;
    // An issuer chain without one decodable certificate means "use the
    // quote's PCK CA" (checked per quote in `appraise`).
    let pck_crl_split = split_pem(&c.pck_crl_issuer_chain);
    if !pck_crl_split.ders.is_empty() {
        let chain = check_split_chain(pck_crl_split, &PCK_CRL_ROLES, trusted, seen)
            .map_err(|e| DcapError::PckCrlIssuerChain(e.to_string()))?;
        if chain.root_sha256 != tcb_chain.root_sha256 {
            return Err(DcapError::PckCrlIssuerChain(format!(
                "root SHA-256 {} differs from the TCB info issuer chain root {}",
                hex::encode(chain.root_sha256),
                hex::encode(tcb_chain.root_sha256)
            )));
        }
        let (Some(ca), Some(ca_der)) = (chain.certs.first(), chain.ders.first()) else {
            return Err(DcapError::PckCrlIssuerChain("issuer chain is empty".into()));
        };
        if root_crl.revokes(ca.tbs_certificate.serial_number.as_bytes()) {
            return Err(DcapError::RevokedByRootCrl {
                certificate: "PCK CRL issuer (PCK CA)",
                serial: serial_hex(ca),
            });
        }
        let key = p256_key(ca).map_err(DcapError::PckCrlIssuerChain)?;
        pck_crl
            .verify_issued_by(&ca.tbs_certificate.subject, &key)
            .map_err(|e| {
                DcapError::PckCrl(format!("signature by the issuer chain's PCK CA: {e}"))
            })?;
        pck_crl_signer_der = Some(ca_der.clone());
        windows.extend(chain.windows());
    }
    Ok(CheckedCollateral {
        tcb_info,
        qe_identity,
        pck_crl,
        root_crl,
        pck_crl_signer_der,
        root_sha256: tcb_chain.root_sha256,
        windows,
    })
}

/// The validity of collateral checked on its own ([`check_collateral_alone`]), unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollateralValidity {
    /// The latest issue date, CRL thisUpdate or certificate notBefore.
    pub valid_from: i64,
    /// The earliest nextUpdate or certificate notAfter.
    pub valid_until: i64,
}

/// Check collateral without a quote, as an offline bundle is checked when loaded: every
/// issuer chain ends in a trusted root (`options`, time ignored), TCB info and QE identity
/// are signed by their chains and have `tee`'s form, both CRLs are signed by their issuers and
/// no signer is revoked. Unlike an appraisal, the PCK CRL's issuer chain is required: without
/// a quote nothing else could vouch for that CRL.
pub fn check_collateral_alone(
    c: &Collateral,
    tee: DcapTee,
    options: &VerifyOptions,
) -> Result<CollateralValidity, DcapError> {
    let col = check_collateral(c, tee, &options.trusted(), &mut SeenSignatures::default())?;
    if col.pck_crl_signer_der.is_none() {
        return Err(DcapError::PckCrlIssuerChain(
            "holds no certificate, so nothing vouches for the PCK CRL".into(),
        ));
    }
    let (issue, expiry) = collateral_dates(&col);
    Ok(CollateralValidity {
        valid_from: issue.iter().copied().max().unwrap_or(i64::MIN),
        valid_until: expiry.iter().copied().min().unwrap_or(i64::MAX),
    })
}

/// (issue dates, expiry dates) of every dated item of checked collateral: the documents, the
/// CRLs and the issuer chains' certificates.
fn collateral_dates(col: &CheckedCollateral) -> (Vec<i64>, Vec<i64>) {
    let info = &col.tcb_info;
    let mut issue = vec![
        col.pck_crl.this_update,
        col.root_crl.this_update,
        info.issue_date,
        col.qe_identity.issue_date,
    ];
    let mut expiry = vec![info.next_update, col.qe_identity.next_update];
    expiry.extend(col.pck_crl.next_update);
    expiry.extend(col.root_crl.next_update);
    for (nb, na) in col.windows.iter().copied() {
        issue.push(nb);
        expiry.push(na);
    }
    (issue, expiry)
}

/// commonName (2.5.4.3).
const OID_CN: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");

fn common_name(c: &Certificate) -> String {
    c.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == OID_CN)
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
        .unwrap_or_default()
}

fn ca_type(ca: &Certificate) -> Result<PckCaType, DcapError> {
    match common_name(ca).as_str() {
        "Intel SGX PCK Platform CA" => Ok(PckCaType::Platform),
        "Intel SGX PCK Processor CA" => Ok(PckCaType::Processor),
        other => Err(DcapError::PckCaType(format!(
            "PCK CA common name \"{other}\" is neither \"Intel SGX PCK Platform CA\" nor \"Intel SGX PCK Processor CA\""
        ))),
    }
}

pub(crate) fn check_pck(
    sd: &SignatureData,
    trusted: &[[u8; 32]],
    seen: &mut SeenSignatures,
) -> Result<CheckedPck, DcapError> {
    let chain = pck_chain_with(&sd.pck_cert_chain, trusted, seen)?;
    let ext = pck_extension(chain.leaf_der()).map_err(DcapError::PckExtension)?;
    let ca = ca_type(
        chain
            .cert(1)
            .ok_or_else(|| DcapError::PckCaType("PCK chain has no CA certificate".into()))?,
    )?;
    let platform_instance_id = platform_instance_id_of_leaf(chain.leaf_der());
    Ok(CheckedPck {
        chain,
        ext,
        ca,
        platform_instance_id,
    })
}

/// TEE / FMSPC / CA type / PCE-ID of a TDX (v4, v5) or SGX (v3) quote, read
/// from its PCK leaf without verifying anything, so the caller can fetch the
/// matching collateral.
pub fn collateral_key(raw_quote: &[u8]) -> Result<CollateralKey, DcapError> {
    let (tee, sd) = if raw_quote.get(..2) == Some(&3u16.to_le_bytes()[..]) {
        (DcapTee::Sgx, parse_sgx_quote(raw_quote)?.signature)
    } else {
        (DcapTee::Tdx, parse_quote(raw_quote)?.signature)
    };
    let ders = pem_certificates(&sd.pck_cert_chain);
    let leaf = ders
        .first()
        .ok_or_else(|| DcapError::PckExtension("quote carries no PCK certificate".into()))?;
    let ext = pck_extension(leaf).map_err(DcapError::PckExtension)?;
    let ca_der = ders
        .get(1)
        .ok_or_else(|| DcapError::PckCaType("PCK chain has no CA certificate".into()))?;
    let ca = <Certificate as x509_cert::der::Decode>::from_der(ca_der)
        .map_err(|e| DcapError::PckCaType(format!("PCK CA does not decode: {e}")))?;
    Ok(key_of(tee, &ext, ca_type(&ca)?))
}

fn key_of(tee: DcapTee, ext: &PckExtension, ca: PckCaType) -> CollateralKey {
    CollateralKey {
        tee,
        fmspc: hex::encode_upper(ext.fmspc),
        ca,
        pce_id: hex::encode_upper(ext.pce_id),
    }
}

pub(crate) fn push_unique(into: &mut Vec<String>, from: &[String]) {
    for a in from {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

fn sgx_type_name(t: u8) -> String {
    match t {
        0 => "Standard".into(),
        1 => "Scalable".into(),
        2 => "Scalable with Integrity".into(),
        n => format!("Unknown ({n})"),
    }
}

/// The per-call checks every DCAP quote shares: QE vendor, QE report and
/// quote signatures, revocation, FMSPC / PCE-ID and the QE identity. `signed`
/// is what the quote signature covers (`signed_len` the parsed length).
/// `qe_checked` is the attestation key of a QE report (signature and binding)
/// already verified for exactly these bytes. Returns the QE TCB level and the
/// decoded attestation key, so the caller can keep it.
pub(crate) fn check_shared<'c>(
    header: &Header,
    sd: &SignatureData,
    signed: (&[u8], usize),
    pck: &CheckedPck,
    col: &'c CheckedCollateral,
    qe_checked: Option<&P256Key>,
) -> Result<(&'c IsvLevel, P256Key), DcapError> {
    if header.vendor_id != INTEL_QE_VENDOR_ID {
        return Err(DcapError::QeVendorId {
            expected: hex::encode(INTEL_QE_VENDOR_ID),
            found: hex::encode(header.vendor_id),
        });
    }
    let att_key = match qe_checked {
        Some(k) => k.clone(),
        None => {
            check_qe_report_signature(sd, &pck.chain)?;
            check_qe_binding(sd)?
        }
    };
    check_quote_signature(signed.0, signed.1, sd, &att_key)?;

    if pck.chain.root_sha256() != col.root_sha256 {
        return Err(DcapError::RootMismatch {
            pck_root: hex::encode(pck.chain.root_sha256()),
            collateral_root: hex::encode(col.root_sha256),
        });
    }
    let (Some(leaf), Some(ca)) = (pck.chain.cert(0), pck.chain.cert(1)) else {
        return Err(DcapError::PckCaType("PCK chain is incomplete".into()));
    };
    // The PCK CRL must come from the very CA that issued this PCK leaf.
    if col.pck_crl_signer_der.as_deref() != Some(pck.chain.ca_der()) {
        let key = p256_key(ca).map_err(|e| DcapError::PckCrl(format!("PCK CA key: {e}")))?;
        col.pck_crl
            .verify_issued_by(&ca.tbs_certificate.subject, &key)
            .map_err(|e| DcapError::PckCrl(format!("signature by the quote's PCK CA: {e}")))?;
    }
    if col
        .root_crl
        .revokes(ca.tbs_certificate.serial_number.as_bytes())
    {
        return Err(DcapError::RevokedByRootCrl {
            certificate: "PCK CA",
            serial: serial_hex(ca),
        });
    }
    if col
        .pck_crl
        .revokes(leaf.tbs_certificate.serial_number.as_bytes())
    {
        return Err(DcapError::RevokedPckLeaf {
            serial: serial_hex(leaf),
        });
    }

    let info = &col.tcb_info;
    if pck.ext.fmspc != info.fmspc {
        return Err(DcapError::FmspcMismatch {
            pck: hex::encode_upper(pck.ext.fmspc),
            tcb_info: hex::encode_upper(info.fmspc),
        });
    }
    if pck.ext.pce_id != info.pce_id {
        return Err(DcapError::PceIdMismatch {
            pck: hex::encode_upper(pck.ext.pce_id),
            tcb_info: hex::encode_upper(info.pce_id),
        });
    }
    let qe = qe_level(&col.qe_identity, &sd.qe_report)?;
    Ok((qe, att_key))
}

/// The outcome of the TCB matching, as the supplemental claims report it.
pub(crate) struct Outcome {
    pub(crate) tcb_status: TcbStatus,
    pub(crate) tcb_status_current: TcbStatus,
    pub(crate) advisory_ids: Vec<String>,
    /// RFC 3339.
    pub(crate) tcb_date: String,
}

/// Add the DCAP supplemental claims (dates, CRL numbers, PCK platform
/// properties, TCB status) to `claims`; returns whether some collateral was
/// not valid at `now`.
pub(crate) fn supplemental(
    claims: &mut Map<String, Value>,
    pck: &CheckedPck,
    col: &CheckedCollateral,
    now: i64,
    outcome: &Outcome,
) -> bool {
    let info = &col.tcb_info;
    // Supplemental dates over every dated item of the collateral and chain.
    let (mut issue, mut expiry) = collateral_dates(col);
    for c in (0..3).filter_map(|i| pck.chain.cert(i)) {
        let v = &c.tbs_certificate.validity;
        issue.push(unix(v.not_before));
        expiry.push(unix(v.not_after));
    }
    let earliest_issue = issue.iter().copied().min().unwrap_or(i64::MIN);
    let latest_issue = issue.iter().copied().max().unwrap_or(i64::MIN);
    let earliest_expiry = expiry.iter().copied().min().unwrap_or(i64::MAX);
    // Expired (or not yet valid) collateral is reported, not rejected.
    let collateral_expired = earliest_expiry <= now || now < latest_issue;

    let root_key_id = pck
        .chain
        .cert(2)
        .and_then(|r| {
            r.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .as_bytes()
        })
        .map(|k| hex::encode(Sha384::digest(k)))
        .unwrap_or_default();

    let mut put = |k: &str, v: Value| {
        claims.insert(k.to_owned(), v);
    };
    put("earliest_issue_date", format_rfc3339(earliest_issue).into());
    put("latest_issue_date", format_rfc3339(latest_issue).into());
    put(
        "earliest_expiration_date",
        format_rfc3339(earliest_expiry).into(),
    );
    put("tcb_date", outcome.tcb_date.clone().into());
    put("pck_crl_num", col.pck_crl.number.unwrap_or(0).into());
    put("root_ca_crl_num", col.root_crl.number.unwrap_or(0).into());
    put(
        "tcb_eval_num",
        info.tcb_evaluation_data_number
            .min(col.qe_identity.tcb_evaluation_data_number)
            .into(),
    );
    put("platform_provider_id", hex::encode(pck.ext.ppid).into());
    put("sgx_type", sgx_type_name(pck.ext.sgx_type).into());
    if pck.ext.sgx_type > 0 {
        put(
            "is_dynamic_platform",
            pck.ext.dynamic_platform.unwrap_or(false).into(),
        );
        put(
            "is_cached_keys",
            pck.ext.cached_keys.unwrap_or(false).into(),
        );
        put(
            "is_smt_enabled",
            pck.ext.smt_enabled.unwrap_or(false).into(),
        );
    }
    put("root_key_id", root_key_id.into());
    put("tcb_status", outcome.tcb_status.as_str().into());
    put(
        "collateral_expiration_status",
        if collateral_expired { "1" } else { "0" }.into(),
    );
    put("advisory_ids", outcome.advisory_ids.clone().into());
    put("tcb_date_current", outcome.tcb_date.clone().into());
    put(
        "tcb_status_current",
        outcome.tcb_status_current.as_str().into(),
    );
    put("advisory_ids_current", outcome.advisory_ids.clone().into());
    collateral_expired
}

impl CheckedPck {
    pub(crate) fn platform_instance_id(&self) -> Option<[u8; 16]> {
        self.platform_instance_id
    }
    pub(crate) fn key(&self, tee: DcapTee) -> CollateralKey {
        key_of(tee, &self.ext, self.ca)
    }
}

/// The per-call part of a TDX appraisal: the shared checks, then the TD's
/// TCB level, TDX module and relaunch advice, and the claims.
pub(crate) fn appraise(
    quote: Quote,
    pck: &CheckedPck,
    col: &CheckedCollateral,
    now: i64,
    qe_checked: Option<&P256Key>,
) -> Result<(Verified, P256Key), DcapError> {
    let signed = quote.signed_bytes();
    let (qe, att_key) = check_shared(
        &quote.header,
        &quote.signature,
        (&signed, quote.signed_len),
        pck,
        col,
        qe_checked,
    )?;
    let info = &col.tcb_info;
    let current = td_tcb(info, &pck.ext, &quote.body, &quote.body.tee_tcb_svn)?;
    // TD report 1.5: judge the other TEE_TCB_SVN too; an out-of-date launch
    // TCB under an acceptable current one means the TD should be relaunched.
    // A launch TCB the collateral cannot judge gives no advice.
    let mut status = current.status;
    if let Some(v15) = &quote.body.v15 {
        if v15.tee_tcb_svn2 != quote.body.tee_tcb_svn {
            if let Ok(launch) = td_tcb(info, &pck.ext, &quote.body, &v15.tee_tcb_svn2) {
                status = relaunch(launch.status, current.status);
            }
        }
    }
    let mut advisory_ids = Vec::new();
    push_unique(&mut advisory_ids, &current.platform.advisory_ids);
    if let Some(m) = current.module {
        push_unique(&mut advisory_ids, &m.advisory_ids);
    }
    push_unique(&mut advisory_ids, &qe.advisory_ids);
    let outcome = Outcome {
        tcb_status: with_qe(status, qe.status),
        tcb_status_current: with_qe(current.status, qe.status),
        advisory_ids,
        tcb_date: format_rfc3339(current.platform.tcb_date.min(qe.tcb_date)),
    };

    let mut claims = match claims_with(&quote, pck.platform_instance_id) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let collateral_expired = supplemental(&mut claims, pck, col, now, &outcome);
    let verified = Verified {
        claims: Value::Object(claims),
        tcb_status: outcome.tcb_status,
        advisory_ids: outcome.advisory_ids,
        tcb_date: outcome.tcb_date,
        qe_tcb_status: qe.status,
        tdx_module_tcb_status: current.module.map(|m| m.status),
        collateral_expired,
        collateral_key: pck.key(DcapTee::Tdx),
        quote,
    };
    Ok((verified, att_key))
}

/// Appraise a raw TDX quote against its collateral (no caching).
pub fn verify_quote(
    raw_quote: &[u8],
    collateral: &Collateral,
    opts: &VerifyOptions,
) -> Result<Verified, DcapError> {
    let quote = parse_quote(raw_quote)?;
    let trusted = opts.trusted();
    let mut seen = SeenSignatures::default();
    let col = check_collateral(collateral, DcapTee::Tdx, &trusted, &mut seen)?;
    let pck = check_pck(&quote.signature, &trusted, &mut seen)?;
    appraise(quote, &pck, &col, opts.now_unix, None).map(|(v, _)| v)
}

#[cfg(test)]
#[path = "dcap_tests.rs"]
mod tests;
