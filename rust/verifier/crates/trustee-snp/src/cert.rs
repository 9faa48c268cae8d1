//! VCEK / VLEK certificates, the AMD vendor chain and report signature verification.

use crate::report::{parse_report, Generation, Report, SIGNED_LEN, SIG_COMPONENT_LEN};
use crate::VerifyError;
use aws_lc_rs::signature::{
    ParsedPublicKey, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384,
};
use der::asn1::{Ia5StringRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use pkcs1::RsaPssParams;
use x509_cert::Certificate;

const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// `RSA_PSS_2048_8192_SHA384` verifies with a salt as long as the digest; AMD signs with
/// exactly that, so any other length is refused rather than silently accepted.
const PSS_SALT_LEN: u8 = 48;

const OID_STRUCT_VERSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
const OID_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

/// Kind of versioned endorsement key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// Versioned Chip Endorsement Key, signed by the ASK.
    Vcek,
    /// Versioned Loaded Endorsement Key, signed by the ASVK.
    Vlek,
}

/// Summary of one certificate in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
}

impl CertInfo {
    /// Inclusive validity window check at `now` (Unix seconds).
    pub fn check_validity(&self, now: i64) -> Result<(), VerifyError> {
        let now_wide = i128::from(now);
        if now_wide < i128::from(self.not_before) || now_wide > i128::from(self.not_after) {
            return Err(VerifyError::Expired {
                subject: self.common_name.clone(),
                now,
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

/// AMD X.509 extensions of a VCEK / VLEK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VekExtensions {
    pub common_name: String,
    pub struct_version: Option<u64>,
    pub product_name: Option<String>,
    pub bl_spl: Option<u8>,
    pub tee_spl: Option<u8>,
    pub snp_spl: Option<u8>,
    pub ucode_spl: Option<u8>,
    pub fmc_spl: Option<u8>,
    /// Chip ID (raw legacy encoding or the content of a DER OCTET STRING).
    pub hw_id: Option<Vec<u8>>,
    /// VLEK only.
    pub csp_id: Option<String>,
}

/// Result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub kind: LeafKind,
    pub leaf: CertInfo,
    /// ASK (VCEK) or ASVK (VLEK).
    pub intermediate: CertInfo,
    pub ark: CertInfo,
    /// `Milan` / `Genoa` / `Turin` from the ARK CN (`ARK-<product>`), if recognised.
    pub product: Option<String>,
    pub extensions: VekExtensions,
}

impl ChainInfo {
    /// Check the validity periods of all three certificates at `now` (Unix seconds).
    /// Upstream does not check validity; the project does (decision 5).
    pub fn check_validity(&self, now: i64) -> Result<(), VerifyError> {
        for c in [&self.leaf, &self.intermediate, &self.ark] {
            c.check_validity(now)?;
        }
        Ok(())
    }
}

fn cert_err(what: &str, e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Certificate(format!("{what}: {e}"))
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Split a PEM bundle into certificates. Own implementation: x509-cert 0.2's
/// `load_pem_chain` panics (integer underflow) on some truncated inputs.
fn parse_pem_chain(pem: &[u8], what: &str) -> Result<Vec<Certificate>, VerifyError> {
    Ok(parse_pem_chain_der(pem, what)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// Like [`parse_pem_chain`], keeping each certificate's DER (its fingerprint is taken over it).
fn parse_pem_chain_der(pem: &[u8], what: &str) -> Result<Vec<(Vec<u8>, Certificate)>, VerifyError> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).map_err(|e| cert_err(what, e))?;
    let mut rest = text;
    let mut out = Vec::new();
    while let Some(start) = rest.find(PEM_BEGIN) {
        let body_start = start + PEM_BEGIN.len();
        let after = rest.get(body_start..).unwrap_or("");
        let end = after
            .find(PEM_END)
            .ok_or_else(|| cert_err(what, "unterminated PEM certificate"))?;
        let body: String = after
            .get(..end)
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| cert_err(what, e))?;
        let cert = Certificate::from_der(&der).map_err(|e| cert_err(what, e))?;
        out.push((der, cert));
        rest = after.get(end + PEM_END.len()..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(cert_err(what, "no PEM certificate found"));
    }
    Ok(out)
}

/// Parse a DER certificate or a PEM bundle of one or more certificates, keeping each DER.
pub(crate) fn parse_certs(
    bytes: &[u8],
    what: &str,
) -> Result<Vec<(Vec<u8>, Certificate)>, VerifyError> {
    if is_pem(bytes) {
        parse_pem_chain_der(bytes, what)
    } else {
        let cert = Certificate::from_der(bytes).map_err(|e| cert_err(what, e))?;
        Ok(vec![(bytes.to_vec(), cert)])
    }
}

fn is_pem(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes
        .get(start..)
        .is_some_and(|b| b.starts_with(b"-----BEGIN"))
}

/// Parse one certificate, DER or PEM (auto-detected by the PEM prefix).
pub(crate) fn parse_cert(bytes: &[u8], what: &str) -> Result<Certificate, VerifyError> {
    if is_pem(bytes) {
        let mut certs = parse_pem_chain(bytes, what)?;
        if certs.len() != 1 {
            return Err(cert_err(
                what,
                format!("expected 1 PEM certificate, got {}", certs.len()),
            ));
        }
        certs.pop().ok_or_else(|| cert_err(what, "no certificate"))
    } else {
        Certificate::from_der(bytes).map_err(|e| cert_err(what, e))
    }
}

pub(crate) fn common_name(name: &x509_cert::name::Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == OID_CN {
                return String::from_utf8_lossy(atv.value.value()).into_owned();
            }
        }
    }
    String::new()
}

pub(crate) fn cert_info(c: &Certificate) -> CertInfo {
    let v = &c.tbs_certificate.validity;
    CertInfo {
        common_name: common_name(&c.tbs_certificate.subject),
        not_before: v.not_before.to_unix_duration().as_secs(),
        not_after: v.not_after.to_unix_duration().as_secs(),
    }
}

pub(crate) fn names_equal(a: &x509_cert::name::Name, b: &x509_cert::name::Name) -> bool {
    match (a.to_der(), b.to_der()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// PKCS#1 RSAPublicKey DER of an AMD root / intermediate (SPKI algorithm rsaEncryption or
/// RSASSA-PSS; the key encoding is the same for both).
fn rsa_key(c: &Certificate) -> Result<&[u8], VerifyError> {
    let spki = &c.tbs_certificate.subject_public_key_info;
    let oid = spki.algorithm.oid;
    if oid != OID_RSA_ENCRYPTION && oid != OID_RSASSA_PSS {
        return Err(VerifyError::UnsupportedKey(format!(
            "{}: expected an RSA key, got {oid}",
            common_name(&c.tbs_certificate.subject)
        )));
    }
    spki.subject_public_key
        .as_bytes()
        .ok_or_else(|| VerifyError::UnsupportedKey("unaligned RSA key bit string".into()))
}

/// Verify that `issuer` signed `subject` with RSASSA-PSS / SHA-384 (MGF1 SHA-384, 48-byte
/// salt: the only parameters AMD uses).
pub(crate) fn verify_signed_by(
    subject: &Certificate,
    issuer: &Certificate,
) -> Result<(), VerifyError> {
    let subj_cn = common_name(&subject.tbs_certificate.subject);
    let iss_cn = common_name(&issuer.tbs_certificate.subject);
    let fail = |m: String| VerifyError::InvalidSignature(format!("{iss_cn} -> {subj_cn}: {m}"));
    if !names_equal(
        &subject.tbs_certificate.issuer,
        &issuer.tbs_certificate.subject,
    ) {
        return Err(fail("issuer name does not match".into()));
    }
    let alg = &subject.signature_algorithm;
    if alg.oid != OID_RSASSA_PSS {
        return Err(fail(format!(
            "signature algorithm {} is not RSASSA-PSS",
            alg.oid
        )));
    }
    let params = alg
        .parameters
        .as_ref()
        .ok_or_else(|| fail("missing RSASSA-PSS parameters".into()))?;
    let params_der = params
        .to_der()
        .map_err(|e| fail(format!("PSS parameters: {e}")))?;
    let params =
        RsaPssParams::from_der(&params_der).map_err(|e| fail(format!("PSS parameters: {e}")))?;
    if params.hash.oid != OID_SHA384 {
        return Err(fail(format!("PSS hash {} is not SHA-384", params.hash.oid)));
    }
    if params.mask_gen.oid != OID_MGF1 {
        return Err(fail(format!(
            "PSS mask generation {} is not MGF1",
            params.mask_gen.oid
        )));
    }
    let mgf_hash = params.mask_gen.parameters.as_ref().map(|p| p.oid);
    if mgf_hash != Some(OID_SHA384) {
        return Err(fail("PSS MGF1 hash is not SHA-384".into()));
    }
    if params.salt_len != PSS_SALT_LEN {
        return Err(fail(format!(
            "PSS salt length {} is not {PSS_SALT_LEN}",
            params.salt_len
        )));
    }
    let key = rsa_key(issuer)?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| fail(format!("TBS encoding: {e}")))?;
    let sig = subject
        .signature
        .as_bytes()
        .ok_or_else(|| fail("unaligned signature bit string".into()))?;
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(&tbs, sig)
        .map_err(|_| {
            fail(format!(
                "RSASSA-PSS SHA-384 signature ({} bytes) does not verify with the issuer's \
                 {}-byte RSA key (or the key is malformed or outside 2048..8192 bits)",
                sig.len(),
                key.len()
            ))
        })
}

fn decode_u8_int(bytes: &[u8], what: &str) -> Result<u8, VerifyError> {
    u8::from_der(bytes).map_err(|e| cert_err(what, e))
}

pub(crate) fn extensions_of(c: &Certificate) -> Result<VekExtensions, VerifyError> {
    let mut out = VekExtensions {
        common_name: common_name(&c.tbs_certificate.subject),
        ..Default::default()
    };
    let Some(exts) = c.tbs_certificate.extensions.as_ref() else {
        return Ok(out);
    };
    for ext in exts {
        let v = ext.extn_value.as_bytes();
        let id = ext.extn_id;
        if id == OID_BL_SPL {
            out.bl_spl = Some(decode_u8_int(v, "blSPL")?);
        } else if id == OID_TEE_SPL {
            out.tee_spl = Some(decode_u8_int(v, "teeSPL")?);
        } else if id == OID_SNP_SPL {
            out.snp_spl = Some(decode_u8_int(v, "snpSPL")?);
        } else if id == OID_UCODE_SPL {
            out.ucode_spl = Some(decode_u8_int(v, "ucodeSPL")?);
        } else if id == OID_FMC_SPL {
            out.fmc_spl = Some(decode_u8_int(v, "fmcSPL")?);
        } else if id == OID_STRUCT_VERSION {
            out.struct_version = u64::from_der(v).ok();
        } else if id == OID_PRODUCT_NAME {
            out.product_name = Ia5StringRef::from_der(v).ok().map(|s| s.to_string());
        } else if id == OID_CSP_ID {
            out.csp_id = Ia5StringRef::from_der(v).ok().map(|s| s.to_string());
        } else if id == OID_HW_ID {
            // Legacy: the raw 64 bytes; newer: a DER OCTET STRING holding them.
            let hw = if v.len() == 64 {
                v.to_vec()
            } else {
                OctetStringRef::from_der(v)
                    .map_err(|e| cert_err("hwID", e))?
                    .as_bytes()
                    .to_vec()
            };
            out.hw_id = Some(hw);
        }
    }
    Ok(out)
}

/// Parse the AMD extensions of a VCEK / VLEK certificate (DER or PEM).
pub fn parse_vek_extensions(cert: &[u8]) -> Result<VekExtensions, VerifyError> {
    extensions_of(&parse_cert(cert, "VEK")?)
}

pub(crate) fn leaf_kind(cn: &str) -> Result<LeafKind, VerifyError> {
    if cn.contains("VLEK") {
        Ok(LeafKind::Vlek)
    } else if cn.contains("VCEK") {
        Ok(LeafKind::Vcek)
    } else {
        Err(cert_err(
            "leaf",
            format!("CN {cn:?} is neither a VCEK nor a VLEK"),
        ))
    }
}

/// Verify `leaf_der` (VCEK or VLEK, DER or PEM) against vendor anchors: a PEM bundle holding
/// the ARK (self-signed) and the ASK and/or ASVK (e.g. `milan_ask_ark_asvk.pem`, order
/// ASK, ARK, ASVK — the roles are found by name, not by position). VCEKs must be issued by
/// the ASK, VLEKs by the ASVK; intermediates by the ARK; all RSASSA-PSS SHA-384.
/// Validity periods are not checked here; see [`ChainInfo::check_validity`].
pub fn verify_chain(leaf_der: &[u8], anchors_pem: &[u8]) -> Result<ChainInfo, VerifyError> {
    let leaf = parse_cert(leaf_der, "leaf")?;
    let anchors =
        parse_pem_chain(anchors_pem, "anchors").map_err(|e| VerifyError::Anchors(e.to_string()))?;
    let ark = anchors
        .iter()
        .find(|c| names_equal(&c.tbs_certificate.subject, &c.tbs_certificate.issuer))
        .ok_or_else(|| VerifyError::Anchors("no self-signed ARK in anchors".into()))?;
    verify_signed_by(ark, ark)?;

    let leaf_cn = common_name(&leaf.tbs_certificate.subject);
    let kind = leaf_kind(&leaf_cn)?;
    let intermediate = anchors
        .iter()
        .filter(|c| !names_equal(&c.tbs_certificate.subject, &c.tbs_certificate.issuer))
        .find(|c| names_equal(&c.tbs_certificate.subject, &leaf.tbs_certificate.issuer))
        .ok_or_else(|| {
            VerifyError::Anchors(format!(
                "no {} in anchors matches the issuer of {leaf_cn}",
                if kind == LeafKind::Vlek {
                    "ASVK"
                } else {
                    "ASK"
                }
            ))
        })?;
    let int_is_asvk = common_name(&intermediate.tbs_certificate.subject).contains("VLEK");
    if int_is_asvk != (kind == LeafKind::Vlek) {
        return Err(VerifyError::Anchors(format!(
            "{leaf_cn} is issued by {}, which is not its kind's intermediate",
            common_name(&intermediate.tbs_certificate.subject)
        )));
    }
    verify_signed_by(intermediate, ark)?;
    verify_signed_by(&leaf, intermediate)?;

    let ark_info = cert_info(ark);
    let product = ark_info
        .common_name
        .strip_prefix("ARK-")
        .map(str::to_string);
    Ok(ChainInfo {
        kind,
        leaf: cert_info(&leaf),
        intermediate: cert_info(intermediate),
        ark: ark_info,
        product,
        extensions: extensions_of(&leaf)?,
    })
}

/// Check a vendor anchor bundle on its own: exactly one self-signed ARK (its self-signature
/// verifies) and every other certificate (ASK, ASVK) signed by it. Returns the ARK first,
/// then the intermediates in file order.
pub fn verify_anchors(anchors_pem: &[u8]) -> Result<Vec<CertInfo>, VerifyError> {
    let anchors =
        parse_pem_chain(anchors_pem, "anchors").map_err(|e| VerifyError::Anchors(e.to_string()))?;
    let is_root =
        |c: &Certificate| names_equal(&c.tbs_certificate.subject, &c.tbs_certificate.issuer);
    let mut roots = anchors.iter().filter(|c| is_root(c));
    let ark = roots
        .next()
        .ok_or_else(|| VerifyError::Anchors("no self-signed ARK in anchors".into()))?;
    if roots.next().is_some() {
        return Err(VerifyError::Anchors(
            "more than one self-signed root".into(),
        ));
    }
    verify_signed_by(ark, ark)?;
    let mut out = vec![cert_info(ark)];
    for c in anchors.iter().filter(|c| !is_root(c)) {
        verify_signed_by(c, ark)?;
        out.push(cert_info(c));
    }
    Ok(out)
}

/// One vendor certificate (DER or PEM) against its issuer's: the names chain and the issuer's
/// RSASSA-PSS signature verifies. Without an issuer the certificate must be self-signed (an
/// ARK) and its own signature verify; whether it is trusted is the caller's question
/// ([`crate::pinned`]). Validity periods are not checked here.
pub fn verify_issued_by(cert: &[u8], issuer: Option<&[u8]>) -> Result<CertInfo, VerifyError> {
    let cert = parse_cert(cert, "certificate")?;
    match issuer {
        Some(issuer) => verify_signed_by(&cert, &parse_cert(issuer, "issuer")?)?,
        None => verify_signed_by(&cert, &cert)?,
    }
    Ok(cert_info(&cert))
}

/// The VEK's P-384 public key, parsed once so that repeated report checks skip point
/// decoding and validation.
pub(crate) fn p384_key(c: &Certificate) -> Result<ParsedPublicKey, VerifyError> {
    let spki = &c.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(VerifyError::UnsupportedKey(format!(
            "expected an EC key, got {}",
            spki.algorithm.oid
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(OID_SECP384R1) {
        return Err(VerifyError::UnsupportedKey(format!(
            "EC key is not on P-384 (curve {})",
            curve.map_or_else(|| "unreadable".to_string(), |c| c.to_string())
        )));
    }
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| VerifyError::UnsupportedKey("unaligned EC key bit string".into()))?;
    ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, bits).map_err(|e| {
        VerifyError::UnsupportedKey(format!("P-384 point ({} bytes) rejected: {e}", bits.len()))
    })
}

/// Convert a 72-byte little-endian signature component to a 48-byte big-endian scalar.
fn le72_to_be48(
    le: &[u8; SIG_COMPONENT_LEN],
    name: &str,
    be: &mut [u8],
) -> Result<(), VerifyError> {
    let (low, high) = le.split_at(P384_SCALAR_LEN);
    if let Some(pos) = high.iter().position(|&b| b != 0) {
        return Err(VerifyError::MalformedSignature(format!(
            "{name} exceeds 384 bits (byte {} of 72 is {:#04x}, must be zero)",
            P384_SCALAR_LEN + pos,
            high[pos]
        )));
    }
    for (dst, src) in be.iter_mut().zip(low.iter().rev()) {
        *dst = *src;
    }
    Ok(())
}

const P384_SCALAR_LEN: usize = 48;

/// Verify the report's ECDSA P-384 / SHA-384 signature over bytes `0x000..0x2A0` of the
/// canonical re-encoding (as upstream: reserved bytes are zeroed before hashing) with the
/// public key of `endorsement_key_der` (a VCEK or VLEK certificate, DER or PEM).
pub fn verify_report_signature(
    report_bytes: &[u8],
    endorsement_key_der: &[u8],
) -> Result<(), VerifyError> {
    let report = parse_report(report_bytes)?;
    let cert = parse_cert(endorsement_key_der, "VEK")?;
    let key = p384_key(&cert)?;
    verify_parsed_report_signature(&report, &key)
}

pub(crate) fn verify_parsed_report_signature(
    report: &Report,
    key: &ParsedPublicKey,
) -> Result<(), VerifyError> {
    let canonical = report
        .canonical_bytes()
        .ok_or(VerifyError::UnsupportedProcessor {
            family: report.cpuid_fam_id.unwrap_or(0),
            model: report.cpuid_mod_id.unwrap_or(0),
        })?;
    verify_canonical_signature(report, &canonical, key)
}

/// ECDSA P-384 / SHA-384 check of `canonical[..0x2A0]` with the report's (r, s).
pub(crate) fn verify_canonical_signature(
    report: &Report,
    canonical: &[u8],
    key: &ParsedPublicKey,
) -> Result<(), VerifyError> {
    let signed = canonical.get(..SIGNED_LEN).ok_or_else(|| {
        VerifyError::MalformedSignature(format!(
            "re-encoded report is {} bytes, {SIGNED_LEN} needed",
            canonical.len()
        ))
    })?;
    // The fixed form is r || s, each 48 bytes big-endian.
    let mut fixed = [0u8; 2 * P384_SCALAR_LEN];
    let (r, s) = fixed.split_at_mut(P384_SCALAR_LEN);
    le72_to_be48(&report.sig_r, "signature R", r)?;
    le72_to_be48(&report.sig_s, "signature S", s)?;
    key.verify_sig(signed, &fixed).map_err(|_| {
        VerifyError::ReportSignature(
            "ECDSA P-384/SHA-384 signature over report bytes 0x000..0x2A0 does not verify \
             with the endorsement key"
                .into(),
        )
    })
}

/// Compare REPORTED_TCB (and, for VCEKs, CHIP_ID) with the VEK's extensions, decoding the
/// TCB with [`Report::generation`]'s layout (the chip-ID heuristic for v2 reports); see
/// [`check_tcb`] and [`check_chip_id`] for a known generation.
pub fn verify_report_tcb(report: &Report, ext: &VekExtensions) -> Result<(), VerifyError> {
    let generation = report.generation().unwrap_or(Generation::Milan);
    check_tcb(report, generation, ext)?;
    if is_vcek_cn(&ext.common_name) {
        check_chip_id(&report.chip_id, generation, ext)?;
    }
    Ok(())
}

/// VCEK common names: upstream only recognises `VCEK`, but AMD issues `SEV-VCEK`
/// (project decision: check the chip ID for both).
pub(crate) fn is_vcek_cn(cn: &str) -> bool {
    cn == "VCEK" || cn == "SEV-VCEK"
}

/// REPORTED_TCB (decoded with `generation`'s layout) against the VEK's SPL extensions:
/// bootloader, TEE, SNP and microcode always; FMC on Turin.
pub fn check_tcb(
    report: &Report,
    generation: Generation,
    ext: &VekExtensions,
) -> Result<(), VerifyError> {
    let tcb = report.reported_tcb_for(generation);
    let kind = if is_vcek_cn(&ext.common_name) {
        "VCEK"
    } else {
        "VEK"
    };
    let check = |field: &'static str, want: Option<u8>, got: u8| match want {
        Some(w) if w == got => Ok(()),
        Some(w) => Err(VerifyError::TcbMismatch {
            field,
            certificate: w,
            report: got,
        }),
        None => Err(VerifyError::TcbExtensionMissing { field, kind }),
    };
    check("Boot loader", ext.bl_spl, tcb.bootloader)?;
    check("TEE", ext.tee_spl, tcb.tee)?;
    check("SNP", ext.snp_spl, tcb.snp)?;
    check("Microcode", ext.ucode_spl, tcb.microcode)?;
    if generation == Generation::Turin {
        check("FMC", ext.fmc_spl, tcb.fmc.unwrap_or(0))?;
    }
    Ok(())
}

/// The VCEK's hwID extension against the report's CHIP_ID: all 64 bytes, or on Turin the
/// first 8 (Turin VCEKs carry an 8-byte hwID and zero the rest of CHIP_ID).
pub fn check_chip_id(
    chip_id: &[u8; 64],
    generation: Generation,
    ext: &VekExtensions,
) -> Result<(), VerifyError> {
    let hw = ext
        .hw_id
        .as_deref()
        .ok_or_else(|| VerifyError::ChipIdMismatch {
            certificate: "(no hwID extension)".into(),
            report: hex::encode(chip_id),
        })?;
    let ok = match hw.len() {
        64 => hw == chip_id.as_slice(),
        8 if generation == Generation::Turin => chip_id.get(..8) == Some(hw),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyError::ChipIdMismatch {
            certificate: hex::encode(hw),
            report: hex::encode(chip_id),
        })
    }
}
