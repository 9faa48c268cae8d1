//! The DCAP collateral container and its two input forms: the dcap-qvl JSON
//! object and the parts a PCS / directory source serves (Intel PCS API v4 shapes).
//! Nothing here verifies anything; it only keeps the exact signed bytes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::crl::crl_der_from_any;

/// Why collateral input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollateralError {
    #[error("collateral JSON is not an object: {0}")]
    NotAnObject(String),
    #[error("collateral field `{0}` is missing")]
    Missing(&'static str),
    #[error("collateral field `{field}` is malformed: {reason}")]
    Malformed { field: &'static str, reason: String },
}

/// Everything needed to appraise a TDX quote beyond the quote itself.
///
/// `tcb_info` and `qe_identity` hold the exact signed bytes (the value of
/// `tcbInfo` / `enclaveIdentity` as served), never a re-serialization.
#[derive(Debug, Clone)]
pub struct Collateral {
    /// PEM chain that issued the PCK CRL (PCK CA, root); may be empty, in
    /// which case the quote's own PCK CA is used to check the PCK CRL.
    pub pck_crl_issuer_chain: Vec<u8>,
    /// Root CA CRL, DER.
    pub root_ca_crl: Vec<u8>,
    /// PCK CRL, DER.
    pub pck_crl: Vec<u8>,
    /// PEM chain of the TCB info signer (TCB signing cert, root).
    pub tcb_info_issuer_chain: Vec<u8>,
    /// Signed TCB info JSON bytes.
    pub tcb_info: Vec<u8>,
    /// Raw r‖s signature over `tcb_info`.
    pub tcb_info_signature: Vec<u8>,
    /// PEM chain of the QE identity signer (TCB signing cert, root).
    pub qe_identity_issuer_chain: Vec<u8>,
    /// Signed QE identity JSON bytes.
    pub qe_identity: Vec<u8>,
    /// Raw r‖s signature over `qe_identity`.
    pub qe_identity_signature: Vec<u8>,
    /// [`Collateral::content_hash`] as of construction, so a cached
    /// appraisal need not rehash ~11 KB per call. The fields are public and
    /// may change afterwards: a cache hit found through this value must
    /// still compare the content (see `DcapVerifier`).
    construction_hash: [u8; 32],
}

impl PartialEq for Collateral {
    fn eq(&self, other: &Collateral) -> bool {
        self.fields() == other.fields()
    }
}

impl Eq for Collateral {}

/// Parts as a PCS / directory source provides them.
#[derive(Debug, Clone, Copy)]
pub struct CollateralParts<'a> {
    /// Intel form `{"tcbInfo": {...}, "signature": "<hex>"}`.
    pub tcb_info_json: &'a [u8],
    /// PEM (TCB signing cert, root); URL-decoded.
    pub tcb_info_issuer_chain: &'a [u8],
    /// Intel form `{"enclaveIdentity": {...}, "signature": "<hex>"}`.
    pub qe_identity_json: &'a [u8],
    /// PEM (TCB signing cert, root); URL-decoded.
    pub qe_identity_issuer_chain: &'a [u8],
    /// PCK CRL: DER, hex of DER or PEM.
    pub pck_crl: &'a [u8],
    /// PEM (PCK CA, root); may be empty.
    pub pck_crl_issuer_chain: &'a [u8],
    /// Root CA CRL: DER, hex of DER or PEM.
    pub root_ca_crl: &'a [u8],
}

type RawMap = BTreeMap<String, Box<RawValue>>;

/// The members of the dcap-qvl JSON form, borrowed from the input: decoding
/// into a map of owned raw values first cost an allocation per member.
#[derive(Deserialize)]
struct JsonMembers<'a> {
    #[serde(borrow)]
    pck_crl_issuer_chain: Option<&'a RawValue>,
    #[serde(borrow)]
    root_ca_crl: Option<&'a RawValue>,
    #[serde(borrow)]
    pck_crl: Option<&'a RawValue>,
    #[serde(borrow)]
    tcb_info_issuer_chain: Option<&'a RawValue>,
    #[serde(borrow)]
    tcb_info: Option<&'a RawValue>,
    #[serde(borrow)]
    tcb_info_signature: Option<&'a RawValue>,
    #[serde(borrow)]
    qe_identity_issuer_chain: Option<&'a RawValue>,
    #[serde(borrow)]
    qe_identity: Option<&'a RawValue>,
    #[serde(borrow)]
    qe_identity_signature: Option<&'a RawValue>,
}

