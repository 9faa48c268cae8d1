//! What the caller needs to fetch a VCEK from AMD KDS (or a local store) when the evidence
//! carries no certificate chain.

use crate::evidence::decode_evidence;
use crate::report::Generation;
use crate::VerifyError;

/// Parameters of a VCEK request (product name, chip id and reported TCB, as AMD's KDS takes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekRequest {
    /// `"Milan"`, `"Genoa"` or `"Turin"`; `None` for v2 reports (no CPUID bytes): the caller
    /// tries each product.
    pub product: Option<&'static str>,
    /// Lowercase hex of CHIP_ID (64 bytes), or of its first 8 bytes on Turin.
    pub hw_id_hex: String,
    pub bl: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
    /// Turin only.
    pub fmc: Option<u8>,
}

impl VcekRequest {
    /// KDS path and query for `product`, e.g.
    /// `vcek/v1/Milan/<hwid>?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115`.
    pub fn kds_path(&self, product: &str) -> String {
        let fmc = self
            .fmc
            .map(|f| format!("fmcSPL={f:02}&"))
            .unwrap_or_default();
        format!(
            "vcek/v1/{product}/{}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            self.hw_id_hex, self.bl, self.tee, self.snp, self.microcode
        )
    }
}

/// Derive the VCEK request from evidence (JSON or raw report).
pub fn vcek_request(evidence: &[u8]) -> Result<VcekRequest, VerifyError> {
    let report = decode_evidence(evidence)?.report;
    if report.chip_id.iter().all(|&b| b == 0) {
        return Err(VerifyError::MaskedChipId);
    }
    let generation = report.cpuid_generation()?;
    // v2 reports only come from Milan/Genoa firmware, both with the legacy TCB layout.
    let tcb = report.reported_tcb_for(generation.unwrap_or(Generation::Milan));
    let hw_id = match generation {
        Some(Generation::Turin) => report.chip_id.get(..8).unwrap_or(&[]),
        _ => &report.chip_id[..],
    };
    Ok(VcekRequest {
        product: generation.map(Generation::name),
        hw_id_hex: hex::encode(hw_id),
        bl: tcb.bootloader,
        tee: tcb.tee,
        snp: tcb.snp,
        microcode: tcb.microcode,
        fmc: tcb.fmc,
    })
}
