//! HLS media playlist parser. Promises checked on success: each segment's `sequence` is
//! `media_sequence` + its position, and its URI is not empty.
#![no_main]

use jitmux_format::m3u8;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pl) = m3u8::parse(data) else { return };
    for (i, s) in pl.segments.iter().enumerate() {
        if let Some(seq) = pl.media_sequence.checked_add(i as u64) {
            assert_eq!(s.sequence, seq, "segment {i}: sequence is not media_sequence + position");
        }
        assert!(!s.uri.is_empty(), "segment {i} without a URI");
        let _ = m3u8::is_safe_relative(&s.uri);
    }
});
