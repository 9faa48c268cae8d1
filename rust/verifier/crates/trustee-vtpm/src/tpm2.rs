//! TPM 2.0 structures as marshalled on the wire (big-endian, TPM2B = u16 size + bytes): the
//! quote's TPMS_ATTEST with its TPMS_QUOTE_INFO, and the checks on a quote.

use sha2::{Digest, Sha256};

use crate::keys::AkPublic;
use crate::VtpmError;

pub(crate) const ALG_SHA256: u16 = 0x000B;
const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// A quote message is a few hundred bytes; nothing legitimate comes near this.
pub const MAX_MESSAGE: usize = 4096;
/// Selection banks and bitmap bytes per bank (PCR_SELECT_MAX is 3 on PC-client TPMs).
const MAX_BANKS: u32 = 16;
const MAX_SELECT_BYTES: usize = 4;
/// The PCR that carries the init-data binding.
pub const INIT_DATA_PCR: usize = 8;

/// Reads big-endian TPM fields, every read checked; errors go through `bad`.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    bad: fn(String) -> VtpmError,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8], bad: fn(String) -> VtpmError) -> Self {
        Self { bytes, pos: 0, bad }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], VtpmError> {
        let out = self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.get(..n))
            .ok_or_else(|| {
                (self.bad)(format!(
                    "{what} needs {n} bytes at offset {}, {} left",
                    self.pos,
                    self.bytes.len().saturating_sub(self.pos)
                ))
            })?;
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, VtpmError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, VtpmError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, VtpmError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A TPM2B: u16 size, then at most `max` bytes.
    pub(crate) fn sized(&mut self, what: &str, max: usize) -> Result<&'a [u8], VtpmError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err((self.bad)(format!("{what} of {n} bytes exceeds {max}")));
        }
        self.take(n, what)
    }

    pub(crate) fn finish(&self, what: &str) -> Result<(), VtpmError> {
        if self.pos != self.bytes.len() {
            return Err((self.bad)(format!(
                "{} trailing bytes after the {what}",
                self.bytes.len() - self.pos
            )));
        }
        Ok(())
    }
}

/// A parsed TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    RsaSsa(Vec<u8>),
    EcdsaP256 { r: Vec<u8>, s: Vec<u8> },
}

impl TpmSignature {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            TpmSignature::RsaSsa(_) => "RSASSA",
            TpmSignature::EcdsaP256 { .. } => "ECDSA",
        }
    }
}

/// What a quote's TPMS_ATTEST says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// extraData: the nonce (the caller's report data).
    pub extra_data: Vec<u8>,
    /// The selected PCRs, in the order the digest covers them: (hash algorithm, index).
    pub selected: Vec<(u16, u8)>,
    pub pcr_digest: Vec<u8>,
}

/// Parses a TPMS_ATTEST that must be a quote.
pub fn parse_attest(message: &[u8]) -> Result<Attest, VtpmError> {
    if message.len() > MAX_MESSAGE {
        return Err(VtpmError::QuoteMessage(format!(
            "{} bytes exceeds {MAX_MESSAGE}",
            message.len()
        )));
    }
    let mut c = Cursor::new(message, VtpmError::QuoteMessage);
    let magic = c.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(VtpmError::QuoteMagic(magic));
    }
    let kind = c.u16("type")?;
    if kind != TPM_ST_ATTEST_QUOTE {
        return Err(VtpmError::NotAQuote(kind));
    }
    c.sized("qualifiedSigner", 256)?;
    let extra_data = c.sized("extraData", 64)?.to_vec();
    // clockInfo (clock u64, resetCount u32, restartCount u32, safe u8), firmwareVersion u64.
    c.take(17 + 8, "clockInfo and firmwareVersion")?;
    let banks = c.u32("pcrSelect count")?;
    if banks > MAX_BANKS {
        return Err(VtpmError::QuoteMessage(format!(
            "{banks} PCR banks exceeds {MAX_BANKS}"
        )));
    }
    let mut selected = Vec::new();
    for _ in 0..banks {
        let hash = c.u16("pcrSelect hash")?;
        let size = usize::from(c.u8("sizeofSelect")?);
        if size > MAX_SELECT_BYTES {
            return Err(VtpmError::QuoteMessage(format!(
                "sizeofSelect {size} exceeds {MAX_SELECT_BYTES}"
            )));
        }
        for (byte_index, byte) in c.take(size, "pcrSelect")?.iter().enumerate() {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    // byte_index < MAX_SELECT_BYTES, so the index fits a u8.
                    selected.push((hash, (byte_index as u8) * 8 + bit));
                }
            }
        }
    }
    let pcr_digest = c.sized("pcrDigest", 64)?.to_vec();
    c.finish("quote")?;
    Ok(Attest {
        extra_data,
        selected,
        pcr_digest,
    })
}

