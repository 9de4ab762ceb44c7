//! Checks shared by the fuzz targets: what `jitmux-format` promises about an index it produced
//! or accepted, and what the layout and fragment writers promise about any valid index.
//!
//! Included by each target with `mod common;`; not every target uses every function.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use jitmux_format::frag;
use jitmux_format::index::{Codec, Container, ParamCarry, SegmentIndex, TrackConfig, TrackIndex, TrackKind};
use jitmux_format::mp4::{Layout, LayoutBuilder, LayoutSummary, SegmentInput};

/// `JITMUX_FUZZ_STRICT=1`: also hold the crate to promises stronger than the fuzz brief asks, e.g.
/// that a TS chunk transmuxes without error over the very bytes it was indexed from ("the sizes
/// computed at import and the bytes produced at serve time agree by construction").
pub fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("JITMUX_FUZZ_STRICT").is_some_and(|v| v != "0"))
}

/// The index survives its binary encoding: `decode(encode(idx)) == idx`.
pub fn check_round_trip(idx: &SegmentIndex) {
    let enc = idx.encode();
    match SegmentIndex::decode(&enc) {
        Ok(back) => assert_eq!(&back, idx, "encode/decode changed the index"),
        Err(e) => panic!("decode of encode failed: {e}"),
    }
}

/// Basic promises of every demuxer output (`SegmentIndex::validate` passed, it was returned).
pub fn check_index_shape(idx: &SegmentIndex, container: Container) {
    assert_eq!(idx.container, container);
    assert!(idx.validate().is_ok(), "a returned index does not validate");
    assert!(idx.tracks.len() <= jitmux_format::index::MAX_TRACKS);
    assert!(idx.tracks.windows(2).all(|w| w[0].kind() <= w[1].kind()), "video tracks first");
}

/// Builds the layout of `segments` (must not panic) and, when it builds, checks the layout's
/// promises and runs the fragmented writer over every segment.
pub fn check_layout(segments: &[SegmentInput]) {
    // The incremental builder: `Layout::build` is the builder with every segment pushed; its
    // `summary` equals the layout's figures; `undo` restores the state before the last push.
    let mut b = LayoutBuilder::new();
    let mut before_last: Option<Result<LayoutSummary, _>> = None;
    for (i, seg) in segments.iter().enumerate() {
        if i + 1 == segments.len() {
            before_last = Some(b.summary());
        }
        if b.push(seg.clone()).is_err() {
            // Codec change: `Layout::build` must fail the same way (checked below).
            assert!(Layout::build(segments).is_err(), "builder refused a push that build accepted");
            return;
        }
    }
    let built = Layout::build(segments);
    let layout = match (&built, b.layout()) {
        (Ok(a), Ok(c)) => {
            assert_eq!(a.head, c.head, "Layout::build and LayoutBuilder::layout differ");
            assert_eq!(a.chunks, c.chunks);
            a
        }
        (Err(a), Err(c)) => {
            assert_eq!(a, &c);
            return;
        }
        (a, c) => panic!("Layout::build {:?} but LayoutBuilder::layout {:?}", a.is_ok(), c.is_ok()),
    };
    let summary = b.summary().expect("summary of a buildable layout");
    assert_eq!(
        summary,
        LayoutSummary {
            len_bytes: layout.len_bytes,
            head_len_bytes: layout.head.len() as u64,
            movie_dur: layout.movie_dur,
            codecs: layout.codecs(),
        },
        "LayoutBuilder::summary differs from the layout"
    );
    if let Some(prev) = before_last {
        assert!(b.undo(), "undo after a successful push");
        assert_eq!(b.summary(), prev, "undo did not restore the summary");
        assert!(!b.undo(), "undo is one level");
    }

    // `chunks[0].out_start == head.len()`, each chunk follows the last, the file ends after the
    // last one.
    let mut pos = layout.head.len() as u64;
    for c in &layout.chunks {
        assert_eq!(c.out_start, pos, "output chunks are not contiguous");
        pos += c.len_bytes;
        let seg = &layout.segments[c.segment as usize];
        let t = &seg.tracks[c.track as usize];
        assert_eq!(t.chunks[c.chunk as usize].len_bytes, c.len_bytes);
        assert!((c.out_track as usize) < layout.tracks.len());
    }
    assert_eq!(layout.len_bytes, pos, "len_bytes is not the end of the last chunk");
    assert!(!layout.tracks.is_empty());

    // The fragmented (quasi-stream) writer over the same layout.
    let init = frag::init_segment(&layout, Some(layout.movie_dur));
    assert!(init.len() >= 8);
    let whole: Vec<Option<u32>> = vec![None; layout.tracks.len()];
    for s in 0..layout.segments.len() as u32 {
        if let Some(plan) = frag::plan_fragment(&layout, s, &whole) {
            check_fragment(&layout, &plan);
        }
    }
    // A stream started half way in (`start=`).
    let (seg, from) = frag::start_point(&layout, layout.duration_s() / 2.0);
    assert_eq!(from.len(), layout.tracks.len());
    if let Some(plan) = frag::plan_fragment(&layout, seg, &from) {
        check_fragment(&layout, &plan);
    }
}

