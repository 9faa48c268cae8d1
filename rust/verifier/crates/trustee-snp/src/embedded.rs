//! AMD's ARK, ASK and ASVK per product, shipped inside the crate (`anchors/`, as AMD KDS
//! serves them) so that evidence carrying only its VEK verifies offline.
//!
//! The files are not trusted by being here: each certificate is admitted only if its
//! SHA-256 is pinned in [`crate::PINNED_ANCHORS`], and the signatures between them are
//! checked once, on first use, so that verification never re-checks the built-in chain.
//! A certificate failing either check is left out and reported, never a panic.

use crate::anchors::{pinned, AnchorRole};
use crate::cert::{parse_certs, verify_signed_by};
use crate::chain::Anchor;
use crate::memo::LinkMemo;
use crate::parsed::ParsedCert;
use crate::report::Generation;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

const BUNDLES: [(&str, &[u8]); 3] = [
    (
        "milan_ask_ark_asvk.pem",
        include_bytes!("../anchors/milan_ask_ark_asvk.pem"),
    ),
    (
        "genoa_ask_ark_asvk.pem",
        include_bytes!("../anchors/genoa_ask_ark_asvk.pem"),
    ),
    (
        "turin_ask_ark_asvk.pem",
        include_bytes!("../anchors/turin_ask_ark_asvk.pem"),
    ),
];

/// A built-in AMD vendor certificate that passed its pin and signature checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedAnchor {
    pub generation: Generation,
    pub role: AnchorRole,
    pub der: Vec<u8>,
}

pub(crate) struct Embedded {
    pub anchors: Vec<Anchor>,
    ders: Vec<EmbeddedAnchor>,
    /// [`LinkMemo::key`]s of the (subject, issuer) signatures checked at load.
    links: HashSet<[u8; 32]>,
    /// Why a shipped certificate was left out (empty in any build the tests passed).
    pub problems: Vec<String>,
}

impl Embedded {
    pub fn link_verified(&self, key: &[u8; 32]) -> bool {
        self.links.contains(key)
    }
}

pub(crate) fn embedded() -> &'static Embedded {
    static EMBEDDED: OnceLock<Embedded> = OnceLock::new();
    EMBEDDED.get_or_init(load)
}

/// The built-in ARK, ASK and ASVK certificates that passed their checks.
pub fn embedded_anchors() -> &'static [EmbeddedAnchor] {
    &embedded().ders
}

/// Why any shipped certificate was refused at load (empty unless the build is broken).
pub fn embedded_anchor_problems() -> &'static [String] {
    &embedded().problems
}

fn load() -> Embedded {
    let mut problems = Vec::new();
    let mut pinned_certs: Vec<(Anchor, Vec<u8>)> = Vec::new();
    for (file, pem) in BUNDLES {
        let certs = match parse_certs(pem, file) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        for (der, x509) in certs {
            let cert = Arc::new(ParsedCert::new(&der, x509));
            match pinned(&cert.sha256) {
                Some((generation, role)) => pinned_certs.push((
                    Anchor {
                        cert,
                        generation,
                        role,
                    },
                    der,
                )),
                None => problems.push(format!(
                    "{file}: {:?} SHA-256 {} is not pinned",
                    cert.common_name,
                    hex::encode(cert.sha256)
                )),
            }
        }
    }
    let mut out = Embedded {
        anchors: Vec::new(),
        ders: Vec::new(),
        links: HashSet::new(),
        problems,
    };
    let arks: Vec<&Anchor> = pinned_certs
        .iter()
        .map(|(a, _)| a)
        .filter(|a| a.role == AnchorRole::Ark)
        .collect();
    for (anchor, der) in &pinned_certs {
        let ark = arks
            .iter()
            .find(|ark| ark.generation == anchor.generation)
            .copied();
        let checked = match ark {
            None => Err(format!("no built-in ARK for {}", anchor.generation.name())),
            Some(ark) => {
                let signed = |subject: &Anchor| {
                    verify_signed_by(&subject.cert.x509, &ark.cert.x509).map_err(|e| e.to_string())
                };
                // An intermediate is only as good as the ARK that signs it.
                signed(ark).and_then(|()| signed(anchor)).map(|()| ark)
            }
        };
        match checked {
            Ok(ark) => {
                out.links
                    .insert(LinkMemo::key(&anchor.cert.sha256, &ark.cert.sha256));
                out.anchors.push(anchor.clone());
                out.ders.push(EmbeddedAnchor {
                    generation: anchor.generation,
                    role: anchor.role,
                    der: der.clone(),
                });
            }
            Err(e) => out.problems.push(format!(
                "built-in {} {}: {e}",
                anchor.generation.name(),
                anchor.role.name()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PINNED_ANCHORS;

    #[test]
    fn every_pinned_anchor_is_shipped_and_every_shipped_one_is_pinned() {
        let e = embedded();
        assert!(e.problems.is_empty(), "{:?}", e.problems);
        assert_eq!(e.anchors.len(), PINNED_ANCHORS.len());
        for pin in PINNED_ANCHORS {
            let shipped = embedded_anchors()
                .iter()
                .find(|a| a.generation == pin.generation && a.role == pin.role)
                .unwrap_or_else(|| panic!("{pin:?} not shipped"));
            assert_eq!(crate::fingerprint(&shipped.der), pin.sha256, "{pin:?}");
        }
        // ARK self-signatures and ARK → ASK/ASVK, each checked once at load.
        assert_eq!(e.links.len(), PINNED_ANCHORS.len());
    }
}
