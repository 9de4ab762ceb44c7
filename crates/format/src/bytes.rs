//! Big-endian byte and bit readers over `&[u8]`, with offsets for error reporting.

use super::FormatError;

/// A cursor over a byte slice that reads big-endian integers; every read is bounds-checked and
/// reports the absolute offset (`base` + position) on failure.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte is at absolute offset `base` in the parsed object.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Reader { buf, pos: 0, base }
    }
    /// Absolute offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        if self.remaining() < n {
            return Err(FormatError::new(
                self.offset(),
                format!("truncated {what}: need {n} bytes, have {}", self.remaining()),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &str) -> Result<(), FormatError> {
        self.take(n, what).map(|_| ())
    }
    pub fn u8(&mut self, what: &str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, FormatError> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    pub fn u24(&mut self, what: &str) -> Result<u32, FormatError> {
        let b = self.take(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    pub fn i32(&mut self, what: &str) -> Result<i32, FormatError> {
        Ok(self.u32(what)? as i32)
    }
    /// The unread rest.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// An MSB-first bit reader for RBSP syntax (ITU-T H.264 §7.2 / H.265 §7.2 descriptors `u(n)`,
/// `ue(v)`, `se(v)`). Feed it RBSP, i.e. with emulation prevention bytes already removed.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, bit: 0 }
    }
    fn err(&self, what: &str) -> FormatError {
        FormatError::new((self.bit / 8) as u64, format!("bitstream ends inside {what}"))
    }
    /// Reads one bit.
    pub fn bit(&mut self, what: &str) -> Result<bool, FormatError> {
        let byte = *self.buf.get(self.bit / 8).ok_or_else(|| self.err(what))?;
        let v = (byte >> (7 - (self.bit % 8))) & 1;
        self.bit += 1;
        Ok(v == 1)
    }
    /// Reads `n` ≤ 32 bits, `u(n)`.
    pub fn bits(&mut self, n: u32, what: &str) -> Result<u32, FormatError> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit(what)? as u32;
        }
        Ok(v)
    }
    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize, what: &str) -> Result<(), FormatError> {
        if self.bit + n > self.buf.len() * 8 {
            return Err(self.err(what));
        }
        self.bit += n;
        Ok(())
    }
    /// Exp-Golomb `ue(v)`.
    pub fn ue(&mut self, what: &str) -> Result<u32, FormatError> {
        let mut zeros = 0;
        while !self.bit(what)? {
            zeros += 1;
            if zeros > 31 {
                return Err(FormatError::new((self.bit / 8) as u64, format!("bad exp-golomb in {what}")));
            }
        }
        let rest = self.bits(zeros, what)?;
        Ok(((1u64 << zeros) - 1 + rest as u64) as u32)
    }
    /// Exp-Golomb `se(v)`.
    pub fn se(&mut self, what: &str) -> Result<i32, FormatError> {
        let k = self.ue(what)? as i64;
        Ok(if k % 2 == 1 { ((k + 1) / 2) as i32 } else { (-(k / 2)) as i32 })
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`), ITU-T H.264 §7.4.1 / H.265 §7.4.2,
/// giving the RBSP of a NAL unit.
pub fn nal_to_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}
