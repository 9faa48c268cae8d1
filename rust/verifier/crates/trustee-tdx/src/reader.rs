//! Bounds-checked little-endian cursor. Every read checks the remaining
//! length first and returns [`ParseError::Truncated`] instead of panicking.

use crate::ParseError;

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Absolute offset of `data[0]` inside the quote (for error messages).
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self::with_base(data, 0)
    }

    pub(crate) fn with_base(data: &'a [u8], base: usize) -> Self {
        Reader { data, pos: 0, base }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn abs_pos(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], ParseError> {
        let err = || ParseError::Truncated {
            what,
            offset: self.abs_pos(),
            needed: n,
            available: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or_else(err)?;
        let out = self.data.get(self.pos..end).ok_or_else(err)?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], ParseError> {
        let s = self.take(what, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
}
