//! AMD root and intermediate certificates, trusted by the SHA-256 of their DER.
//!
//! The certificates are shipped with the crate (`anchors/`, see [`crate::embedded_anchors`])
//! and may also be supplied (evidence cert_chain, a bundle, a directory); any ARK/ASK/ASVK,
//! shipped or supplied, is only used if its fingerprint is pinned here or in the caller's
//! extra (test) set.

use crate::report::Generation;
use sha2::{Digest, Sha256};

/// Role of an AMD vendor certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnchorRole {
    /// AMD Root Key (self-signed).
    Ark,
    /// AMD SEV Key: issues VCEKs.
    Ask,
    /// AMD SEV VLEK Key: issues VLEKs.
    Asvk,
}

impl AnchorRole {
    pub fn name(self) -> &'static str {
        match self {
            AnchorRole::Ark => "ARK",
            AnchorRole::Ask => "ASK",
            AnchorRole::Asvk => "ASVK",
        }
    }
}

/// A pinned vendor certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedAnchor {
    pub generation: Generation,
    pub role: AnchorRole,
    /// SHA-256 of the certificate's DER.
    pub sha256: [u8; 32],
}

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

const fn pin(generation: Generation, role: AnchorRole, sha256_hex: &str) -> PinnedAnchor {
    PinnedAnchor {
        generation,
        role,
        sha256: hex32(sha256_hex),
    }
}

/// AMD's production ARK, ASK and ASVK per product (the certificates upstream Trustee ships
/// as `<product>_ask_ark_asvk.pem`; AMD KDS serves the same bytes).
pub const PINNED_ANCHORS: [PinnedAnchor; 9] = [
    pin(
        Generation::Milan,
        AnchorRole::Ark,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    pin(
        Generation::Milan,
        AnchorRole::Ask,
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    ),
    pin(
        Generation::Milan,
        AnchorRole::Asvk,
        "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    ),
    pin(
        Generation::Genoa,
        AnchorRole::Ark,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    pin(
        Generation::Genoa,
        AnchorRole::Ask,
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    ),
    pin(
        Generation::Genoa,
        AnchorRole::Asvk,
        "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    ),
    pin(
        Generation::Turin,
        AnchorRole::Ark,
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
    pin(
        Generation::Turin,
        AnchorRole::Ask,
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    ),
    pin(
        Generation::Turin,
        AnchorRole::Asvk,
        "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
    ),
];

/// SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// The pinned product and role of `sha256`, if any.
pub fn pinned(sha256: &[u8; 32]) -> Option<(Generation, AnchorRole)> {
    PINNED_ANCHORS
        .iter()
        .find(|p| &p.sha256 == sha256)
        .map(|p| (p.generation, p.role))
}

/// Product and role of a caller-trusted (test) certificate, from its CN and whether it is
/// self-signed. AMD's naming is followed: `ARK-<Product>`, `SEV-<Product>` (ASK),
/// `SEV-VLEK-<Product>` (ASVK).
pub(crate) fn role_from_name(cn: &str, self_signed: bool) -> Option<(Generation, AnchorRole)> {
    let product = |name: &str| {
        Generation::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(name))
    };
    if self_signed {
        return cn
            .strip_prefix("ARK-")
            .and_then(product)
            .map(|g| (g, AnchorRole::Ark));
    }
    if let Some(rest) = cn.strip_prefix("SEV-VLEK-") {
        return product(rest).map(|g| (g, AnchorRole::Asvk));
    }
    cn.strip_prefix("SEV-")
        .and_then(product)
        .map(|g| (g, AnchorRole::Ask))
}
