use super::*;
use crate::mp4::tests::seg;

/// A recording of `n` two-second segments (60 frames at 30 fps, one sync sample each; AAC at
/// 48 kHz), video starting at decode time `dts0` (90 kHz).
fn recording(n: usize, dts0: i64) -> Layout {
    let segs: Vec<_> =
        (0..n).map(|i| seg(dts0 + i as i64 * 180_000, 60, 100, dts0 * 48 / 90 + i as i64 * 96_000, None)).collect();
    Layout::build(&segs).unwrap()
}

const S: i128 = 1_000_000_000;

fn range(start_s: f64, end_s: f64, accuracy: Accuracy, gaps: Gaps) -> ClipRange {
    let ns = |s: f64| (s * 1e9).round() as i128;
    ClipRange { start_ns: ns(start_s), end_ns: ns(end_s), accuracy, gaps }
}

/// Presentation times (ns, clip timeline before the edit list) of a clip track's samples.
fn pts_ns(t: &Track) -> Vec<i128> {
    let mut d = t.first_dts;
    t.samples
        .iter()
        .map(|s| {
            let p = to_ns(d + s.cts as i64, t.timescale);
            d += s.dur as i64;
            p
        })
        .collect()
}

fn check_chunks(c: &Clip) {
    let l = &c.layout;
    let mut pos = l.head.len() as u64;
    for oc in &l.chunks {
        assert_eq!(oc.out_start, pos, "chunks follow each other");
        pos += oc.len_bytes;
    }
    assert_eq!(pos, l.len_bytes);
    for (ti, t) in l.tracks.iter().enumerate() {
        let samples: u64 = t.samples.iter().map(|s| s.len as u64).sum();
        let chunks: u64 = l.chunks.iter().filter(|c| c.out_track as usize == ti).map(|c| c.len_bytes).sum();
        assert_eq!(samples, chunks, "track {ti}: chunk bytes are sample bytes");
        let counted: u32 = t.chunks.iter().map(|c| c.0).sum();
        assert_eq!(counted as usize, t.samples.len());
        let in_runs: u32 = t.runs.iter().map(|r| r.count).sum();
        assert_eq!(in_runs as usize, t.samples.len(), "runs cover the samples");
    }
    assert_eq!(c.sources.len(), l.segments.len());
}

#[test]
fn frame_accurate_cut_carries_the_pre_roll_and_hides_it() {
    let rec = recording(3, 0);
    // The file's movie time 0 is the first video frame presented (PTS 6000 ticks).
    let src = [ClipSource { layout: &rec, start_ns: 100 * S }];
    // 2.5 s to 4.0 s of wall clock: frames from 2.5 s on; the sync sample is at 2.0 s.
    let c = clip(&src, range(102.5, 104.0, Accuracy::Frame, Gaps::Keep)).unwrap();
    check_chunks(&c);
    let v = &c.layout.tracks[0];
    assert!(v.samples[0].sync);
    assert_eq!(v.samples.len(), 58, "pre-roll 2.0–2.5 s (13 frames: PTS = DTS + 2 frames) and 2.5–4.0 s (45 frames)");
    // The first presented instant is the frame at 2.5 s: edit media_time hides 15 frames.
    let p = pts_ns(v);
    let e0 = c.layout.head.windows(4).position(|w| w == b"elst").unwrap();
    let media_time = i32::from_be_bytes(c.layout.head[e0 + 16..e0 + 20].try_into().unwrap());
    assert_eq!(to_ns(media_time as i64 + v.first_dts, v.timescale), p[13]);
    assert!((c.layout.duration_s() - 1.5).abs() < 1e-3, "{}", c.layout.duration_s());
    assert_eq!(c.runs.len(), 1);
    assert_eq!(c.runs[0].wall_start_ns, 102_500_000_000);
    // The first chunk starts at segment 1's first sample: no cut there, but the end is cut.
    assert_eq!(c.layout.chunks[0].src_off, 0);
    let a = &c.layout.tracks[1];
    assert!(a.samples.len() < 96, "audio cut to match");
}

#[test]
fn keyframe_cut_starts_at_the_sync_sample() {
    let rec = recording(3, 0);
    let src = [ClipSource { layout: &rec, start_ns: 100 * S }];
    let c = clip(&src, range(102.5, 104.0, Accuracy::Keyframe, Gaps::Keep)).unwrap();
    check_chunks(&c);
    assert_eq!(c.layout.tracks[0].samples.len(), 58);
    // The sync sample's PTS is 2 s + the 2-frame composition delay.
    let t0 = 102 * S + to_ns(6000, 90_000);
    assert_eq!(c.runs[0].wall_start_ns, t0);
    assert!((c.layout.duration_s() - (104 * S - t0) as f64 / 1e9).abs() < 1e-3, "{}", c.layout.duration_s());
}

