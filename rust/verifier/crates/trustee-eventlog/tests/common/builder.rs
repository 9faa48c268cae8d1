//! Builds small synthetic CC event logs that exercise every `details`
//! decoder, so robustness tests run even without the shared vectors.

use sha2::Digest as _;

pub const SHA256: u16 = 0xB;
pub const SHA384: u16 = 0xC;
pub const SM3: u16 = 0x12;
pub const SHA1: u16 = 0x4;

pub struct LogBuilder {
    pub bytes: Vec<u8>,
    algs: Vec<(u16, u16)>,
    /// Offsets where each record starts (for boundary assertions).
    pub record_starts: Vec<usize>,
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn hash(alg: u16, data: &[u8]) -> Vec<u8> {
    match alg {
        SHA256 => sha2::Sha256::digest(data).to_vec(),
        SHA384 => sha2::Sha384::digest(data).to_vec(),
        SM3 => sm3::Sm3::digest(data).to_vec(),
        _ => vec![0x11; 20],
    }
}

impl LogBuilder {
    /// Header record whose spec-ID event declares `algs` as (id, size).
    pub fn new(algs: &[(u16, u16)]) -> Self {
        let mut spec = b"Spec ID Event03\0".to_vec();
        spec.extend_from_slice(&le32(0)); // platform class
        spec.extend_from_slice(&[0, 2, 0, 2]); // versions, uintn size
        spec.extend_from_slice(&le32(algs.len() as u32));
        for &(id, size) in algs {
            spec.extend_from_slice(&id.to_le_bytes());
            spec.extend_from_slice(&size.to_le_bytes());
        }
        spec.push(0); // vendor info size
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&le32(0));
        bytes.extend_from_slice(&le32(3)); // EV_NO_ACTION
        bytes.extend_from_slice(&[0u8; 20]);
        bytes.extend_from_slice(&le32(spec.len() as u32));
        bytes.extend_from_slice(&spec);
        Self {
            bytes,
            algs: algs.to_vec(),
            record_starts: Vec::new(),
        }
    }

    /// Appends a record with one correct digest per declared algorithm
    /// (`measured` is hashed instead of `data` when given).
    pub fn event(
        &mut self,
        index: u32,
        ty: u32,
        data: &[u8],
        measured: Option<&[u8]>,
    ) -> &mut Self {
        self.record_starts.push(self.bytes.len());
        self.bytes.extend_from_slice(&le32(index));
        self.bytes.extend_from_slice(&le32(ty));
        self.bytes.extend_from_slice(&le32(self.algs.len() as u32));
        for &(id, size) in &self.algs.clone() {
            self.bytes.extend_from_slice(&id.to_le_bytes());
            let mut d = hash(id, measured.unwrap_or(data));
            d.resize(size as usize, 0);
            self.bytes.extend_from_slice(&d);
        }
        self.bytes.extend_from_slice(&le32(data.len() as u32));
        self.bytes.extend_from_slice(data);
        self
    }

    pub fn finish(&mut self, padding: u8, len: usize) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(padding, len));
        out
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn node(t: u8, s: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t, s];
    v.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// UEFI_IMAGE_LOAD_EVENT with one node of every decoded kind.
pub fn image_load_event() -> Vec<u8> {
    let mut path = Vec::new();
    path.extend(node(2, 1, &hex::decode("d041030a00000000").unwrap()));
    path.extend(node(1, 1, &[0, 1]));
    path.extend(node(3, 5, &[2, 3]));
    let mut mac = vec![0x52, 0x54, 0, 0x12, 0x34];
    mac.resize(32, 0);
    mac.push(1);
    path.extend(node(3, 0x0B, &mac));
    path.extend(node(
        3,
        0x0C,
        &hex::decode("c0a80102c0a801010000000006000100000000ffffff00").unwrap(),
    ));
    path.extend(node(3, 0x15, &[7u8; 16]));
    let mut hd = Vec::new();
    hd.extend_from_slice(&le32(1));
    hd.extend_from_slice(&0x800u64.to_le_bytes());
    hd.extend_from_slice(&0x1000u64.to_le_bytes());
    hd.extend_from_slice(&[0xAB; 16]);
    hd.extend_from_slice(&[2, 2]);
    path.extend(node(4, 1, &hd));
    path.extend(node(4, 3, &[0x42; 18]));
    path.extend(node(5, 1, b"\x02\x00\x01\x00Disk\x00"));
    path.extend(node(3, 2, &[0, 0, 0, 0]));
    path.extend(node(4, 4, &utf16z("\\EFI\\BOOT\\BOOTX64.EFI")));
    path.extend(node(0x7f, 0xff, &[]));
    let mut v = vec![0u8; 24];
    v.extend_from_slice(&(path.len() as u64).to_le_bytes());
    v.extend_from_slice(&path);
    v
}

fn efi_variable(name: &str, data: &[u8]) -> Vec<u8> {
    let mut v = hex::decode("61dfe48bca93d211aa0d00e098032b8c").unwrap();
    v.extend_from_slice(&(name.encode_utf16().count() as u64).to_le_bytes());
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend(name.encode_utf16().flat_map(u16::to_le_bytes));
    v.extend_from_slice(data);
    v
}

fn tagged(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = le32(id).to_vec();
    v.extend_from_slice(&le32(payload.len() as u32));
    v.extend_from_slice(payload);
    v
}

/// A log with every decoded event type, SHA-384 + SHA-256 + SM3 digests and
/// 0xFF padding.
pub fn rich_log() -> (Vec<u8>, LogBuilder) {
    let mut b = LogBuilder::new(&[(SHA256, 32), (SHA384, 48), (SM3, 32)]);
    b.event(1, 0xA, b"td_hob\0\0\x10\0\0x", None)
        .event(
            1,
            0x8000_000A,
            b"\x0bFv(ABCDEF)\0\0\0\0\0",
            Some(b"firmware"),
        )
        .event(1, 0x8000_0001, &efi_variable("SecureBoot", &[1]), None)
        .event(1, 0x8000_0002, &efi_variable("BootOrder", &[0, 0]), None)
        .event(1, 0x4, &[0, 0, 0, 0], None)
        .event(
            2,
            0x8000_0007,
            b"Calling EFI Application from Boot Option",
            None,
        )
        .event(2, 0x8000_0003, &image_load_event(), Some(b"image"))
        .event(2, 0x8000_000B, b"\x09TdxTable\0\x01\0\0\0", Some(b"tables"))
        .event(2, 0xD, b"grub_cmd linux /vmlinuz\0", None)
        .event(2, 0xD, b"\x2e\x00l\x00i\x00n\x00u\x00x\x00\x00\x00", None)
        .event(2, 0x6, &tagged(0x8f3b_22ec, b"Linux initrd\0"), None)
        .event(3, 0x1, b"ACPI DATA", None)
        .event(0, 0x3, b"informational", None)
        .event(
            4,
            0x6,
            &tagged(0x4141_454C, b"coco.com add-resource {\"k\": 1}"),
            None,
        )
        .event(4, 0x8000_00E0, &efi_variable("db", b"cert"), None);
    let log = b.finish(0xFF, 64);
    (log, b)
}
