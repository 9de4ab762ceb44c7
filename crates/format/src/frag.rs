//! Fragmented MP4 (the quasi-stream) from a [`Layout`], ISO/IEC 14496-12 §8.8: an init part
//! (`ftyp` + `moov` with `mvex`) and then one `moof` + `mdat` per segment, so playback starts
//! before the file is complete.
//!
//! ```text
//! ftyp                         4.3
//! moov                         8.2.1
//!   mvhd                       8.2.2 the whole duration when known; 0 (unknown) when it may grow
//!   trak (per track)           tkhd, mdia/mdhd (the track's whole duration when known, else 0),
//!                              hdlr, minf/stbl with stsd and empty tables
//!   mvex                       8.8.1
//!     mehd                     8.8.2 only when the duration is known (a finished recording)
//!     trex (per track)         8.8.3
//! moof                         8.8.4  (sequence_number = segment index + 1)
//!   mfhd                       8.8.5
//!   traf (per track)           8.8.6
//!     tfhd                     8.8.7  default-base-is-moof, sample_description_index
//!     tfdt                     8.8.12 version 1: the decode time on the joined timeline
//!     trun                     8.8.8  version 1: duration, size, flags, composition offset
//! mdat                         exactly the bytes the full file's mdat holds for that segment
//! ```
//!
//! A fragment's `mdat` payload equals the full file's bytes for the same samples, so the body is
//! made by the same chunk machinery; only `moof` is computed here. No edit list: `tfdt` carries
//! each track's true position, so tracks stay aligned and the B-frame delay is visible as the
//! first presentation time, as players expect of fragmented files.

use super::FormatError;
use super::boxes::BoxWriter;
use super::index::TrackKind;
use super::mp4::{Layout, MOVIE_TIMESCALE, Track, write_hdlr, write_mdhd, write_minf_header, write_mvhd, write_tkhd};

