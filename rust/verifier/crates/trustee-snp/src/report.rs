//! SNP `ATTESTATION_REPORT` layout (AMD SNP ABI), versions 2, 3/4 and 5+.

use crate::{ParseError, VerifyError};
use serde_json::{json, Value};

/// Total size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes covered by the signature (`0x000..0x2A0`).
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the signature R component (72 bytes, little-endian).
pub(crate) const SIG_R_OFF: usize = 0x2A0;
/// Offset of the signature S component (72 bytes, little-endian).
pub(crate) const SIG_S_OFF: usize = 0x2E8;
pub(crate) const SIG_COMPONENT_LEN: usize = 72;

/// AMD EPYC processor generation; decides the TCB_VERSION byte layout and the vendor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    Milan,
    Genoa,
    Turin,
}

impl Generation {
    /// From CPUID family / model (v3+ reports). Genoa model 0xAF is accepted (project
    /// decision: upstream's exclusive range is an off-by-one).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Generation::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Generation::Genoa),
            (0x1A, 0x00..=0x11) => Some(Generation::Turin),
            _ => None,
        }
    }

    pub const ALL: [Generation; 3] = [Generation::Milan, Generation::Genoa, Generation::Turin];

    /// Name used by AMD KDS and the anchor files.
    pub fn name(self) -> &'static str {
        match self {
            Generation::Milan => "Milan",
            Generation::Genoa => "Genoa",
            Generation::Turin => "Turin",
        }
    }

    pub(crate) fn turin_layout(self) -> bool {
        matches!(self, Generation::Turin)
    }
}

/// Decoded TCB_VERSION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcbVersion {
    /// Turin only.
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbVersion {
    /// Decode with the Milan/Genoa (`turin == false`) or Turin layout.
    pub fn decode(raw: &[u8; 8], turin: bool) -> Self {
        if turin {
            TcbVersion {
                fmc: Some(raw[0]),
                bootloader: raw[1],
                tee: raw[2],
                snp: raw[3],
                microcode: raw[7],
            }
        } else {
            TcbVersion {
                fmc: None,
                bootloader: raw[0],
                tee: raw[1],
                snp: raw[6],
                microcode: raw[7],
            }
        }
    }

    /// Encode with the given layout; reserved bytes are zero.
    pub fn encode(&self, turin: bool) -> [u8; 8] {
        let mut out = [0u8; 8];
        if turin {
            out[0] = self.fmc.unwrap_or(0);
            out[1] = self.bootloader;
            out[2] = self.tee;
            out[3] = self.snp;
        } else {
            out[0] = self.bootloader;
            out[1] = self.tee;
            out[6] = self.snp;
        }
        out[7] = self.microcode;
        out
    }
}

/// A parsed SNP attestation report. Raw fields are kept so that the generation-dependent
/// interpretation can be applied later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub sig_algo: u32,
    pub current_tcb_raw: [u8; 8],
    pub platform_info: u64,
    pub key_info: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb_raw: [u8; 8],
    /// v3+ only (`None` for v2).
    pub cpuid_fam_id: Option<u8>,
    pub cpuid_mod_id: Option<u8>,
    pub cpuid_step: Option<u8>,
    pub chip_id: [u8; 64],
    pub committed_tcb_raw: [u8; 8],
    pub current_build: u8,
    pub current_minor: u8,
    pub current_major: u8,
    pub committed_build: u8,
    pub committed_minor: u8,
    pub committed_major: u8,
    pub launch_tcb_raw: [u8; 8],
    /// v5+ only.
    pub launch_mit_vector: Option<u64>,
    pub current_mit_vector: Option<u64>,
    /// Signature R, 72 bytes little-endian.
    pub sig_r: [u8; 72],
    /// Signature S, 72 bytes little-endian.
    pub sig_s: [u8; 72],
    /// The original bytes.
    pub raw: Vec<u8>,
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = b.get(off..off + N) {
        out.copy_from_slice(s);
    }
    out
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr::<4>(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr::<8>(b, off))
}

