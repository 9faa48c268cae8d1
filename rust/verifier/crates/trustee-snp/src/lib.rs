//! AMD SEV-SNP support for trustee-py.
//!
//! * [`verify_evidence`] / [`SnpVerifier`] — full verification of the attester's evidence
//!   (upstream's attester JSON, or a raw 1184-byte report): VEK → ASK/ASVK → ARK to an AMD root
//!   pinned by fingerprint ([`PINNED_ANCHORS`]; the certificates are built in, see
//!   [`embedded_anchors`], and may also be supplied by the evidence or the caller),
//!   report signature, validity periods, REPORTED_TCB and chip ID against the VEK, VMPL,
//!   report-data and host-data bindings; upstream's claims.
//! * [`vcek_request`] — what to ask AMD KDS for when the evidence has no VCEK.
//! * Building blocks: [`parse_report`], [`decode_evidence`], [`claims`],
//!   [`verify_report_signature`], [`verify_chain`], [`parse_vek_extensions`],
//!   [`check_tcb`], [`check_chip_id`].
//!
//! Nothing in this crate panics on any input: every offset is checked.

mod anchors;
mod cert;
mod chain;
mod checks;
mod embedded;
mod error;
mod evidence;
mod evidence_stream;
mod json_report;
mod kds;
mod memo;
mod parsed;
mod report;
mod verify;

pub use anchors::{fingerprint, pinned, AnchorRole, PinnedAnchor, PINNED_ANCHORS};
pub use cert::{
    check_chip_id, check_tcb, parse_vek_extensions, verify_anchors, verify_chain, verify_issued_by,
    verify_report_signature, verify_report_tcb, CertInfo, ChainInfo, LeafKind, VekExtensions,
};
pub use checks::{check_host_data, check_report_data, check_vmpl, regularize};
pub use embedded::{embedded_anchor_problems, embedded_anchors, EmbeddedAnchor};
pub use error::{ParseError, VerifyError};
pub use evidence::{decode_evidence, decode_evidence_value, CertType, ChainEntry, Evidence};
pub use json_report::report_from_json;
pub use kds::{vcek_request, VcekRequest};
pub use report::{
    claims, claims_for, extended_claims, parse_report, Generation, Report, TcbVersion, REPORT_LEN,
    SIGNED_LEN,
};
pub use verify::{verify_evidence, SnpVerifier, VekSource, Verified, VerifyOptions};

#[cfg(test)]
mod tests;