fn check_fragment(layout: &Layout, plan: &frag::FragmentPlan) {
    for t in &plan.trafs {
        assert!(t.file_range.start <= t.file_range.end, "negative fragment file range");
        assert!(t.file_range.end <= layout.len_bytes, "fragment file range past the file");
    }
    let head = match frag::fragment_header(layout, plan) {
        Ok(h) => h,
        // Refused only when the fragment cannot be described with 32-bit offsets and sizes.
        Err(_) => {
            assert!(plan.payload_len() > 1 << 30, "refused a fragment of {} bytes", plan.payload_len());
            return;
        }
    };
    // Ends with the `mdat` header whose size covers exactly the plan's payload.
    let n = head.len();
    assert!(n >= 16);
    assert_eq!(&head[n - 4..], b"mdat");
    let size = u32::from_be_bytes(head[n - 8..n - 4].try_into().unwrap()) as u64;
    assert_eq!(size, plan.payload_len() + 8, "mdat size differs from the plan's payload");
}

/// One segment as the layout's input.
pub fn single(idx: SegmentIndex) -> Vec<SegmentInput> {
    vec![SegmentInput { index: Arc::new(idx), join_before: false }]
}

/// Parameter sets an earlier segment sent, for the TS segments that carry none (`ts_segment`).
/// The sample entries are those `jitmux-format` builds for the fixtures
/// `c03_h264_params_once_ts` and `c04_h265_params_once_ts` (segment 0), as printed by
/// `make_seeds --print-entries fixtures/sets`.
pub fn carry(codec: Codec) -> ParamCarry {
    static CARRY: OnceLock<[ParamCarry; 2]> = OnceLock::new();
    let c = CARRY.get_or_init(|| [make_carry(Codec::H264), make_carry(Codec::H265)]);
    c[(codec == Codec::H265) as usize].clone()
}

fn make_carry(codec: Codec) -> ParamCarry {
    let entry = match codec {
        Codec::H265 => hex(H265_ENTRY),
        _ => hex(H264_ENTRY),
    };
    let config = TrackConfig {
        codec,
        timescale: 90_000,
        sample_entry: entry,
        width: 480,
        height: 270,
        matrix: jitmux_format::boxes::UNITY_MATRIX,
        source_id: 256,
        language: jitmux_format::index::UNDETERMINED,
    };
    let track = TrackIndex { config, samples: Vec::new(), chunks: Vec::new() };
    // Every video ordinal, so that the n-th video stream of any program finds one.
    let idx = SegmentIndex {
        container: Container::Ts,
        ts_origin_90k: None,
        tracks: vec![track; jitmux_format::index::MAX_TRACKS],
    };
    debug_assert!(idx.tracks.iter().all(|t| t.kind() == TrackKind::Video));
    let mut c = ParamCarry::default();
    c.remember(&idx);
    c
}

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

/// `c03_h264_params_once_ts` segment 0, 480x270.
pub const H264_ENTRY: &str = "000000846176633100000000000000010000000000000000000000000000000001e0010e004800000048000000000000000100000000000000000000000000000000000000000000000000000000000000000018ffff0000002e61766343014d4015ffe10017674d4015da07823fac0440000003004000000f03c58ba801000468ef0672";
/// `c04_h265_params_once_ts` segment 0, 480x270.
pub const H265_ENTRY: &str = "000000cc6865763100000000000000010000000000000000000000000000000001e0010e004800000048000000000000000100000000000000000000000000000000000000000000000000000000000000000018ffff00000076687663430101600000009000000000003ff000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003fba0240210001002942010101600000030090000003000003003fa00f080447d65ba924caf0168080000003008000000f0422000100074401c172b46240";