#[test]
fn a_cut_inside_a_chunk_slices_it() {
    let rec = recording(2, 0);
    let src = [ClipSource { layout: &rec, start_ns: 0 }];
    let c = clip(&src, range(0.5, 1.0, Accuracy::Frame, Gaps::Keep)).unwrap();
    check_chunks(&c);
    let v = &c.layout.chunks[0];
    assert_eq!((v.src_off, v.len_bytes), (0, 28 * 100), "frames 0..28 (PTS < 1 s) of the first segment's chunk");
    let audio: Vec<_> = c.layout.chunks.iter().filter(|c| c.out_track == 1).collect();
    assert!(audio[0].src_off > 0, "audio starts inside its chunk");
}

#[test]
fn gaps_are_kept_or_collapsed() {
    let a = recording(2, 0);
    let b = recording(2, 900_000); // another encoder: its own timestamps
    // a: wall 0–4 s; b: wall 10–14 s.
    let src = [ClipSource { layout: &a, start_ns: 0 }, ClipSource { layout: &b, start_ns: 10 * S }];
    let keep = clip(&src, range(1.0, 12.0, Accuracy::Frame, Gaps::Keep)).unwrap();
    check_chunks(&keep);
    assert_eq!(keep.runs.len(), 2, "{:?}", keep.runs);
    assert!((keep.layout.duration_s() - 11.0).abs() < 1e-3, "{}", keep.layout.duration_s());
    assert_eq!(keep.runs[1].clip_start_ns, 9 * S, "b is at its wall-clock offset: {:?}", keep.runs);
    // b's first frame is presented 9 s into the clip.
    let v = &keep.layout.tracks[0];
    let p = pts_ns(v);
    let first_b = v.runs.iter().find(|r| keep.sources[r.segment as usize].0 == 1).unwrap().first as usize;
    // Sample 28 (PTS 1.0 s) is the clip's first frame; b's first frame (PTS 6000 ticks after
    // b's start, its audio starting at 0) is presented 9 s + 6000 ticks after it.
    assert_eq!(p[first_b] - p[28], 9 * S + to_ns(6000, 90_000));

    let collapse = clip(&src, range(1.0, 12.0, Accuracy::Frame, Gaps::Collapse)).unwrap();
    check_chunks(&collapse);
    // a presents until its end (its video's last frame ends 2 frames after its audio), b from
    // its start to 12 s.
    let a_end = to_ns(a.movie_dur as i64, MOVIE_TIMESCALE);
    assert_eq!(collapse.runs[1].clip_start_ns, a_end - S);
    assert!((collapse.layout.duration_s() - (a_end - S + 2 * S) as f64 / 1e9).abs() < 1e-3);
}

#[test]
fn headless_sources_cut_the_same_clip() {
    let segs = |n: usize, dts0: i64| -> Vec<_> {
        (0..n).map(|i| seg(dts0 + i as i64 * 180_000, 60, 100, dts0 * 48 / 90 + i as i64 * 96_000, None)).collect()
    };
    let (a, b) = (segs(2, 0), segs(3, 900_000));
    let whole = [Layout::build(&a).unwrap(), Layout::build(&b).unwrap()];
    let headless = [Layout::build_headless(&a).unwrap(), Layout::build_headless(&b).unwrap()];
    assert!(headless[0].head.is_empty() && headless[0].len_bytes == whole[0].len_bytes - whole[0].head.len() as u64);
    fn src(l: &[Layout; 2]) -> [ClipSource<'_>; 2] {
        [ClipSource { layout: &l[0], start_ns: 0 }, ClipSource { layout: &l[1], start_ns: 10 * S }]
    }
    for accuracy in [Accuracy::Frame, Accuracy::Keyframe] {
        for gaps in [Gaps::Keep, Gaps::Collapse] {
            let r = range(1.3, 12.7, accuracy, gaps);
            let (x, y) = (clip(&src(&whole), r).unwrap(), clip(&src(&headless), r).unwrap());
            assert!(x.layout.head == y.layout.head, "{accuracy:?} {gaps:?}: heads");
            assert_eq!(x.layout.chunks, y.layout.chunks, "{accuracy:?} {gaps:?}: chunks");
            assert_eq!((x.layout.len_bytes, &x.sources), (y.layout.len_bytes, &y.sources));
        }
    }
}

#[test]
fn empty_and_missing_ranges_are_errors() {
    let rec = recording(1, 0);
    let src = [ClipSource { layout: &rec, start_ns: 0 }];
    assert_eq!(clip(&src, range(1.0, 1.0, Accuracy::Frame, Gaps::Keep)).unwrap_err(), ClipError::Empty);
    assert_eq!(clip(&src, range(5.0, 6.0, Accuracy::Frame, Gaps::Keep)).unwrap_err(), ClipError::NoMedia);
}
