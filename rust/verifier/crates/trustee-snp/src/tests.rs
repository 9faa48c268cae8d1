use crate::*;

#[test]
fn tcb_roundtrip_layouts() {
    let raw = [1, 2, 3, 4, 5, 6, 7, 8];
    let legacy = TcbVersion::decode(&raw, false);
    assert_eq!(
        (
            legacy.bootloader,
            legacy.tee,
            legacy.snp,
            legacy.microcode,
            legacy.fmc
        ),
        (1, 2, 7, 8, None)
    );
    assert_eq!(legacy.encode(false), [1, 2, 0, 0, 0, 0, 7, 8]);
    let turin = TcbVersion::decode(&raw, true);
    assert_eq!(
        (
            turin.fmc,
            turin.bootloader,
            turin.tee,
            turin.snp,
            turin.microcode
        ),
        (Some(1), 2, 3, 4, 8)
    );
    assert_eq!(turin.encode(true), [1, 2, 3, 4, 0, 0, 0, 8]);
}

#[test]
fn generations() {
    assert_eq!(Generation::from_cpuid(0x19, 0x01), Some(Generation::Milan));
    assert_eq!(Generation::from_cpuid(0x19, 0x11), Some(Generation::Genoa));
    assert_eq!(Generation::from_cpuid(0x19, 0xAF), Some(Generation::Genoa));
    assert_eq!(Generation::from_cpuid(0x19, 0xB0), None);
    assert_eq!(Generation::from_cpuid(0x1A, 0x11), Some(Generation::Turin));
    assert_eq!(Generation::from_cpuid(0x1A, 0x12), None);
}

#[test]
fn synthetic_v5_canonical_encoding() {
    let mut b = vec![0xEEu8; REPORT_LEN];
    b[0..4].copy_from_slice(&5u32.to_le_bytes());
    b[0x188] = 0x1A; // Turin
    b[0x189] = 0x02;
    let r = parse_report(&b).unwrap();
    assert_eq!(r.generation(), Some(Generation::Turin));
    assert_eq!(r.launch_mit_vector, Some(u64::from_le_bytes([0xEE; 8])));
    let c = r.canonical_bytes().unwrap();
    assert_eq!(c.len(), REPORT_LEN);
    assert_eq!(&c[0x4C..0x50], &[0; 4]); // reserved
    assert_eq!(&c[0x18B..0x1A0], &[0; 21]); // reserved
    assert_eq!(&c[0x180..0x188], &[0xEE, 0xEE, 0xEE, 0xEE, 0, 0, 0, 0xEE]);
    assert_eq!(&c[0x1F8..0x208], &[0xEE; 16]);
    assert_eq!(&c[0x208..0x2A0], &[0; 0x98][..]);
    assert_eq!(c[0x1EB], 0);
    // Signature reserved area zeroed, r/s kept.
    assert_eq!(&c[0x2A0..0x330], &[0xEE; 0x90][..]);
    assert!(c[0x330..].iter().all(|&x| x == 0));
    let claims = claims(&r);
    assert_eq!(claims["reported_tcb_bootloader"], 0xEE);
}

#[test]
fn v2_drops_cpuid_and_mitigations() {
    let mut b = vec![0x11u8; REPORT_LEN];
    b[0..4].copy_from_slice(&2u32.to_le_bytes());
    let r = parse_report(&b).unwrap();
    assert_eq!(r.cpuid_fam_id, None);
    assert_eq!(r.launch_mit_vector, None);
    // chip_id[8..] non-zero → legacy layout (sev heuristic: Genoa).
    assert_eq!(r.generation(), Some(Generation::Genoa));
    let c = r.canonical_bytes().unwrap();
    assert_eq!(&c[0x188..0x1A0], &[0; 24]);
    assert_eq!(&c[0x1F8..0x2A0], &[0; 0xA8][..]);
}