/// `trun` sample flags (§8.8.3.1) of a sync sample: `sample_depends_on` = 2 (no other).
pub const SYNC_FLAGS: u32 = 0x0200_0000;
/// `trun` sample flags of a non-sync sample: `sample_depends_on` = 1 and
/// `sample_is_non_sync_sample`.
pub const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// The init part: `ftyp` + `moov` (with `mvex`) for the layout's tracks.
///
/// `duration`: the whole movie's presentation duration when it is known (a finished recording:
/// [`Layout::movie_dur`]), in [`MOVIE_TIMESCALE`] ticks. It goes in `mvhd` and in a `mehd`
/// (§8.8.2 MovieExtendsHeaderBox, fragment_duration, version 1 when it needs 64 bits), and each
/// track's `tkhd` and `mdhd` say the sum of its samples' durations (§8.3.2, §8.4.2; no edit
/// list), so a player shows the full length before the fragments arrive: FFmpeg's demuxer on a
/// stream it cannot seek, and so Chromium, reads the tracks' durations and not `mehd`. `None` (a
/// live recording, which may grow): every duration is 0, unknown, and there is no `mehd`.
pub fn init_segment(layout: &Layout, duration: Option<u64>) -> Vec<u8> {
    let duration = duration.filter(|&d| d > 0);
    let mut w = BoxWriter::with_capacity(1024);
    w.start(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for b in [b"iso6", b"isom", b"iso2", b"avc1", b"mp41"] {
        w.bytes(b);
    }
    w.end();
    w.start(b"moov");
    write_mvhd(&mut w, duration.unwrap_or(0), layout.tracks.len() as u32 + 1);
    for (i, t) in layout.tracks.iter().enumerate() {
        let media_dur = if duration.is_some() { t.media_dur() } else { 0 };
        write_trak(&mut w, t, i as u32 + 1, media_dur);
    }
    w.start(b"mvex");
    if let Some(d) = duration {
        match u32::try_from(d) {
            Ok(d32) => {
                w.start_full(b"mehd", 0, 0);
                w.u32(d32); // fragment_duration
            }
            Err(_) => {
                w.start_full(b"mehd", 1, 0);
                w.u64(d);
            }
        }
        w.end();
    }
    for i in 0..layout.tracks.len() {
        w.start_full(b"trex", 0, 0);
        w.u32(i as u32 + 1); // track_ID
        w.u32(1); // default_sample_description_index
        w.u32(0);
        w.u32(0);
        w.u32(0);
        w.end();
    }
    w.end();
    w.end();
    w.finish()
}

/// `trak` with empty sample tables; `media_dur`: the sum of the track's sample durations (track
/// timescale), or 0 when unknown.
fn write_trak(w: &mut BoxWriter, t: &Track, track_id: u32, media_dur: u64) {
    w.start(b"trak");
    // Rounded to the nearest movie tick.
    let ts = t.timescale.max(1) as u128;
    let movie_dur = ((media_dur as u128 * MOVIE_TIMESCALE as u128 * 2 + ts) / (2 * ts)).min(u64::MAX as u128) as u64;
    write_tkhd(w, t, track_id, movie_dur);
    w.start(b"mdia");
    write_mdhd(w, t.timescale, media_dur, t.language);
    write_hdlr(w, t.kind);
    w.start(b"minf");
    write_minf_header(w, t.kind);
    w.start(b"stbl");
    w.start_full(b"stsd", 0, 0);
    w.u32(t.entries.len() as u32);
    for e in &t.entries {
        w.bytes(e);
    }
    w.end();
    for fourcc in [b"stts", b"stsc", b"stco"] {
        w.start_full(fourcc, 0, 0);
        w.u32(0);
        w.end();
    }
    w.start_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafPlan {
    /// Index into `layout.tracks`.
    pub track: usize,
    /// Index of the first sample in the track's samples.
    pub first: u32,
    pub count: u32,
    /// `tfdt` baseMediaDecodeTime: decode time of the first sample, track timescale.
    pub dts: i64,
    /// 1-based sample description index.
    pub sdi: u32,
    /// Bytes of the full file's `mdat` that hold these samples' payloads.
    pub file_range: std::ops::Range<u64>,
}

/// One fragment: the samples of one segment (or, for the first fragment of a stream started
/// with `start=`, of its tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentPlan {
    /// `mfhd` sequence_number: segment index + 1.
    pub sequence: u32,
    pub trafs: Vec<TrafPlan>,
}

impl FragmentPlan {
    /// Payload size of the fragment's `mdat`, bytes.
    pub fn payload_len(&self) -> u64 {
        self.trafs.iter().map(|t| t.file_range.end - t.file_range.start).sum()
    }
}

/// Plans the fragment of segment `segment`, starting at sample `from[track]` of each track
/// (`None`: from the start of its run). Returns `None` if the segment has no samples at or after
/// the start points.
pub fn plan_fragment(layout: &Layout, segment: u32, from: &[Option<u32>]) -> Option<FragmentPlan> {
    let mut trafs = Vec::new();
    for (ti, t) in layout.tracks.iter().enumerate() {
        let Some(run) = t.runs.iter().find(|r| r.segment == segment) else { continue };
        let skip = match from.get(ti).copied().flatten() {
            Some(f) if f >= run.first + run.count => continue,
            Some(f) if f > run.first => f - run.first,
            _ => 0,
        };
        let samples = &t.samples[run.first as usize..(run.first + run.count) as usize];
        let skip_dur: i64 = samples[..skip as usize].iter().map(|s| s.dur as i64).sum();
        let skip_bytes: u64 = samples[..skip as usize].iter().map(|s| s.len as u64).sum();
        let whole = layout.segment_track_bytes(segment, ti);
        trafs.push(TrafPlan {
            track: ti,
            first: run.first + skip,
            count: run.count - skip,
            dts: run.dts + skip_dur,
            sdi: run.sdi,
            file_range: whole.start + skip_bytes..whole.end,
        });
    }
    if trafs.is_empty() {
        return None;
    }
    Some(FragmentPlan { sequence: segment + 1, trafs })
}

/// Writes `moof` and the `mdat` header of a fragment; the `mdat` payload (the plan's file
/// ranges, in order) follows. Errors when the fragment is too large for `trun`'s 32-bit data
/// offsets or `mdat`'s 32-bit size (only a corrupt index can ask for that: a segment is seconds
/// of media).
pub fn fragment_header(layout: &Layout, plan: &FragmentPlan) -> Result<Vec<u8>, FormatError> {
    let n: usize = plan.trafs.iter().map(|t| t.count as usize).sum();
    let mut w = BoxWriter::with_capacity(128 + n * 16);
    w.start(b"moof");
    w.start_full(b"mfhd", 0, 0);
    w.u32(plan.sequence);
    w.end();
    let mut offset_pos = Vec::new();
    for tp in &plan.trafs {
        let t = &layout.tracks[tp.track];
        let samples = &t.samples[tp.first as usize..(tp.first + tp.count) as usize];
        w.start(b"traf");
        w.start_full(b"tfhd", 0, 0x02_0000 | 0x02); // default-base-is-moof | sample-description-index
        w.u32(tp.track as u32 + 1);
        w.u32(tp.sdi);
        w.end();
        w.start_full(b"tfdt", 1, 0);
        w.u64(tp.dts.max(0) as u64);
        w.end();
        let cto = samples.iter().any(|s| s.cts != 0);
        let flags = 0x001 | 0x100 | 0x200 | 0x400 | if cto { 0x800 } else { 0 };
        w.start_full(b"trun", 1, flags);
        w.u32(tp.count);
        offset_pos.push(w.buf.len());
        w.i32(0); // data_offset, patched below
        for s in samples {
            w.u32(s.dur);
            w.u32(s.len);
            w.u32(if s.sync { SYNC_FLAGS } else { NON_SYNC_FLAGS });
            if cto {
                w.i32(s.cts);
            }
        }
        w.end();
        w.end();
    }
    w.end();
    let moof_len = w.buf.len() as u64;
    let mut data = moof_len + 8;
    for (tp, pos) in plan.trafs.iter().zip(offset_pos) {
        // trun data_offset is a signed 32-bit offset from the moof (§8.8.8.3).
        let Ok(off) = i32::try_from(data) else {
            return Err(FormatError::new(0, format!("fragment {} is larger than 2 GiB", plan.sequence)));
        };
        w.buf[pos..pos + 4].copy_from_slice(&off.to_be_bytes());
        data += tp.file_range.end - tp.file_range.start;
    }
    let payload = plan.payload_len();
    let Ok(size) = u32::try_from(payload + 8) else {
        return Err(FormatError::new(0, format!("fragment {} is larger than 4 GiB", plan.sequence)));
    };
    w.u32(size);
    w.bytes(b"mdat");
    Ok(w.finish())
}

/// Where a stream that starts at `start_s` seconds begins: per track, the first sample to send.
/// At or before 0 s that is every track's first sample (the whole recording). Otherwise the
/// video track starts at the last sync sample whose presentation time is at or before
/// `start_s` (its first sample if none); other tracks at the last sample whose decode time is at
/// or before that sync sample's decode time (compared exactly, in integer ticks). Returns the
/// segment of the earliest start and the per-track sample indexes.
pub fn start_point(layout: &Layout, start_s: f64) -> (u32, Vec<Option<u32>>) {
    if start_s <= 0.0 {
        return (0, vec![None; layout.tracks.len()]);
    }
    let video = layout.tracks.iter().position(|t| t.kind == TrackKind::Video);
    let anchor = layout.tracks.get(video.unwrap_or(0)).expect("layouts have a track");
    let target = (start_s * anchor.timescale as f64).floor() as i64;
    let pick = |t: &Track, pred: &dyn Fn(i64, &super::mp4::OutSample) -> bool| -> (u32, i64) {
        let mut best = (0u32, t.runs.first().map_or(0, |r| r.dts));
        for r in &t.runs {
            let mut dts = r.dts;
            for k in 0..r.count {
                let s = &t.samples[(r.first + k) as usize];
                if pred(dts, s) {
                    best = (r.first + k, dts);
                }
                dts += s.dur as i64;
            }
        }
        best
    };
    let is_video = video.is_some();
    let (a_idx, a_dts) = pick(anchor, &|dts, s| (!is_video || s.sync) && dts + s.cts as i64 <= target);
    let anchor_i = video.unwrap_or(0);
    let mut from = vec![None; layout.tracks.len()];
    from[anchor_i] = Some(a_idx);
    for (ti, t) in layout.tracks.iter().enumerate() {
        if ti == anchor_i {
            continue;
        }
        let bound = (a_dts as i128 * t.timescale as i128).div_euclid(anchor.timescale as i128) as i64;
        let (idx, _) = pick(t, &|dts, _| dts <= bound);
        from[ti] = Some(idx);
    }
    let segment = layout
        .tracks
        .iter()
        .zip(&from)
        .filter_map(|(t, f)| {
            let f = (*f)?;
            t.runs.iter().find(|r| f >= r.first && f < r.first + r.count).map(|r| r.segment)
        })
        .min()
        .unwrap_or(0);
    (segment, from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::SegmentIndex;
    use crate::mp4::SegmentInput;

    /// Fuzzing found (sample_index): an index claiming a sample of 4 GiB made `fragment_header`
    /// panic; such a fragment is refused with an error.
    #[test]
    fn fuzz_fragment_past_4_gib_is_an_error() {
        let idx = SegmentIndex::decode(include_bytes!("../testdata/fuzz_index_fragment-header-4gib")).unwrap();
        let layout = Layout::build(&[SegmentInput { index: std::sync::Arc::new(idx), join_before: false }]).unwrap();
        let plan = plan_fragment(&layout, 0, &[]).unwrap();
        assert!(fragment_header(&layout, &plan).is_err());
    }

    /// A layout of one H.264 track: `n` samples of 1/30 s (3000 ticks at 90 kHz), 2 s per
    /// segment, `segments` segments.
    fn video_layout(segments: u32) -> Layout {
        use crate::boxes::UNITY_MATRIX;
        use crate::index::{Chunk, Codec, Container, Sample, TrackConfig, TrackIndex};
        let n = 60u32;
        let segs: Vec<SegmentInput> = (0..segments)
            .map(|s| {
                let samples: Vec<Sample> = (0..n)
                    .map(|i| Sample {
                        dts: (s * n + i) as i64 * 3000,
                        dur: 3000,
                        cts_offset: 0,
                        len_bytes: 100,
                        sync: i == 0,
                        src_offset: i as u64 * 100,
                    })
                    .collect();
                let track = TrackIndex {
                    config: TrackConfig {
                        codec: Codec::H264,
                        timescale: 90000,
                        sample_entry: vec![0, 0, 0, 8, b'a', b'v', b'c', b'1'],
                        width: 640,
                        height: 360,
                        matrix: UNITY_MATRIX,
                        source_id: 1,
                        language: crate::index::UNDETERMINED,
                    },
                    chunks: vec![Chunk {
                        first_sample: 0,
                        samples: n,
                        src_start: 0,
                        src_end: n as u64 * 100,
                        len_bytes: n as u64 * 100,
                    }],
                    samples,
                };
                let index = SegmentIndex { container: Container::Fmp4, ts_origin_90k: None, tracks: vec![track] };
                SegmentInput { index: std::sync::Arc::new(index), join_before: false }
            })
            .collect();
        Layout::build(&segs).unwrap()
    }

    /// Durations an init segment declares, as (version, duration): `mvhd`, `mehd` if any, and
    /// the first track's `tkhd` and `mdhd`.
    type Declared = ((u8, u64), Option<(u8, u64)>, (u8, u64), (u8, u64));

    fn durations(init: &[u8]) -> Declared {
        use crate::boxes::{BoxRef, Boxes, child, need};
        // (version, duration) of a full box whose duration follows `before` bytes (twice as many
        // in version 1) and then `ts` 4 bytes of timescale or track_ID and reserved.
        let duration = |b: BoxRef, before: usize, ts: usize| {
            let (mut r, v, _) = b.full(init).unwrap();
            r.take(before * if v == 1 { 2 } else { 1 } + ts, "before the duration").unwrap();
            (v, if v == 1 { r.u64("duration").unwrap() } else { r.u32("duration").unwrap() as u64 })
        };
        let moov = Boxes::new(init, 0, init.len()).map(Result::unwrap).find(|b| &b.fourcc == b"moov").unwrap();
        let mvhd = need(init, &moov, b"mvhd").unwrap();
        let (mut r, v, _) = mvhd.full(init).unwrap();
        r.take(if v == 1 { 16 } else { 8 }, "times").unwrap();
        assert_eq!(r.u32("timescale").unwrap(), MOVIE_TIMESCALE);
        let mvex = need(init, &moov, b"mvex").unwrap();
        let mehd = child(init, &mvex, b"mehd").unwrap();
        if mehd.is_some() {
            let first = Boxes::children(init, &mvex).next().unwrap().unwrap();
            assert_eq!(&first.fourcc, b"mehd", "mehd comes first in mvex (§8.8.1)");
        }
        let trak = need(init, &moov, b"trak").unwrap();
        let mdhd = need(init, &need(init, &trak, b"mdia").unwrap(), b"mdhd").unwrap();
        (
            duration(mvhd, 8, 4),
            mehd.map(|b| duration(b, 0, 0)),
            duration(need(init, &trak, b"tkhd").unwrap(), 8, 8),
            duration(mdhd, 8, 4),
        )
    }

    /// A finished recording's quasi-stream says its duration up front: `mvhd` and `mehd`
    /// (ISO/IEC 14496-12 §8.8.2) in the movie timescale, version 1 only past 32 bits, and each
    /// track's `tkhd` and `mdhd`; a live one (`None`) says 0 everywhere and has no `mehd`.
    #[test]
    fn init_segment_has_mehd_when_the_duration_is_known() {
        let layout = video_layout(3);
        let d = 3 * 2 * 90_000;
        assert_eq!(layout.movie_dur, d, "3 segments of 2 s");
        let known = init_segment(&layout, Some(layout.movie_dur));
        assert_eq!(durations(&known), ((0, d), Some((0, d)), (0, d), (0, d)));
        let live = init_segment(&layout, None);
        assert_eq!(durations(&live), ((0, 0), None, (0, 0), (0, 0)));
        assert_eq!(known.len(), live.len() + 16, "mehd v0 is 16 bytes");
        assert_eq!(durations(&init_segment(&layout, Some(0))), ((0, 0), None, (0, 0), (0, 0)), "0 is unknown");
        // 2^32 ticks at 90 kHz is 13.3 h: a longer movie needs version 1 of mvhd and mehd.
        let long = u32::MAX as u64 + 1;
        let big = init_segment(&layout, Some(long));
        assert_eq!(durations(&big), ((1, long), Some((1, long)), (0, d), (0, d)));
        assert_eq!(big.len(), known.len() + 12 + 4, "mvhd v1 12 bytes longer, mehd v1 4 bytes longer");
        let max32 = u32::MAX as u64;
        assert_eq!(durations(&init_segment(&layout, Some(max32))), ((0, max32), Some((0, max32)), (0, d), (0, d)));
    }
}
