//! fMP4 init + media segment → sample index → layout.
//!
//! Input framing: `[N: u16 big-endian][N bytes of init segment][media segment]`.
//! Promises checked when both parse: every sample's `src_offset .. src_offset + len_bytes` lies
//! inside the media segment, chunks are exactly their samples' payloads (`src_end - src_start ==
//! len_bytes`, inside the segment), no track is empty, the index round-trips through
//! `encode`/`decode`, and `Layout::build` does not panic (`common::check_layout`).
#![no_main]

use jitmux_format::fmp4;
use jitmux_format::index::Container;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return };
    let n = u16::from_be_bytes(*len) as usize;
    if n > rest.len() {
        return;
    }
    let (init, seg) = rest.split_at(n);
    let Ok(init) = fmp4::parse_init(init) else { return };
    let Ok(idx) = fmp4::index_segment(&init, seg) else { return };

    common::check_index_shape(&idx, Container::Fmp4);
    assert_eq!(idx.ts_origin_90k, None, "fMP4 index with a TS origin");
    let len = seg.len() as u64;
    for t in &idx.tracks {
        assert!(!t.samples.is_empty(), "a track without samples is left out");
        for s in &t.samples {
            let end = s.src_offset.checked_add(s.len_bytes as u64);
            assert!(
                end.is_some_and(|e| e <= len),
                "sample {}+{} outside the {len}-byte segment",
                s.src_offset,
                s.len_bytes
            );
        }
        for c in &t.chunks {
            assert!(c.src_end <= len, "chunk outside the segment");
            assert_eq!(c.src_end - c.src_start, c.len_bytes, "fMP4 chunk is not exactly its payloads");
        }
    }
    common::check_round_trip(&idx);
    common::check_layout(&common::single(idx));
});
