//! MPEG-TS segment → sample index → serve-time transmux, layout and binary encoding.
//!
//! Promises checked for every segment `ts::index_segment` accepts:
//! - each chunk's `[src_start, src_end)` lies inside the segment;
//! - `ts::transmux_chunk` over exactly those bytes either errors (leaving `out` as it was) or
//!   appends exactly `chunk.len_bytes` bytes (`JITMUX_FUZZ_STRICT=1`: and never errors);
//! - the index round-trips through `encode`/`decode`;
//! - `Layout::build` of that one segment does not panic (and, when it builds, the layout and
//!   fragment writers keep their promises: `common::check_layout`).
//!
//! A segment refused only because it carries no parameter sets is indexed again with
//! `ts::index_segment_with` and a carry from an "earlier segment", as import does.
#![no_main]

use jitmux_format::index::{Codec, Container};
use jitmux_format::ts;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let idx = match ts::index_segment(data) {
        Ok(idx) => idx,
        Err(e) if e.what.contains("no earlier segment") => {
            let codec = if e.what.starts_with("H265") { Codec::H265 } else { Codec::H264 };
            let mut carry = common::carry(codec);
            match ts::index_segment_with(data, &mut carry) {
                Ok(s) => s.index,
                Err(_) => return,
            }
        }
        Err(_) => return,
    };
    common::check_index_shape(&idx, Container::Ts);
    assert!(idx.ts_origin_90k.is_some_and(|o| o < 1 << 33), "TS origin is a 33-bit timestamp");

    const MARK: &[u8] = b"prefix";
    for t in &idx.tracks {
        for c in &t.chunks {
            assert!(c.src_start <= c.src_end && c.src_end <= data.len() as u64, "chunk outside the segment");
            for s in &t.samples[c.first_sample as usize..(c.first_sample + c.samples) as usize] {
                assert!(
                    s.src_offset >= c.src_start && s.src_offset < c.src_end && s.src_offset % 188 == 0,
                    "sample src_offset {} is not a packet of its chunk {}..{}",
                    s.src_offset,
                    c.src_start,
                    c.src_end
                );
            }
            let src = &data[c.src_start as usize..c.src_end as usize];
            let mut out = MARK.to_vec();
            match ts::transmux_chunk(t, c, src, &mut out) {
                Ok(()) => {
                    assert_eq!(&out[..MARK.len()], MARK, "transmux changed bytes before its output");
                    assert_eq!(
                        (out.len() - MARK.len()) as u64,
                        c.len_bytes,
                        "transmux output size differs from the index"
                    );
                }
                Err(e) => {
                    assert_eq!(out, MARK, "transmux error left output behind");
                    assert!(
                        !common::strict(),
                        "transmux of a chunk over the bytes it was indexed from failed: {e} \
                         ({:?} PID {:#x}, chunk {}..{}, sample sizes {:?})",
                        t.config.codec,
                        t.config.source_id,
                        c.src_start,
                        c.src_end,
                        t.samples.iter().map(|s| s.len_bytes).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    common::check_round_trip(&idx);
    common::check_layout(&common::single(idx));
});
