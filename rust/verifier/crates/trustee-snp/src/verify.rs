//! Full verification of SNP evidence: chain to a pinned AMD root, report signature, TCB,
//! chip ID, validity periods, VMPL and the report-data / init-data bindings.

use crate::chain::{kind_name, Pool, Vek};
use crate::checks::{check_host_data, check_report_data, check_vmpl};
use crate::evidence::{decode_evidence, CertType};
use crate::memo::LinkMemo;
use crate::parsed::{EcParts, ParseMemo};
use crate::report::{claims_for, extended_claims, Generation, Report, TcbVersion};
use crate::{
    cert::{check_chip_id, check_tcb, verify_canonical_signature},
    CertInfo, LeafKind, VekExtensions, VerifyError,
};
use serde_json::Value;

/// What the caller expects and tolerates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Time at which certificate validity periods are checked (Unix seconds).
    pub now_unix: i64,
    /// Expected REPORT_DATA, zero-padded (or truncated) to 64 bytes before comparing.
    pub expected_report_data: Option<Vec<u8>>,
    /// Expected HOST_DATA (init-data digest), zero-padded (or truncated) to 32 bytes.
    pub expected_host_data: Option<Vec<u8>>,
    /// Accept reports from VMPL 1..3 (upstream requires VMPL 0).
    pub allow_nonzero_vmpl: bool,
    /// SHA-256 fingerprints of extra ARK/ASK/ASVK certificates to trust (a test PKI).
    pub extra_trusted_sha256: Vec<[u8; 32]>,
}

impl VerifyOptions {
    /// Options with nothing expected, checking validity at `now_unix`.
    pub fn at(now_unix: i64) -> Self {
        VerifyOptions {
            now_unix,
            ..Default::default()
        }
    }
}

/// Where the endorsement key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VekSource {
    /// The evidence's `cert_chain`.
    Evidence,
    /// The caller's `certs` (bundle, directory, AMD KDS).
    Supplied,
}

/// Result of a successful verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Upstream Trustee's SNP claims, unchanged.
    pub claims: Value,
    /// Fields upstream does not expose (VMPL, every POLICY bit, generation, …), kept apart
    /// so that `claims` stays identical to upstream's.
    pub extended_claims: Value,
    pub generation: Generation,
    pub chip_id: [u8; 64],
    pub reported_tcb: TcbVersion,
    pub leaf_kind: LeafKind,
    pub vek_source: VekSource,
    pub vek: CertInfo,
    pub vek_extensions: VekExtensions,
    /// ASK (VCEK) or ASVK (VLEK).
    pub intermediate: CertInfo,
    pub ark: CertInfo,
    pub report: Report,
}

/// Verify SNP evidence (the attester's JSON, or a raw 1184-byte report) with no memo.
///
/// `certs` are extra certificates (each DER or a PEM bundle): the VEK fetched from AMD KDS
/// or a local store when the evidence has none, and optionally AMD ARK/ASK/ASVK (the
/// production ones are built in, [`crate::embedded_anchors`]). Vendor certificates are only
/// used when pinned (or listed in `opts.extra_trusted_sha256`); an unpinned one is an error. A VLEK in `certs` is accepted, so callers must only pass VLEKs
/// that the operator supplied explicitly (AMD KDS never serves VLEKs).
pub fn verify_evidence(
    evidence: &[u8],
    certs: &[Vec<u8>],
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    verify_with_memo(evidence, certs, opts, None)
}

/// What a [`SnpVerifier`] remembers between calls.
struct Memos {
    links: LinkMemo,
    parsed: ParseMemo,
}

/// Verifier keeping bounded memos of verified certificate links and of parsed certificate
/// inputs; share one per process.
pub struct SnpVerifier {
    memo: Memos,
}

impl Default for SnpVerifier {
    fn default() -> Self {
        SnpVerifier::new(1024)
    }
}

impl SnpVerifier {
    /// `capacity`: maximum number of remembered (subject, issuer) signature links, and of
    /// remembered certificate inputs (each DER certificate or PEM bundle, by content).
    pub fn new(capacity: usize) -> Self {
        SnpVerifier {
            memo: Memos {
                links: LinkMemo::new(capacity),
                parsed: ParseMemo::new(capacity),
            },
        }
    }

    /// [`verify_evidence`], skipping RSA signature checks of certificate links already
    /// verified by this instance (identified by the SHA-256 of both certificates), and
    /// re-parsing of certificate inputs already seen (identified by the SHA-256 of the
    /// input bytes; this includes the VEK's public key and extensions).
    pub fn verify(
        &self,
        evidence: &[u8],
        certs: &[Vec<u8>],
        opts: &VerifyOptions,
    ) -> Result<Verified, VerifyError> {
        verify_with_memo(evidence, certs, opts, Some(&self.memo))
    }

    /// A raw 1184-byte report whose VEK travels beside it rather than in a GHCB
    /// certificate table (Azure's HCL evidence carries the VCEK on its own): `vek` (DER or
    /// PEM) is chained to the pinned ASK/ARK exactly as evidence certificates are, with the
    /// same signature, validity, TCB, chip-ID, VMPL and binding checks. `certs` are further
    /// certificates (test anchors; AMD's own ASK/ARK are built in).
    pub fn verify_report_with_vek(
        &self,
        report: &[u8],
        vek: &[u8],
        certs: &[Vec<u8>],
        opts: &VerifyOptions,
    ) -> Result<Verified, VerifyError> {
        if report.len() != crate::REPORT_LEN {
            return Err(crate::ParseError::Length {
                expected: crate::REPORT_LEN,
                actual: report.len(),
            }
            .into());
        }
        let mut all = Vec::with_capacity(certs.len() + 1);
        all.push(vek.to_vec());
        all.extend_from_slice(certs);
        verify_with_memo(report, &all, opts, Some(&self.memo))
    }