fn raw_map(bytes: &[u8], what: &str) -> Result<RawMap, CollateralError> {
    serde_json::from_slice::<RawMap>(bytes)
        .map_err(|e| CollateralError::NotAnObject(format!("{what}: {e}")))
}

/// A member as bytes: the content of a JSON string, or the exact raw text of
/// any other JSON value (an object keeps its served bytes this way).
fn member(map: &RawMap, key: &'static str) -> Result<Vec<u8>, CollateralError> {
    member_bytes(map.get(key).map(AsRef::as_ref), key)
}

fn member_bytes(raw: Option<&RawValue>, key: &'static str) -> Result<Vec<u8>, CollateralError> {
    let raw = raw.ok_or(CollateralError::Missing(key))?.get();
    if raw.starts_with('"') {
        let s: String = serde_json::from_str(raw).map_err(|e| CollateralError::Malformed {
            field: key,
            reason: e.to_string(),
        })?;
        Ok(s.into_bytes())
    } else {
        Ok(raw.as_bytes().to_vec())
    }
}

fn hex_signature(field: &'static str, text: &[u8]) -> Result<Vec<u8>, CollateralError> {
    let t = std::str::from_utf8(text)
        .map_err(|_| CollateralError::Malformed {
            field,
            reason: "not UTF-8".into(),
        })?
        .trim();
    let sig = hex::decode(t).map_err(|e| CollateralError::Malformed {
        field,
        reason: format!("not hex: {e}"),
    })?;
    if sig.len() != 64 {
        return Err(CollateralError::Malformed {
            field,
            reason: format!(
                "expected a 64-byte r||s signature, found {} bytes",
                sig.len()
            ),
        });
    }
    Ok(sig)
}

fn crl(field: &'static str, bytes: &[u8]) -> Result<Vec<u8>, CollateralError> {
    crl_der_from_any(bytes).map_err(|reason| CollateralError::Malformed { field, reason })
}

/// Split an Intel `{"<body_key>": {...}, "signature": "..."}` document into
/// the exact body bytes and the decoded signature.
fn signed_document(
    bytes: &[u8],
    body_key: &'static str,
    sig_field: &'static str,
) -> Result<(Vec<u8>, Vec<u8>), CollateralError> {
    let map = raw_map(bytes, body_key)?;
    let body = map
        .get(body_key)
        .ok_or(CollateralError::Missing(body_key))?;
    if !body.get().starts_with('{') {
        return Err(CollateralError::Malformed {
            field: body_key,
            reason: "expected a JSON object".into(),
        });
    }
    let sig = member(&map, "signature").map_err(|e| match e {
        CollateralError::Missing(_) => CollateralError::Missing(sig_field),
        other => other,
    })?;
    Ok((
        body.get().as_bytes().to_vec(),
        hex_signature(sig_field, &sig)?,
    ))
}

impl Collateral {
    /// Decode the dcap-qvl JSON form (`pck_crl_issuer_chain`, `root_ca_crl`,
    /// `pck_crl`, `tcb_info_issuer_chain`, `tcb_info`, `tcb_info_signature`,
    /// `qe_identity_issuer_chain`, `qe_identity`, `qe_identity_signature`).
    /// CRLs may be hex of DER or PEM; signatures are hex.
    pub fn from_json(bytes: &[u8]) -> Result<Collateral, CollateralError> {
        let m: JsonMembers<'_> = serde_json::from_slice(bytes)
            .map_err(|e| CollateralError::NotAnObject(format!("collateral: {e}")))?;
        Ok(Collateral::hashed(Collateral {
            pck_crl_issuer_chain: member_bytes(m.pck_crl_issuer_chain, "pck_crl_issuer_chain")?,
            root_ca_crl: crl("root_ca_crl", &member_bytes(m.root_ca_crl, "root_ca_crl")?)?,
            pck_crl: crl("pck_crl", &member_bytes(m.pck_crl, "pck_crl")?)?,
            tcb_info_issuer_chain: member_bytes(m.tcb_info_issuer_chain, "tcb_info_issuer_chain")?,
            tcb_info: member_bytes(m.tcb_info, "tcb_info")?,
            tcb_info_signature: hex_signature(
                "tcb_info_signature",
                &member_bytes(m.tcb_info_signature, "tcb_info_signature")?,
            )?,
            qe_identity_issuer_chain: member_bytes(
                m.qe_identity_issuer_chain,
                "qe_identity_issuer_chain",
            )?,
            qe_identity: member_bytes(m.qe_identity, "qe_identity")?,
            qe_identity_signature: hex_signature(
                "qe_identity_signature",
                &member_bytes(m.qe_identity_signature, "qe_identity_signature")?,
            )?,
            construction_hash: [0; 32],
        }))
    }

