//! Sealed RCAR sessions: the state a KBS keeps between `/auth`, `/attest` and resource requests
//! travels in the `kbs-session-id` cookie instead of a session store, so any worker of any
//! replica that holds the session key serves any request.
//!
//! A cookie is base64url (no padding) of
//!
//! ```text
//! version (1) | key id (4) | expires_at (8, big-endian unix seconds) | flags (1) | nonce (12) |
//! AES-256-GCM ciphertext of the payload | tag (16)
//! ```
//!
//! The first 14 bytes are the AEAD's associated data: the expiry and the compression flag are
//! readable without the key but cannot be changed without breaking the tag. The key id names
//! which key of the ring sealed the cookie, so opening never tries keys in turn. The payload is
//! opaque here; deflate is applied only when it makes the cookie smaller.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::fill;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

pub const KEY_BYTES: usize = 32;
const VERSION: u8 = 1;
const KID_BYTES: usize = 4;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const HEADER_BYTES: usize = 1 + KID_BYTES + 8 + 1;
const OVERHEAD: usize = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
const FLAG_DEFLATE: u8 = 1;
// Below this a payload does not shrink enough to pay for trying.
const COMPRESS_FROM: usize = 200;
const DEFLATE_LEVEL: u8 = 6;
/// The longest cookie value `open` decodes; a header line this long is refused before any
/// base64 or AEAD work.
pub const MAX_COOKIE_CHARS: usize = 256 * 1024;
/// The largest payload a sealed cookie may inflate to: only this server's keys seal cookies,
/// but the bound keeps a leaked key from becoming a memory bomb.
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("session key: {0}")]
    Key(String),
    #[error("the session cookie is malformed: {0}")]
    Malformed(&'static str),
    #[error("the session cookie was sealed with a key this server does not hold (key id {0})")]
    UnknownKey(String),
    #[error("the session cookie does not authenticate (altered or forged)")]
    Tampered,
    #[error("the session expired at unix time {0}")]
    Expired(u64),
    #[error("the session payload is too large: {0} bytes (at most {MAX_PAYLOAD_BYTES})")]
    TooLarge(usize),
    #[error("{0} failed")]
    Crypto(&'static str),
}

impl SessionError {
    /// A stable name for the kind of failure (metrics, logs, the Python exception).
    pub fn kind(&self) -> &'static str {
        match self {
            SessionError::Key(_) => "key",
            SessionError::Malformed(_) => "malformed",
            SessionError::UnknownKey(_) => "unknown-key",
            SessionError::Tampered => "tampered",
            SessionError::Expired(_) => "expired",
            SessionError::TooLarge(_) => "too-large",
            SessionError::Crypto(_) => "crypto",
        }
    }
}

struct RingKey {
    id: [u8; KID_BYTES],
    aead: LessSafeKey,
}

/// The session keys: the first seals, every one opens (rotation: add the new key first, keep
/// the old one until the sessions it sealed have expired).
pub struct Keyring {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.keys.iter().map(|k| hex(&k.id)).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// The public name of a key: the first bytes of a domain-separated SHA-256, never the key.
pub fn key_id(key: &[u8]) -> [u8; KID_BYTES] {
    let mut input = Vec::with_capacity(24 + key.len());
    input.extend_from_slice(b"trustee-py session key\0");
    input.extend_from_slice(key);
    let d = digest(&SHA256, &input);
    let mut id = [0u8; KID_BYTES];
    id.copy_from_slice(&d.as_ref()[..KID_BYTES]);
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `open` found: the payload and the expiry sealed with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub payload: Vec<u8>,
    pub expires_at: u64,
}

impl Keyring {
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, SessionError> {
        if keys.is_empty() {
            return Err(SessionError::Key("no session key".into()));
        }
        let mut ring = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            if key.len() != KEY_BYTES {
                return Err(SessionError::Key(format!(
                    "key {index} has {} bytes, not {KEY_BYTES}",
                    key.len()
                )));
            }
            let id = key_id(key);
            if ring.iter().any(|k: &RingKey| k.id == id) {
                return Err(SessionError::Key(format!(
                    "key {index} repeats an earlier key (key id {})",
                    hex(&id)
                )));
            }
            let unbound = UnboundKey::new(&AES_256_GCM, key)
                .map_err(|_| SessionError::Crypto("AES-256-GCM key setup"))?;
            ring.push(RingKey {
                id,
                aead: LessSafeKey::new(unbound),
            });
        }
        Ok(Self { keys: ring })
    }

    /// The key id (hex) of the sealing key, for logs.
    pub fn sealing_key_id(&self) -> String {
        hex(&self.keys[0].id)
    }

    pub fn seal(&self, expires_at: u64, payload: &[u8]) -> Result<String, SessionError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SessionError::TooLarge(payload.len()));
        }
        let compressed = if payload.len() >= COMPRESS_FROM {
            let packed = miniz_oxide::deflate::compress_to_vec(payload, DEFLATE_LEVEL);
            (packed.len() < payload.len()).then_some(packed)
        } else {
            None
        };
        let (flags, body) = match &compressed {
            Some(packed) => (FLAG_DEFLATE, packed.as_slice()),
            None => (0, payload),
        };
        let key = &self.keys[0];
        let mut out = Vec::with_capacity(OVERHEAD + body.len());
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&expires_at.to_be_bytes());
        out.push(flags);
        let mut nonce = [0u8; NONCE_BYTES];
        fill(&mut nonce).map_err(|_| SessionError::Crypto("nonce generation"))?;
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(body);
        let (head, rest) = out.split_at_mut(start);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head[..HEADER_BYTES]),
                rest,
            )
            .map_err(|_| SessionError::Crypto("AES-256-GCM sealing"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The payload of a cookie this ring sealed, unless it is altered, foreign or expired
    /// (`now` in unix seconds; expired means `now >= expires_at`).
    pub fn open(&self, cookie: &str, now: u64) -> Result<Opened, SessionError> {
        if cookie.len() > MAX_COOKIE_CHARS {
            return Err(SessionError::Malformed("longer than any sealed session"));
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(cookie)
            .map_err(|_| SessionError::Malformed("not base64url"))?;
        if raw.len() < OVERHEAD {
            return Err(SessionError::Malformed("shorter than a sealed session"));
        }
        if raw[0] != VERSION {
            return Err(SessionError::Malformed("unknown format version"));
        }
        let kid = &raw[1..1 + KID_BYTES];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or_else(|| SessionError::UnknownKey(hex(kid)))?;
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&raw[1 + KID_BYTES..HEADER_BYTES - 1]);
        let expires_at = u64::from_be_bytes(exp);
        let flags = raw[HEADER_BYTES - 1];
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&raw[HEADER_BYTES..HEADER_BYTES + NONCE_BYTES]);
        let (head, sealed) = raw.split_at_mut(HEADER_BYTES + NONCE_BYTES);
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head[..HEADER_BYTES]),
                sealed,
            )
            .map_err(|_| SessionError::Tampered)?;
        // Authenticated first: a forged expiry says "tampered", not "expired".
        if now >= expires_at {
            return Err(SessionError::Expired(expires_at));
        }
        let payload = match flags {
            0 => plain.to_vec(),
            FLAG_DEFLATE => {
                miniz_oxide::inflate::decompress_to_vec_with_limit(plain, MAX_PAYLOAD_BYTES)
                    .map_err(|_| SessionError::Malformed("compressed payload does not inflate"))?
            }
            _ => return Err(SessionError::Malformed("unknown flags")),
        };
        Ok(Opened {
            payload,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests;