    /// Number of remembered links.
    pub fn memo_len(&self) -> usize {
        self.memo.links.len()
    }

    /// Number of remembered certificate inputs.
    pub fn parsed_memo_len(&self) -> usize {
        self.memo.parsed.len()
    }
}

fn verify_with_memo(
    evidence: &[u8],
    certs: &[Vec<u8>],
    opts: &VerifyOptions,
    memo: Option<&Memos>,
) -> Result<Verified, VerifyError> {
    let ev = decode_evidence(evidence)?;
    let links = memo.map(|m| &m.links);
    let parsed = memo.map(|m| &m.parsed);
    let report = ev.report;
    let extra = &opts.extra_trusted_sha256;

    let mut pool = Pool::default();
    for (i, entry) in ev.cert_chain.iter().flatten().enumerate() {
        let label = match &entry.cert_type {
            CertType::Ark => "ARK",
            CertType::Ask => "ASK",
            CertType::Vcek => "VCEK",
            CertType::Vlek => "VLEK",
            // Not certificates the chain needs (upstream ignores them too).
            CertType::Crl | CertType::Empty | CertType::Other(_) => continue,
        };
        pool.add(
            &entry.data,
            &format!("cert_chain[{i}] ({label})"),
            true,
            extra,
            parsed,
        )?;
    }
    for (i, c) in certs.iter().enumerate() {
        pool.add(
            c,
            &format!("supplied certificate {i}"),
            false,
            extra,
            parsed,
        )?;
    }
    pool.add_embedded();
    if pool.veks.is_empty() {
        return Err(VerifyError::MissingVek(
            if ev.cert_chain.is_some() {
                "neither the evidence cert_chain nor the supplied certificates contain one"
            } else {
                "the evidence has no cert_chain and none was supplied (fetch the VCEK from AMD KDS)"
            }
            .into(),
        ));
    }

    let generations: Vec<Generation> = match report.cpuid_generation()? {
        Some(g) => vec![g],
        None => Generation::ALL.to_vec(),
    };

    // Evidence VEKs come first (upstream uses the first one); later candidates are only
    // tried when an earlier one fails, and the first failure is what gets reported.
    let mut first_err = None;
    for vek in &pool.veks {
        match chain_and_signature(&pool, vek, &report, &generations, links) {
            Ok((generation, inter, ark)) => {
                return finish(report, vek, generation, inter, ark, opts);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| VerifyError::MissingVek("no candidate".into())))
}

fn chain_and_signature(
    pool: &Pool,
    vek: &Vek,
    report: &Report,
    generations: &[Generation],
    memo: Option<&LinkMemo>,
) -> Result<(Generation, CertInfo, CertInfo), VerifyError> {
    let (generation, inter, ark) = pool.chain_for(vek, generations, memo)?;
    let key = ec_parts(vek)?.key.as_ref().map_err(Clone::clone)?;
    let canonical = report.canonical_bytes_for(generation);
    verify_canonical_signature(report, &canonical, key).map_err(|e| match e {
        VerifyError::ReportSignature(m) => VerifyError::ReportSignature(format!(
            "{m} ({} {:?}, {})",
            kind_name(vek.kind),
            vek.cert.common_name,
            generation.name()
        )),
        other => other,
    })?;
    Ok((generation, inter.cert.info.clone(), ark.cert.info.clone()))
}

fn ec_parts(vek: &Vek) -> Result<&EcParts, VerifyError> {
    // The pool only admits EC certificates as VEKs; this guards that invariant.
    vek.cert.ec.as_ref().ok_or_else(|| {
        VerifyError::UnsupportedKey(format!(
            "{} {:?} has no EC public key",
            kind_name(vek.kind),
            vek.cert.common_name
        ))
    })
}

fn finish(
    report: Report,
    vek: &Vek,
    generation: Generation,
    intermediate: CertInfo,
    ark: CertInfo,
    opts: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    for c in [&vek.cert.info, &intermediate, &ark] {
        c.check_validity(opts.now_unix)?;
    }
    let ext = ec_parts(vek)?.extensions.as_ref().map_err(Clone::clone)?;
    check_tcb(&report, generation, ext)?;
    if vek.kind == LeafKind::Vcek {
        check_chip_id(&report.chip_id, generation, ext)?;
    }
    check_vmpl(&report, opts.allow_nonzero_vmpl)?;
    if let Some(expected) = &opts.expected_report_data {
        check_report_data(&report, expected)?;
    }
    if let Some(expected) = &opts.expected_host_data {
        check_host_data(&report, expected)?;
    }
    Ok(Verified {
        claims: claims_for(&report, generation),
        extended_claims: extended_claims(&report, generation, vek.kind),
        generation,
        chip_id: report.chip_id,
        reported_tcb: report.reported_tcb_for(generation),
        leaf_kind: vek.kind,
        vek_source: if vek.from_evidence {
            VekSource::Evidence
        } else {
            VekSource::Supplied
        },
        vek: vek.cert.info.clone(),
        vek_extensions: ext.clone(),
        intermediate,
        ark,
        report,
    })
}
