//! STUB (replaced by the real demuxer)
use super::FormatError;
use super::index::{Chunk, SegmentIndex, TrackIndex};
pub fn index_segment(_data: &[u8]) -> Result<SegmentIndex, FormatError> {
    Err(FormatError::new(0, "stub"))
}
pub fn transmux_chunk(_t: &TrackIndex, _c: &Chunk, _src: &[u8], _out: &mut Vec<u8>) -> Result<(), FormatError> {
    Err(FormatError::new(0, "stub"))
}