fn byte_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Parse a 1184-byte SNP attestation report (version 2 or later).
pub fn parse_report(bytes: &[u8]) -> Result<Report, ParseError> {
    if bytes.len() != REPORT_LEN {
        return Err(ParseError::Length {
            expected: REPORT_LEN,
            actual: bytes.len(),
        });
    }
    let b = bytes;
    let version = u32_at(b, 0x000);
    if version < 2 {
        return Err(ParseError::UnsupportedVersion(version));
    }
    let v3 = version >= 3;
    let v5 = version >= 5;
    Ok(Report {
        version,
        guest_svn: u32_at(b, 0x004),
        policy: u64_at(b, 0x008),
        family_id: arr(b, 0x010),
        image_id: arr(b, 0x020),
        vmpl: u32_at(b, 0x030),
        sig_algo: u32_at(b, 0x034),
        current_tcb_raw: arr(b, 0x038),
        platform_info: u64_at(b, 0x040),
        key_info: u32_at(b, 0x048),
        report_data: arr(b, 0x050),
        measurement: arr(b, 0x090),
        host_data: arr(b, 0x0C0),
        id_key_digest: arr(b, 0x0E0),
        author_key_digest: arr(b, 0x110),
        report_id: arr(b, 0x140),
        report_id_ma: arr(b, 0x160),
        reported_tcb_raw: arr(b, 0x180),
        cpuid_fam_id: v3.then(|| byte_at(b, 0x188)),
        cpuid_mod_id: v3.then(|| byte_at(b, 0x189)),
        cpuid_step: v3.then(|| byte_at(b, 0x18A)),
        chip_id: arr(b, 0x1A0),
        committed_tcb_raw: arr(b, 0x1E0),
        current_build: byte_at(b, 0x1E8),
        current_minor: byte_at(b, 0x1E9),
        current_major: byte_at(b, 0x1EA),
        committed_build: byte_at(b, 0x1EC),
        committed_minor: byte_at(b, 0x1ED),
        committed_major: byte_at(b, 0x1EE),
        launch_tcb_raw: arr(b, 0x1F0),
        launch_mit_vector: v5.then(|| u64_at(b, 0x1F8)),
        current_mit_vector: v5.then(|| u64_at(b, 0x200)),
        sig_r: arr(b, SIG_R_OFF),
        sig_s: arr(b, SIG_S_OFF),
        raw: bytes.to_vec(),
    })
}

impl Report {
    /// Processor generation: from CPUID fam/mod for v3+ (`None` if unsupported); for v2 the
    /// sev-crate heuristic (Turin if CHIP_ID[8..64] is all zero, else Genoa/legacy layout).
    pub fn generation(&self) -> Option<Generation> {
        match (self.cpuid_fam_id, self.cpuid_mod_id) {
            (Some(f), Some(m)) => Generation::from_cpuid(f, m),
            _ => {
                if self.chip_id[8..].iter().all(|&x| x == 0) {
                    Some(Generation::Turin)
                } else {
                    Some(Generation::Genoa)
                }
            }
        }
    }

