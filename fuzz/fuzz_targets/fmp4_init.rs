//! fMP4 init segment parser. Promises checked on success: at most `MAX_TRACKS` tracks, video
//! tracks first, non-zero timescales (zero ones are refused), each track's codec of the kind its
//! position says.
#![no_main]

use jitmux_format::fmp4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(init) = fmp4::parse_init(data) else { return };
    assert_ne!(init.movie_timescale, 0, "mvhd timescale 0 accepted");
    assert!(init.tracks.len() <= jitmux_format::index::MAX_TRACKS);
    assert!(init.tracks.windows(2).all(|w| w[0].config.codec.kind() <= w[1].config.codec.kind()), "video tracks first");
    for t in &init.tracks {
        assert_ne!(t.config.timescale, 0, "mdhd timescale 0 accepted");
        assert!(!t.config.sample_entry.is_empty());
    }
});
