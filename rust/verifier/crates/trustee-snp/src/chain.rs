//! Sorting supplied certificates into endorsement keys and trusted AMD anchors, and
//! building VEK → ASK/ASVK → ARK chains from them (with an optional memo of verified links).

use crate::anchors::{pinned, role_from_name, AnchorRole};
use crate::cert::{is_vcek_cn, verify_signed_by, LeafKind};
use crate::embedded::embedded;
use crate::memo::LinkMemo;
use crate::parsed::{parsed, ParseMemo, ParsedCert};
use crate::report::Generation;
use crate::VerifyError;
use std::sync::Arc;

/// A trusted AMD vendor certificate.
#[derive(Clone)]
pub(crate) struct Anchor {
    pub cert: Arc<ParsedCert>,
    pub generation: Generation,
    pub role: AnchorRole,
}

/// A candidate VCEK / VLEK.
pub(crate) struct Vek {
    pub cert: Arc<ParsedCert>,
    pub kind: LeafKind,
    pub from_evidence: bool,
}

/// Supplied certificates, sorted.
#[derive(Default)]
pub(crate) struct Pool {
    pub anchors: Vec<Anchor>,
    pub veks: Vec<Vek>,
}

fn vek_kind(cn: &str) -> Option<LeafKind> {
    if is_vcek_cn(cn) {
        Some(LeafKind::Vcek)
    } else if cn == "SEV-VLEK" || cn == "VLEK" {
        Some(LeafKind::Vlek)
    } else {
        None
    }
}

impl Pool {
    /// Add every certificate in `bytes` (DER, or PEM with one or more certificates).
    /// EC keys are endorsement keys; RSA certificates must be pinned (or in `extra`) AMD
    /// anchors, anything else is an error rather than silently ignored.
    pub fn add(
        &mut self,
        bytes: &[u8],
        what: &str,
        from_evidence: bool,
        extra: &[[u8; 32]],
        memo: Option<&ParseMemo>,
    ) -> Result<(), VerifyError> {
        for cert in parsed(bytes, what, memo)?.iter() {
            let sha256 = cert.sha256;
            let cn = &cert.common_name;
            if cert.ec.is_some() {
                let kind = vek_kind(cn).ok_or_else(|| {
                    VerifyError::Certificate(format!(
                        "{what}: EC certificate with CN {cn:?} is neither a VCEK nor a VLEK"
                    ))
                })?;
                if !self.veks.iter().any(|v| v.cert.sha256 == sha256) {
                    self.veks.push(Vek {
                        cert: Arc::clone(cert),
                        kind,
                        from_evidence,
                    });
                }
                continue;
            }
            let self_signed = cert.self_signed();
            let (generation, role) = match pinned(&sha256) {
                Some(p) => p,
                None if extra.contains(&sha256) => {
                    role_from_name(cn, self_signed).ok_or_else(|| {
                        VerifyError::Certificate(format!(
                            "{what}: trusted test certificate CN {cn:?} does not name an AMD \
                             role and product (ARK-<P>, SEV-<P>, SEV-VLEK-<P>)"
                        ))
                    })?
                }
                None => {
                    let role = if self_signed {
                        "ARK"
                    } else {
                        role_from_name(cn, false).map_or("ASK/ASVK", |(_, r)| r.name())
                    };
                    return Err(VerifyError::UntrustedCertificate {
                        role,
                        subject: cn.clone(),
                        sha256: hex::encode(sha256),
                    });
                }
            };
            if !self.anchors.iter().any(|a| a.cert.sha256 == sha256) {
                self.anchors.push(Anchor {
                    cert: Arc::clone(cert),
                    generation,
                    role,
                });
            }
        }
        Ok(())
    }

    /// Add the built-in AMD anchors the caller did not supply. They come after the
    /// supplied ones, so a caller's (test) anchor with the same name is tried first.
    pub fn add_embedded(&mut self) {
        for anchor in &embedded().anchors {
            if !self
                .anchors
                .iter()
                .any(|a| a.cert.sha256 == anchor.cert.sha256)
            {
                self.anchors.push(anchor.clone());
            }
        }
    }

