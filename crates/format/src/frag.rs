//! Fragmented MP4 (the quasi-stream) from a [`Layout`], ISO/IEC 14496-12 §8.8: an init part
//! (`ftyp` + `moov` with `mvex`) and then one `moof` + `mdat` per segment, so playback starts
//! before the file is complete.
//!
//! ```text
//! ftyp                         4.3
//! moov                         8.2.1
//!   mvhd                       8.2.2 (duration 0: unknown, the stream may grow)
//!   trak (per track)           tkhd, mdia/mdhd, hdlr, minf/stbl with stsd and empty tables
//!   mvex                       8.8.1
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
use super::mp4::{Layout, Track, write_hdlr, write_mdhd, write_minf_header, write_mvhd, write_tkhd};

/// `trun` sample flags (§8.8.3.1) of a sync sample: `sample_depends_on` = 2 (no other).
pub const SYNC_FLAGS: u32 = 0x0200_0000;
/// `trun` sample flags of a non-sync sample: `sample_depends_on` = 1 and
/// `sample_is_non_sync_sample`.
pub const NON_SYNC_FLAGS: u32 = 0x0101_0000;

/// The init part: `ftyp` + `moov` (with `mvex`) for the layout's tracks.
pub fn init_segment(layout: &Layout) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(1024);
    w.start(b"ftyp");
    w.bytes(b"iso6");
    w.u32(0);
    for b in [b"iso6", b"isom", b"iso2", b"avc1", b"mp41"] {
        w.bytes(b);
    }
    w.end();
    w.start(b"moov");
    write_mvhd(&mut w, 0, layout.tracks.len() as u32 + 1);
    for (i, t) in layout.tracks.iter().enumerate() {
        write_trak(&mut w, t, i as u32 + 1);
    }
    w.start(b"mvex");
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

fn write_trak(w: &mut BoxWriter, t: &Track, track_id: u32) {
    w.start(b"trak");
    write_tkhd(w, t, track_id, 0);
    w.start(b"mdia");
    write_mdhd(w, t.timescale, 0, t.language);
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
}
