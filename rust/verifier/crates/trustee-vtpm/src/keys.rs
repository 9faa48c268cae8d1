//! Attestation-key public keys and the TPMT_SIGNATURE they verify.

use aws_lc_rs::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
};
use der::Decode as _;
use x509_cert::spki::SubjectPublicKeyInfoRef;

use crate::tpm2::{Cursor, TpmSignature, ALG_SHA256};
use crate::VtpmError;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// RSA moduli above 8192 bits are refused by the verifier anyway.
const MAX_KEY_BYTES: usize = 2048;

/// The public half of a TPM attestation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AkPublic {
    /// RSA modulus and exponent (big-endian): the HCL JWK.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// RSA as a DER RSAPublicKey (from a SubjectPublicKeyInfo).
    RsaDer(Vec<u8>),
    /// An uncompressed P-256 point.
    EcP256(Vec<u8>),
}

impl AkPublic {
    pub fn rsa(n: Vec<u8>, e: Vec<u8>) -> Result<Self, VtpmError> {
        if n.is_empty() || e.is_empty() || n.len() > MAX_KEY_BYTES || e.len() > 8 {
            return Err(VtpmError::AkJwk(format!(
                "modulus of {} bytes / exponent of {} bytes is not an RSA key",
                n.len(),
                e.len()
            )));
        }
        Ok(AkPublic::Rsa { n, e })
    }

    /// A DER SubjectPublicKeyInfo holding an RSA or P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, VtpmError> {
        if der.len() > MAX_KEY_BYTES + 64 {
            return Err(VtpmError::AkPublic(format!(
                "{} bytes is too large",
                der.len()
            )));
        }
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| VtpmError::AkPublic(e.to_string()))?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| VtpmError::AkPublic("key bit string has unused bits".into()))?
            .to_vec();
        let alg = spki.algorithm.oid.to_string();
        if alg == OID_RSA {
            return Ok(AkPublic::RsaDer(key));
        }
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
            .map(|o| o.to_string());
        if alg == OID_EC && curve.as_deref() == Some(OID_P256) {
            return Ok(AkPublic::EcP256(key));
        }
        Err(VtpmError::AkPublic(format!(
            "algorithm {alg} (curve {curve:?}) is neither RSA nor P-256"
        )))
    }

    /// Checks `signature` over `message`; `key` names the key in the error.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &TpmSignature,
        key: &'static str,
    ) -> Result<(), VtpmError> {
        let invalid = |_| VtpmError::SignatureInvalid { key };
        match (self, signature) {
            (AkPublic::Rsa { n, e }, TpmSignature::RsaSsa(sig)) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, sig)
                .map_err(invalid),
            (AkPublic::RsaDer(der), TpmSignature::RsaSsa(sig)) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
                    .verify(message, sig)
                    .map_err(invalid)
            }
            (AkPublic::EcP256(point), TpmSignature::EcdsaP256 { r, s }) => {
                if r.len() > 32 || s.len() > 32 {
                    return Err(VtpmError::SignatureMalformed(
                        "ECDSA r or s longer than 32 bytes".into(),
                    ));
                }
                let mut fixed = [0u8; 64];
                fixed[32 - r.len()..32].copy_from_slice(r);
                fixed[64 - s.len()..].copy_from_slice(s);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, &fixed)
                    .map_err(invalid)
            }
            (_, sig) => Err(VtpmError::SignatureMalformed(format!(
                "a {} signature for a {} key",
                sig.kind(),
                self.kind()
            ))),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            AkPublic::Rsa { .. } | AkPublic::RsaDer(_) => "RSA",
            AkPublic::EcP256(_) => "P-256",
        }
    }
}

const ALG_RSASSA: u16 = 0x0014;
const ALG_ECDSA: u16 = 0x0018;

/// Parses a marshalled TPMT_SIGNATURE: RSASSA or ECDSA (P-256 sized), each with SHA-256.
pub fn parse_signature(bytes: &[u8]) -> Result<TpmSignature, VtpmError> {
    let bad = |m: String| VtpmError::SignatureMalformed(m);
    let mut c = Cursor::new(bytes, bad);
    let alg = c.u16("sigAlg")?;
    let hash = c.u16("hash")?;
    if hash != ALG_SHA256 || !(alg == ALG_RSASSA || alg == ALG_ECDSA) {
        return Err(VtpmError::SignatureUnsupported { alg, hash });
    }
    let sig = if alg == ALG_RSASSA {
        let s = c.sized("RSA signature", MAX_KEY_BYTES)?;
        TpmSignature::RsaSsa(s.to_vec())
    } else {
        let r = c.sized("ECDSA r", 32)?.to_vec();
        let s = c.sized("ECDSA s", 32)?.to_vec();
        TpmSignature::EcdsaP256 { r, s }
    };
    c.finish("signature")?;
    Ok(sig)
}
