//! A small ISO BMFF box writer (ISO/IEC 14496-12 §4.2): boxes are written into a `Vec<u8>` with a
//! placeholder size that is patched when the box is closed, so nested boxes need no size
//! precomputation. Used for sample entries at import and for `moov`/`moof` at serve time.

/// Appends big-endian values and boxes to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct BoxWriter {
    /// The bytes written so far.
    pub buf: Vec<u8>,
    open: Vec<usize>,
}

impl BoxWriter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        BoxWriter { buf: Vec::with_capacity(n), open: Vec::new() }
    }
    /// Opens a plain box (`size` + `type`); close it with [`BoxWriter::end`].
    pub fn start(&mut self, fourcc: &[u8; 4]) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(fourcc);
    }
    /// Opens a FullBox (`size` + `type` + `version` + 24-bit `flags`), §4.2.
    pub fn start_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) {
        self.start(fourcc);
        self.u8(version);
        self.u24(flags);
    }
    /// Closes the innermost open box, patching its 32-bit size.
    ///
    /// Panics if the box is larger than 4 GiB − 1 (only `mdat` can be, and it is written by hand).
    pub fn end(&mut self) {
        let start = self.open.pop().expect("end() without start()");
        let size = u32::try_from(self.buf.len() - start).expect("box larger than 4 GiB");
        self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u24(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    /// Consumes the writer; all boxes must be closed.
    pub fn finish(self) -> Vec<u8> {
        assert!(self.open.is_empty(), "unclosed box");
        self.buf
    }
}

/// The unity transformation matrix of `tkhd`/`mvhd` (ISO/IEC 14496-12 §8.2.2), 16.16 and 2.30
/// fixed point.
pub const UNITY_MATRIX: [i32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes_are_patched() {
        let mut w = BoxWriter::new();
        w.start(b"moov");
        w.start_full(b"mvhd", 0, 0);
        w.u32(7);
        w.end();
        w.end();
        let b = w.finish();
        assert_eq!(&b[0..8], &[0, 0, 0, 24, b'm', b'o', b'o', b'v']);
        assert_eq!(&b[8..16], &[0, 0, 0, 16, b'm', b'v', b'h', b'd']);
        assert_eq!(b.len(), 24);
    }
}
