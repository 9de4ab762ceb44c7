//! ISO BMFF boxes (ISO/IEC 14496-12 §4.2), both ways.
//!
//! Writing: boxes are written into a `Vec<u8>` with a placeholder size that is patched when the
//! box is closed, so nested boxes need no size precomputation. Used for sample entries at import
//! and for `moov`/`moof` at serve time.
//!
//! Reading: [`Boxes`] iterates the boxes of a byte range and [`child`]/[`need`] find one, with
//! absolute offsets in every [`BoxRef`] and error. Used by the fMP4 parser and to read sample
//! entries back ([`super::codecs`]).

use super::FormatError;
use super::bytes::Reader;
use crate::bail_at;

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

/// One box located in the parsed buffer; all positions are absolute byte offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BoxRef {
    pub(crate) fourcc: [u8; 4],
    /// Offset of the box's first (size) byte.
    pub(crate) start: usize,
    /// Offset of the first byte after the header (size, type, largesize, usertype).
    pub(crate) body: usize,
    /// Offset one past the box's last byte.
    pub(crate) end: usize,
}

impl BoxRef {
    pub(crate) fn name(&self) -> String {
        fourcc_str(&self.fourcc)
    }
    /// A reader over the box body.
    pub(crate) fn reader<'a>(&self, data: &'a [u8]) -> Reader<'a> {
        Reader::new(&data[self.body..self.end], self.body as u64)
    }
    /// Reads the FullBox header (§4.2): (version, flags).
    pub(crate) fn full<'a>(&self, data: &'a [u8]) -> Result<(Reader<'a>, u8, u32), FormatError> {
        let mut r = self.reader(data);
        let what = format!("{} header", self.name());
        let version = r.u8(&what)?;
        let flags = r.u24(&what)?;
        Ok((r, version, flags))
    }
}

fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect()
}

/// Iterates the boxes in `data[start..end]` (§4.2): 32-bit `size`, 64-bit `largesize` when
/// `size` is 1, to the end of the parent when `size` is 0, 16-byte usertype after `uuid`. A box
/// that overruns its parent or a truncated header yields one error and ends the iteration.
pub(crate) struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Boxes<'a> {
    pub(crate) fn new(data: &'a [u8], start: usize, end: usize) -> Self {
        Boxes { data, pos: start, end }
    }
    pub(crate) fn children(data: &'a [u8], parent: &BoxRef) -> Self {
        Boxes::new(data, parent.body, parent.end)
    }
    fn next_box(&mut self) -> Result<BoxRef, FormatError> {
        let start = self.pos;
        let mut r = Reader::new(&self.data[start..self.end], start as u64);
        let size32 = r.u32("box header")?;
        let fourcc: [u8; 4] = r.take(4, "box header")?.try_into().unwrap();
        let name = fourcc_str(&fourcc);
        let size = match size32 {
            0 => (self.end - start) as u64,
            1 => r.u64("box largesize")?,
            s => s as u64,
        };
        if &fourcc == b"uuid" {
            r.skip(16, "uuid box usertype")?;
        }
        let body = r.offset() as usize;
        if size < (body - start) as u64 {
            bail_at!(start, "box '{name}' size {size} is smaller than its header");
        }
        if size > (self.end - start) as u64 {
            bail_at!(start, "box '{name}' of {size} bytes overruns its parent, which ends at byte {}", self.end);
        }
        Ok(BoxRef { fourcc, start, body, end: start + size as usize })
    }
}

impl Iterator for Boxes<'_> {
    type Item = Result<BoxRef, FormatError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let b = self.next_box();
        match &b {
            Ok(b) => self.pos = b.end,
            Err(_) => self.pos = self.end,
        }
        Some(b)
    }
}

/// The first child of `parent` with type `fourcc`; errors if the children are malformed.
pub(crate) fn child(data: &[u8], parent: &BoxRef, fourcc: &[u8; 4]) -> Result<Option<BoxRef>, FormatError> {
    for b in Boxes::children(data, parent) {
        let b = b?;
        if &b.fourcc == fourcc {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

/// Like [`child`] but a missing box is an error.
pub(crate) fn need(data: &[u8], parent: &BoxRef, fourcc: &[u8; 4]) -> Result<BoxRef, FormatError> {
    match child(data, parent, fourcc)? {
        Some(b) => Ok(b),
        None => bail_at!(parent.start, "'{}' box has no '{}'", parent.name(), fourcc_str(fourcc)),
    }
}

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