/// A quote as evidence carries it: the signed TPMS_ATTEST, its signature and the PCR values.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    pub message: &'a [u8],
    pub signature: &'a TpmSignature,
    pub pcrs: &'a [[u8; 32]],
}

impl Quote<'_> {
    /// Parses the message (cheap structure checks), then checks its signature with `ak`.
    pub fn verify_signature(&self, ak: &AkPublic, key: &'static str) -> Result<Attest, VtpmError> {
        let attest = parse_attest(self.message)?;
        ak.verify(self.message, self.signature, key)?;
        Ok(attest)
    }
}

impl Attest {
    /// The PCR values must be the SHA-256 PCRs the quote selects, in its order, and hash to
    /// its pcrDigest. Returns each value with its PCR index.
    pub fn check_pcrs(&self, pcrs: &[[u8; 32]]) -> Result<Vec<(u8, [u8; 32])>, VtpmError> {
        if let Some((hash, index)) = self.selected.iter().find(|(h, _)| *h != ALG_SHA256) {
            return Err(VtpmError::PcrSelection(format!(
                "PCR{index} of bank {hash:#06x} is selected; only SHA-256 values are carried"
            )));
        }
        if pcrs.len() != self.selected.len() {
            return Err(VtpmError::PcrCount {
                given: pcrs.len(),
                selected: self.selected.len(),
            });
        }
        let mut hasher = Sha256::new();
        for pcr in pcrs {
            hasher.update(pcr);
        }
        let actual = hasher.finalize();
        if actual[..] != self.pcr_digest[..] {
            return Err(VtpmError::PcrDigest {
                expected: hex::encode(&self.pcr_digest),
                actual: hex::encode(actual),
            });
        }
        Ok(self
            .selected
            .iter()
            .map(|(_, i)| *i)
            .zip(pcrs.iter().copied())
            .collect())
    }
}

/// PCR values from hex strings (the evidence's `pcrs`), each 32 bytes.
pub fn pcrs_from_hex<S: AsRef<str>>(values: &[S]) -> Result<Vec<[u8; 32]>, VtpmError> {
    values
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let bytes = hex::decode(v.as_ref()).map_err(|_| VtpmError::PcrLength {
                index,
                len: v.as_ref().len() / 2,
            })?;
            pcr_from_bytes(index, &bytes)
        })
        .collect()
}

pub fn pcr_from_bytes(index: usize, bytes: &[u8]) -> Result<[u8; 32], VtpmError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| VtpmError::PcrLength {
        index,
        len: bytes.len(),
    })
}

/// Init data binding: PCR8 must be one SHA-256 extend of `init_data_hash` from zero.
pub fn check_init_data(pcrs: &[(u8, [u8; 32])], init_data_hash: &[u8]) -> Result<(), VtpmError> {
    if init_data_hash.len() != 32 {
        return Err(VtpmError::InitDataLength {
            pcr: INIT_DATA_PCR,
            len: init_data_hash.len(),
        });
    }
    let mut hasher = Sha256::new();
    hasher.update([0u8; 32]);
    hasher.update(init_data_hash);
    let expected = hasher.finalize();
    let actual = pcr_value(pcrs, INIT_DATA_PCR)
        .ok_or(VtpmError::InitDataPcrMissing { pcr: INIT_DATA_PCR })?;
    if expected[..] != actual[..] {
        return Err(VtpmError::InitDataMismatch {
            pcr: INIT_DATA_PCR,
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        });
    }
    Ok(())
}

/// The value of PCR `index`, when quoted.
pub fn pcr_value(pcrs: &[(u8, [u8; 32])], index: usize) -> Option<&[u8; 32]> {
    pcrs.iter()
        .find(|(i, _)| usize::from(*i) == index)
        .map(|(_, v)| v)
}