    /// Assemble collateral from the documents a PCS or a directory serves.
    pub fn from_parts(p: CollateralParts<'_>) -> Result<Collateral, CollateralError> {
        let (tcb_info, tcb_info_signature) =
            signed_document(p.tcb_info_json, "tcbInfo", "tcb_info_signature")?;
        let (qe_identity, qe_identity_signature) = signed_document(
            p.qe_identity_json,
            "enclaveIdentity",
            "qe_identity_signature",
        )?;
        Ok(Collateral::hashed(Collateral {
            pck_crl_issuer_chain: p.pck_crl_issuer_chain.to_vec(),
            root_ca_crl: crl("root_ca_crl", p.root_ca_crl)?,
            pck_crl: crl("pck_crl", p.pck_crl)?,
            tcb_info_issuer_chain: p.tcb_info_issuer_chain.to_vec(),
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain: p.qe_identity_issuer_chain.to_vec(),
            qe_identity,
            qe_identity_signature,
            construction_hash: [0; 32],
        }))
    }

    /// SHA-256 over every field (length-prefixed, in a fixed order): the
    /// identity of this collateral for caching.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for f in self.fields() {
            h.update((f.len() as u64).to_le_bytes());
            h.update(f);
        }
        h.finalize().into()
    }

    /// The content hash taken when this value was built; stale if a public
    /// field was modified since.
    pub(crate) fn construction_hash(&self) -> [u8; 32] {
        self.construction_hash
    }

    fn hashed(mut c: Collateral) -> Collateral {
        c.construction_hash = c.content_hash();
        c
    }

    fn fields(&self) -> [&Vec<u8>; 9] {
        [
            &self.pck_crl_issuer_chain,
            &self.root_ca_crl,
            &self.pck_crl,
            &self.tcb_info_issuer_chain,
            &self.tcb_info,
            &self.tcb_info_signature,
            &self.qe_identity_issuer_chain,
            &self.qe_identity,
            &self.qe_identity_signature,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_document_keeps_exact_bytes() {
        let doc = br#"{"tcbInfo":{"b":1, "a":[2,3]},"signature":"00"}"#;
        let e = signed_document(doc, "tcbInfo", "sig").unwrap_err();
        assert!(
            matches!(e, CollateralError::Malformed { field: "sig", .. }),
            "{e}"
        );
        let sig = "ab".repeat(64);
        let doc = format!(r#"{{"tcbInfo":{{"b":1, "a":[2,3]}},"signature":"{sig}"}}"#);
        let (body, s) = signed_document(doc.as_bytes(), "tcbInfo", "sig").unwrap();
        assert_eq!(body, br#"{"b":1, "a":[2,3]}"#);
        assert_eq!(s, vec![0xab; 64]);
        assert!(matches!(
            signed_document(b"[]", "tcbInfo", "sig"),
            Err(CollateralError::NotAnObject(_))
        ));
        assert!(matches!(
            signed_document(b"{}", "tcbInfo", "sig"),
            Err(CollateralError::Missing("tcbInfo"))
        ));
    }

    #[test]
    fn from_json_reports_missing_fields() {
        assert!(matches!(
            Collateral::from_json(b"{}"),
            Err(CollateralError::Missing("pck_crl_issuer_chain"))
        ));
        assert!(matches!(
            Collateral::from_json(b"not json"),
            Err(CollateralError::NotAnObject(_))
        ));
    }
}