    fn describe_anchors(&self) -> String {
        if self.anchors.is_empty() {
            return "none supplied".into();
        }
        let names: Vec<String> = self
            .anchors
            .iter()
            .map(|a| format!("{} {}", a.generation.name(), a.role.name()))
            .collect();
        let mut out = format!("trusted: {}", names.join(", "));
        let problems = &embedded().problems;
        if !problems.is_empty() {
            out.push_str(&format!(
                "; built-in anchors refused: {}",
                problems.join("; ")
            ));
        }
        out
    }

    /// Chain `vek` to a trusted intermediate and ARK. `generations` are the products the
    /// report allows (one for v3+; all for v2, where the chain decides). Returns the
    /// product, intermediate and ARK of the first chain that verifies.
    pub fn chain_for(
        &self,
        vek: &Vek,
        generations: &[Generation],
        memo: Option<&LinkMemo>,
    ) -> Result<(Generation, &Anchor, &Anchor), VerifyError> {
        let role = match vek.kind {
            LeafKind::Vcek => AnchorRole::Ask,
            LeafKind::Vlek => AnchorRole::Asvk,
        };
        let products = || {
            generations
                .iter()
                .map(|g| g.name())
                .collect::<Vec<_>>()
                .join("/")
        };
        let intermediates: Vec<&Anchor> = self
            .anchors
            .iter()
            .filter(|a| a.role == role && generations.contains(&a.generation))
            .filter(|a| vek.cert.named_issuer_is(&a.cert))
            .collect();
        if intermediates.is_empty() {
            let issuer_cn = crate::cert::common_name(&vek.cert.x509.tbs_certificate.issuer);
            return Err(VerifyError::MissingAnchor {
                role: role.name(),
                product: products(),
                detail: format!(
                    "{} {:?} is issued by {issuer_cn:?}; {}",
                    kind_name(vek.kind),
                    vek.cert.common_name,
                    self.describe_anchors()
                ),
            });
        }
        let mut first_err = None;
        for inter in intermediates {
            let ark = self.anchors.iter().find(|a| {
                a.role == AnchorRole::Ark
                    && a.generation == inter.generation
                    && inter.cert.named_issuer_is(&a.cert)
            });
            let Some(ark) = ark else {
                first_err.get_or_insert(VerifyError::MissingAnchor {
                    role: AnchorRole::Ark.name(),
                    product: inter.generation.name().into(),
                    detail: format!(
                        "{} {:?} needs its ARK; {}",
                        inter.role.name(),
                        inter.cert.common_name,
                        self.describe_anchors()
                    ),
                });
                continue;
            };
            let links = [
                (&ark.cert, &ark.cert),
                (&inter.cert, &ark.cert),
                (&vek.cert, &inter.cert),
            ];
            let verified = links
                .iter()
                .try_for_each(|(subject, issuer)| verify_link(subject, issuer, memo));
            match verified {
                Ok(()) => return Ok((inter.generation, inter, ark)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| VerifyError::MissingAnchor {
            role: role.name(),
            product: products(),
            detail: self.describe_anchors(),
        }))
    }
}

pub(crate) fn kind_name(kind: LeafKind) -> &'static str {
    match kind {
        LeafKind::Vcek => "VCEK",
        LeafKind::Vlek => "VLEK",
    }
}

fn verify_link(
    subject: &ParsedCert,
    issuer: &ParsedCert,
    memo: Option<&LinkMemo>,
) -> Result<(), VerifyError> {
    let key = LinkMemo::key(&subject.sha256, &issuer.sha256);
    // Links between built-in anchors were checked once at load.
    if embedded().link_verified(&key) || memo.is_some_and(|m| m.contains(&key)) {
        return Ok(());
    }
    verify_signed_by(&subject.x509, &issuer.x509)?;
    if let Some(m) = memo {
        m.insert(key);
    }
    Ok(())
}
