//! Bounds-checked little-endian cursor: every read names the field it was
//! reading so a short buffer turns into an actionable error, never a panic.

use crate::error::Truncated;

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Truncated> {
        let available = self.remaining();
        if len > available {
            return Err(Truncated {
                what,
                offset: self.pos,
                needed: len,
                available,
            });
        }
        let out = &self.data[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Truncated> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Truncated> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, Truncated> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, Truncated> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads a u64 without consuming it (end-of-log marker detection).
    pub(crate) fn peek_u64(&self) -> Option<u64> {
        let bytes = self.data.get(self.pos..self.pos.checked_add(8)?)?;
        let mut out = [0u8; 8];
        out.copy_from_slice(bytes);
        Some(u64::from_le_bytes(out))
    }
}

/// Converts a length field to `usize`, saturating: a length that does not fit
/// cannot fit in the buffer either, so the following `take` reports it.
pub(crate) fn len_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}
