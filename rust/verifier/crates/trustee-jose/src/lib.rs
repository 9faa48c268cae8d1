//! The two public-key operations on the KBS hot path, done in one call each so the Python
//! side only moves text: ES256 signatures over a JWS signing input, and the RFC 7516 JWE
//! (`ECDH-ES+A256KW` + `A256GCM`) that seals a resource to a guest's EC key.
//!
//! These are the only implementations of the two: `trustee.protocol.jwe` parses the guest's
//! JWK and hands its raw coordinates here, and the EAR broker signs its tokens here. Error
//! texts are the ones the KBS has always answered with, since they reach guests and logs.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_256};
use aws_lc_rs::rand::{fill, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

const KEY_ALG: &str = "ECDH-ES+A256KW";
const CEK_BYTES: usize = 32;
const IV_BYTES: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoseError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("TEE public key is invalid: {0}")]
    PeerKey(String),
    #[error("{0}")]
    Input(String),
    #[error("{0} failed")]
    Crypto(&'static str),
}

/// An ES256 (ECDSA P-256 with SHA-256) signer; signatures are the JWS form, r‖s.
#[derive(Debug)]
pub struct Es256Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256Signer {
    /// From a PKCS#8 DER private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JoseError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|e| JoseError::Key(format!("not a P-256 PKCS#8 key: {e}")))?;
        Ok(Self {
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The 64-byte signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        self.key
            .sign(&self.rng, message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| JoseError::Crypto("ES256 signing"))
    }

    /// `signing_input` + "." + base64url(signature): a finished compact JWS.
    pub fn sign_compact(&self, signing_input: &str) -> Result<String, JoseError> {
        let sig = self.sign(signing_input.as_bytes())?;
        let mut out = String::with_capacity(signing_input.len() + 1 + 86);
        out.push_str(signing_input);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        Ok(out)
    }
}

/// The curves a guest's key may use for `ECDH-ES+A256KW`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P521,
}

impl Curve {
    pub fn from_jwk_name(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-521" => Some(Curve::P521),
            _ => None,
        }
    }

    fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P521 => "P-521",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P521 => 66,
        }
    }

    fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }
}

/// Values that are random in production; fixed only by known-answer tests.
#[derive(Debug, Default)]
pub struct Fixed<'a> {
    pub cek: Option<&'a [u8]>,
    pub iv: Option<&'a [u8]>,
    /// The ephemeral private scalar, big-endian, padded to the curve size.
    pub ephemeral: Option<&'a [u8]>,
}

/// The five members of a flattened JWE, each already base64url (no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwe {
    pub protected: String,
    pub encrypted_key: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

fn coordinate<'a>(value: &'a [u8], curve: Curve, name: &str) -> Result<&'a [u8], JoseError> {
    if value.len() != curve.coordinate_len() {
        return Err(JoseError::PeerKey(format!(
            "EC JWK coordinate '{name}' is {} bytes; {} needs exactly {} \
             (big-endian, left-padded with zeros)",
            value.len(),
            curve.jwk_name(),
            curve.coordinate_len()
        )));
    }
    Ok(value)
}

/// RFC 7518 §4.6.2 Concat KDF (SHA-256) for a 256-bit key, empty PartyUInfo / PartyVInfo.
pub fn concat_kdf_256(z: &[u8], alg: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(4 + z.len() + 4 + alg.len() + 12);
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(z);
    input.extend_from_slice(&(alg.len() as u32).to_be_bytes());
    input.extend_from_slice(alg.as_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&256u32.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

fn random_or_fixed<const N: usize>(fixed: Option<&[u8]>, what: &str) -> Result<[u8; N], JoseError> {
    let mut out = [0u8; N];
    match fixed {
        Some(value) if value.len() == N => out.copy_from_slice(value),
        Some(value) => {
            return Err(JoseError::Input(format!(
                "a fixed {what} must be {N} bytes, got {}",
                value.len()
            )))
        }
        None => fill(&mut out).map_err(|_| JoseError::Crypto("random generation"))?,
    }
    Ok(out)
}

/// Seals `plaintext` to the guest key (`x`, `y`: its JWK coordinates, decoded) as an RFC 7516
/// JWE:
/// protected header `{"alg","enc","epk":{"crv","kty","x","y"}}`, the content key wrapped
/// with the Concat-KDF output of ECDH between a fresh ephemeral key and the guest's key.
pub fn ecdh_es_a256kw(
    curve: Curve,
    x: &[u8],
    y: &[u8],
    plaintext: &[u8],
    fixed: &Fixed<'_>,
) -> Result<Jwe, JoseError> {
    let mut peer = Vec::with_capacity(1 + 2 * curve.coordinate_len());
    peer.push(0x04);
    peer.extend_from_slice(coordinate(x, curve, "x")?);
    peer.extend_from_slice(coordinate(y, curve, "y")?);

    let ephemeral = match fixed.ephemeral {
        Some(scalar) => PrivateKey::from_private_key(curve.agreement(), scalar)
            .map_err(|e| JoseError::Input(format!("the fixed ephemeral key: {e}")))?,
        None => PrivateKey::generate(curve.agreement())
            .map_err(|_| JoseError::Crypto("ephemeral key generation"))?,
    };
    let epk = ephemeral
        .compute_public_key()
        .map_err(|_| JoseError::Crypto("ephemeral public key"))?;
    let kek = agreement::agree(
        &ephemeral,
        UnparsedPublicKey::new(curve.agreement(), &peer),
        JoseError::PeerKey(format!("EC JWK point is not on curve {}", curve.jwk_name())),
        |z| Ok(concat_kdf_256(z, KEY_ALG)),
    )?;

    let cek: [u8; CEK_BYTES] = random_or_fixed(fixed.cek, "content key")?;
    let iv: [u8; IV_BYTES] = random_or_fixed(fixed.iv, "iv")?;

    let mut wrapped = [0u8; CEK_BYTES + 8];
    AesKek::new(&AES_256, &kek)
        .map_err(|_| JoseError::Crypto("AES key wrap"))?
        .wrap(&cek, &mut wrapped)
        .map_err(|_| JoseError::Crypto("AES key wrap"))?;

    let point = epk.as_ref();
    let n = curve.coordinate_len();
    let header = format!(
        r#"{{"alg":"{KEY_ALG}","enc":"A256GCM","epk":{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}}}"#,
        curve.jwk_name(),
        URL_SAFE_NO_PAD.encode(&point[1..1 + n]),
        URL_SAFE_NO_PAD.encode(&point[1 + n..1 + 2 * n]),
    );
    let protected = URL_SAFE_NO_PAD.encode(header);

    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| JoseError::Crypto("AES-GCM"))?,
    );
    let mut sealed = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| JoseError::Crypto("AES-GCM"))?;

    Ok(Jwe {
        protected,
        encrypted_key: URL_SAFE_NO_PAD.encode(wrapped),
        iv: URL_SAFE_NO_PAD.encode(iv),
        ciphertext: URL_SAFE_NO_PAD.encode(&sealed),
        tag: URL_SAFE_NO_PAD.encode(tag.as_ref()),
    })
}

#[cfg(test)]
mod tests;
