//! jitmux's sans-IO format core: everything that turns archival segment bytes into a sample index
//! and a sample index into MP4 bytes. A crate of its own so that the compiler checks the rule:
//! it depends on nothing but `thiserror`, knows nothing about tokio, SQL, HTTP or the filesystem,
//! and every entry point takes `&[u8]` (or already-parsed indexes) and returns data or a
//! [`FormatError`]. The fuzz targets (`fuzz/`) link this crate alone.
//!
//! - [`m3u8`]: HLS media playlist parser (RFC 8216).
//! - [`ts`]: MPEG-TS demuxer (ISO/IEC 13818-1) producing a [`index::SegmentIndex`], and the
//!   serve-time Annex B / ADTS transmux of one chunk.
//! - [`fmp4`]: fragmented MP4 / CMAF init and media segment parser (ISO/IEC 14496-12 §8.8).
//! - [`h26x`], [`audio`]: bitstream helpers (SPS parsing, `avcC`/`hvcC`, ADTS, AC-3, `esds`, `dac3`).
//! - [`codecs`]: RFC 6381 codec strings and `avcC` parameter sets read back from sample entries.
//! - [`index`]: the per-segment sample index and its compact binary encoding.
//! - [`mp4`]: the progressive MP4 layout: `ftyp` + `moov` + `mdat` computed from indexes alone.
//! - [`frag`]: the fragmented MP4 (quasi-stream) written from the same layout.
//! - [`boxes`]: a small ISO BMFF box writer.

pub mod audio;
pub mod boxes;
pub mod bytes;
pub mod codecs;
pub mod fmp4;
pub mod frag;
pub mod h26x;
pub mod index;
pub mod m3u8;
pub mod mp4;
pub mod ts;
pub mod zip;

/// An error in input bytes, with enough context to find the offending spot.
///
/// `offset` is a byte offset into the buffer that was being parsed (the segment, init segment or
/// playlist); `what` says what was wrong in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {what}")]
pub struct FormatError {
    /// Byte offset into the parsed buffer where the problem was found.
    pub offset: u64,
    /// One-line description of the problem.
    pub what: String,
}

impl FormatError {
    /// Builds an error at `offset` (bytes) with a one-line description.
    pub fn new(offset: u64, what: impl Into<String>) -> Self {
        FormatError { offset, what: what.into() }
    }
}

/// Shorthand for building an `Err(FormatError)`.
#[macro_export]
macro_rules! bail_at {
    ($off:expr, $($arg:tt)*) => {
        return Err($crate::FormatError::new(($off) as u64, format!($($arg)*)))
    };
}
