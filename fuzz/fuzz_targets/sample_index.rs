//! Binary sample index decoder and everything downstream of a stored index.
//!
//! Promises checked for every input `SegmentIndex::decode` accepts: `decode(encode(idx)) ==
//! idx`; `Layout::build` of the index alone and of the index twice in a row (a continuing and a
//! joined second segment) does not panic, and when a layout builds, `frag::init_segment`,
//! `frag::plan_fragment` + `frag::fragment_header` for each segment (and from a start point) do
//! not panic and keep their size promises (`common::check_layout`).
#![no_main]

use std::sync::Arc;

use jitmux_format::index::SegmentIndex;
use jitmux_format::mp4::SegmentInput;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(idx) = SegmentIndex::decode(data) else { return };
    common::check_round_trip(&idx);
    let idx = Arc::new(idx);
    let one = SegmentInput { index: idx.clone(), join_before: false };
    common::check_layout(std::slice::from_ref(&one));
    // The same segment again: its times go backwards (a join), or, for a segment whose first
    // decode times are far below its last, something close to a continuation.
    let join = data.last().is_some_and(|b| b & 1 == 1);
    common::check_layout(&[one, SegmentInput { index: idx, join_before: join }]);
});