    /// Whether TCB_VERSIONs use the Turin layout (unknown generations use the legacy one).
    pub fn turin_tcb_layout(&self) -> bool {
        self.generation().is_some_and(Generation::turin_layout)
    }

    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion::decode(&self.reported_tcb_raw, self.turin_tcb_layout())
    }
    pub fn current_tcb(&self) -> TcbVersion {
        TcbVersion::decode(&self.current_tcb_raw, self.turin_tcb_layout())
    }
    pub fn committed_tcb(&self) -> TcbVersion {
        TcbVersion::decode(&self.committed_tcb_raw, self.turin_tcb_layout())
    }
    pub fn launch_tcb(&self) -> TcbVersion {
        TcbVersion::decode(&self.launch_tcb_raw, self.turin_tcb_layout())
    }

    /// KEY_INFO bits 4:2 (0 VCEK, 1 VLEK, 7 none).
    pub fn signing_key(&self) -> u32 {
        (self.key_info >> 2) & 0x7
    }

    /// Generation named by the CPUID bytes: `Ok(None)` for v2 reports (no CPUID bytes),
    /// an error for a v3+ report naming an unsupported processor.
    pub fn cpuid_generation(&self) -> Result<Option<Generation>, VerifyError> {
        match (self.cpuid_fam_id, self.cpuid_mod_id) {
            (Some(family), Some(model)) => Generation::from_cpuid(family, model)
                .map(Some)
                .ok_or(VerifyError::UnsupportedProcessor { family, model }),
            _ => Ok(None),
        }
    }

    /// REPORTED_TCB decoded with `generation`'s layout.
    pub fn reported_tcb_for(&self, generation: Generation) -> TcbVersion {
        TcbVersion::decode(&self.reported_tcb_raw, generation.turin_layout())
    }

    /// Canonical re-encoding, as upstream's sev crate produces it from the decoded report:
    /// every field at its offset, all reserved bytes zero, TCB_VERSIONs re-encoded with the
    /// generation's layout, CPUID bytes only for v3+, mitigation vectors only for v5+.
    /// `None` when a v3+ report names an unsupported processor.
    pub fn canonical_bytes(&self) -> Option<Vec<u8>> {
        let turin = match (self.cpuid_fam_id, self.cpuid_mod_id) {
            (Some(f), Some(m)) => Generation::from_cpuid(f, m)?.turin_layout(),
            _ => self.turin_tcb_layout(),
        };
        Some(self.encode_layout(turin))
    }

    /// Canonical re-encoding with the TCB layout of `generation` (which the caller derived
    /// from CPUID for v3+, or from the certificate chain for v2).
    pub fn canonical_bytes_for(&self, generation: Generation) -> Vec<u8> {
        self.encode_layout(generation.turin_layout())
    }

    pub(crate) fn encode_layout(&self, turin: bool) -> Vec<u8> {
        let tcb = |raw: &[u8; 8]| TcbVersion::decode(raw, turin).encode(turin);
        let mut out = vec![0u8; REPORT_LEN];
        let mut put = |off: usize, src: &[u8]| {
            if let Some(dst) = out.get_mut(off..off + src.len()) {
                dst.copy_from_slice(src);
            }
        };
        put(0x000, &self.version.to_le_bytes());
        put(0x004, &self.guest_svn.to_le_bytes());
        put(0x008, &self.policy.to_le_bytes());
        put(0x010, &self.family_id);
        put(0x020, &self.image_id);
        put(0x030, &self.vmpl.to_le_bytes());
        put(0x034, &self.sig_algo.to_le_bytes());
        put(0x038, &tcb(&self.current_tcb_raw));
        put(0x040, &self.platform_info.to_le_bytes());
        put(0x048, &self.key_info.to_le_bytes());
        put(0x050, &self.report_data);
        put(0x090, &self.measurement);
        put(0x0C0, &self.host_data);
        put(0x0E0, &self.id_key_digest);
        put(0x110, &self.author_key_digest);
        put(0x140, &self.report_id);
        put(0x160, &self.report_id_ma);
        put(0x180, &tcb(&self.reported_tcb_raw));
        if self.version >= 3 {
            put(
                0x188,
                &[
                    self.cpuid_fam_id.unwrap_or(0),
                    self.cpuid_mod_id.unwrap_or(0),
                    self.cpuid_step.unwrap_or(0),
                ],
            );
        }
        put(0x1A0, &self.chip_id);
        put(0x1E0, &tcb(&self.committed_tcb_raw));
        put(
            0x1E8,
            &[self.current_build, self.current_minor, self.current_major],
        );
        put(
            0x1EC,
            &[
                self.committed_build,
                self.committed_minor,
                self.committed_major,
            ],
        );
        put(0x1F0, &tcb(&self.launch_tcb_raw));
        if self.version >= 5 {
            put(0x1F8, &self.launch_mit_vector.unwrap_or(0).to_le_bytes());
            put(0x200, &self.current_mit_vector.unwrap_or(0).to_le_bytes());
        }
        put(SIG_R_OFF, &self.sig_r);
        put(SIG_S_OFF, &self.sig_s);
        out
    }
}

