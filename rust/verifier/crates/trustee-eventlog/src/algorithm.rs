//! TCG algorithm ids as they appear in the spec-ID event and in digests, and
//! the subset that can actually be computed (for digest checks and replay).
use std::fmt;

/// A TCG_ALG_ID accepted in the log. RSA/TDES/SHA-1 are accepted by the
/// parser only as far as upstream accepts them: declaring them is fine, but a
/// digest that uses them cannot be checked and makes parsing fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Rsa,
    Tdes,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    Sm3,
}

impl Algorithm {
    pub const ALL: [Algorithm; 7] = [
        Algorithm::Rsa,
        Algorithm::Tdes,
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Sha384,
        Algorithm::Sha512,
        Algorithm::Sm3,
    ];

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }

    pub fn id(self) -> u16 {
        match self {
            Algorithm::Rsa => 0x1,
            Algorithm::Tdes => 0x3,
            Algorithm::Sha1 => 0x4,
            Algorithm::Sha256 => 0xB,
            Algorithm::Sha384 => 0xC,
            Algorithm::Sha512 => 0xD,
            Algorithm::Sm3 => 0x12,
        }
    }

    /// Name used in the JSON (`digests[].alg`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rsa => "RSA",
            Algorithm::Tdes => "TDES",
            Algorithm::Sha1 => "SHA-1",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha384 => "SHA-384",
            Algorithm::Sha512 => "SHA-512",
            Algorithm::Sm3 => "SM3",
        }
    }

    /// The hash this id stands for, when it is one this crate can compute.
    pub fn hash(self) -> Option<HashAlgorithm> {
        match self {
            Algorithm::Sha256 => Some(HashAlgorithm::Sha256),
            Algorithm::Sha384 => Some(HashAlgorithm::Sha384),
            Algorithm::Sha512 => Some(HashAlgorithm::Sha512),
            Algorithm::Sm3 => Some(HashAlgorithm::Sm3),
            Algorithm::Rsa | Algorithm::Tdes | Algorithm::Sha1 => None,
        }
    }

    fn slot(self) -> usize {
        match self {
            Algorithm::Rsa => 0,
            Algorithm::Tdes => 1,
            Algorithm::Sha1 => 2,
            Algorithm::Sha256 => 3,
            Algorithm::Sha384 => 4,
            Algorithm::Sha512 => 5,
            Algorithm::Sm3 => 6,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#x})", self.name(), self.id())
    }
}

/// Hash algorithms usable for digest checks and register replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
    Sm3,
}

impl HashAlgorithm {
    pub fn algorithm(self) -> Algorithm {
        match self {
            HashAlgorithm::Sha256 => Algorithm::Sha256,
            HashAlgorithm::Sha384 => Algorithm::Sha384,
            HashAlgorithm::Sha512 => Algorithm::Sha512,
            HashAlgorithm::Sm3 => Algorithm::Sm3,
        }
    }

    pub fn name(self) -> &'static str {
        self.algorithm().name()
    }

    pub fn digest_size(self) -> usize {
        match self {
            HashAlgorithm::Sha256 | HashAlgorithm::Sm3 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }

    /// Hash of the concatenation of `parts` (a register extend is `[mr, digest]`).
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => hash_parts::<sha2::Sha256>(parts),
            HashAlgorithm::Sha384 => hash_parts::<sha2::Sha384>(parts),
            HashAlgorithm::Sha512 => hash_parts::<sha2::Sha512>(parts),
            HashAlgorithm::Sm3 => hash_parts::<sm3::Sm3>(parts),
        }
    }
}

fn hash_parts<D: sha2::digest::Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// Digest sizes declared by the spec-ID event, one slot per algorithm (a
/// later declaration of the same algorithm wins, as upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DigestSizes([Option<u16>; 7]);

impl DigestSizes {
    pub(crate) fn set(&mut self, alg: Algorithm, size: u16) {
        self.0[alg.slot()] = Some(size);
    }

    pub(crate) fn get(&self, alg: Algorithm) -> Option<u16> {
        self.0[alg.slot()]
    }
}