/// Upstream Trustee's SNP claims (`class cpu`): numbers, booleans and lowercase hex.
/// REPORTED_TCB is decoded with [`Report::generation`]'s layout; see [`claims_for`].
pub fn claims(report: &Report) -> Value {
    claims_with_tcb(report, report.reported_tcb())
}

/// [`claims`] with REPORTED_TCB decoded for a known generation (for v2 reports the
/// generation comes from the certificate chain, not from the chip-ID heuristic).
pub fn claims_for(report: &Report, generation: Generation) -> Value {
    claims_with_tcb(report, report.reported_tcb_for(generation))
}

fn claims_with_tcb(report: &Report, tcb: TcbVersion) -> Value {
    let p = report.policy;
    let bit = |v: u64, n: u32| (v >> n) & 1 == 1;
    json!({
        "policy_abi_major": (p >> 8) & 0xFF,
        "policy_abi_minor": p & 0xFF,
        "policy_smt_allowed": bit(p, 16),
        "policy_migrate_ma": bit(p, 18),
        "policy_debug_allowed": bit(p, 19),
        "policy_single_socket": bit(p, 20),
        "reported_tcb_bootloader": tcb.bootloader,
        "reported_tcb_tee": tcb.tee,
        "reported_tcb_snp": tcb.snp,
        "reported_tcb_microcode": tcb.microcode,
        "platform_tsme_enabled": bit(report.platform_info, 1),
        "platform_smt_enabled": bit(report.platform_info, 0),
        "measurement": hex::encode(report.measurement),
        "report_data": hex::encode(report.report_data),
        "init_data": hex::encode(report.host_data),
        "chip_id": hex::encode(report.chip_id),
    })
}

/// Claims upstream does not produce, for policies that need them: VMPL, the raw POLICY
/// and every named POLICY / PLATFORM_INFO bit, the product and the signing key kind.
pub fn extended_claims(report: &Report, generation: Generation, signer: crate::LeafKind) -> Value {
    let p = report.policy;
    let bit = |v: u64, n: u32| (v >> n) & 1 == 1;
    let pi = report.platform_info;
    json!({
        "version": report.version,
        "guest_svn": report.guest_svn,
        "vmpl": report.vmpl,
        "policy": p,
        "policy_smt_allowed": bit(p, 16),
        "policy_migrate_ma": bit(p, 18),
        "policy_debug_allowed": bit(p, 19),
        "policy_single_socket": bit(p, 20),
        "policy_cxl_allowed": bit(p, 21),
        "policy_mem_aes_256_xts": bit(p, 22),
        "policy_rapl_disabled": bit(p, 23),
        "policy_ciphertext_hiding": bit(p, 24),
        "policy_page_swap_disabled": bit(p, 25),
        "platform_info": pi,
        "platform_smt_enabled": bit(pi, 0),
        "platform_tsme_enabled": bit(pi, 1),
        "platform_ecc_enabled": bit(pi, 2),
        "platform_rapl_disabled": bit(pi, 3),
        "platform_ciphertext_hiding_enabled": bit(pi, 4),
        "platform_alias_check_complete": bit(pi, 5),
        "platform_tio_enabled": bit(pi, 7),
        "key_info_author_key_en": report.key_info & 1 == 1,
        "key_info_mask_chip_key": (report.key_info >> 1) & 1 == 1,
        "signing_key": match signer {
            crate::LeafKind::Vcek => "VCEK",
            crate::LeafKind::Vlek => "VLEK",
        },
        "product": generation.name(),
        "host_data": hex::encode(report.host_data),
        "family_id": hex::encode(report.family_id),
        "image_id": hex::encode(report.image_id),
        "id_key_digest": hex::encode(report.id_key_digest),
        "author_key_digest": hex::encode(report.author_key_digest),
        "report_id": hex::encode(report.report_id),
    })
}
