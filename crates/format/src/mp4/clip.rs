//! Clips: a wall-clock time range over one or more recordings, as one progressive MP4.
//!
//! A clip is made from the recordings' own [`Layout`]s (their joined timelines, samples and
//! output chunks), never from the segments again: every sample of the clip is a sample of a
//! recording's file, every payload byte a byte of one of its output chunks (a chunk cut by the
//! clip's start or end is a sub-range of it, [`OutChunk::src_off`]).
//!
//! ## Times
//! A recording's file presents movie time 0 at its wall-clock start (`ClipSource::start_ns`);
//! a track instant *x* (track ticks on the recording's output timeline) is at wall time
//! `start_ns + ns(x) − movie_start`, where `movie_start` is the earliest first presentation of
//! any of its tracks (what its edit lists map to movie time 0, see `edits`). The clip's movie
//! time 0 is the first presented instant: with [`Accuracy::Frame`] the presentation time of the
//! first frame whose presentation falls in `[start, end)` (so exactly those frames are shown),
//! with [`Accuracy::Keyframe`] that of the sync sample at or before `start`.
//!
//! ## Samples kept
//! Per track and recording, in decode order: from the sync sample at or before the clip's first
//! instant (the pre-roll a decoder needs; for audio, whose samples are all sync, the frame that
//! contains that instant) through the last sample presented before `end`. The `elst` of each
//! track (ISO/IEC 14496-12 §8.6.6) starts presentation at the clip's first instant (hiding the
//! pre-roll and the part of the first audio frame before it) and ends it at `end` (trimming the
//! last frame); a track that starts later gets an empty edit first.
//!
//! ## Between recordings
//! Each later recording is taken from its start. [`Gaps::Keep`] puts it at its wall-clock
//! offset from the clip's start: the sample timeline itself carries the gap (the last sample of
//! each track before it lasts until the next recording: video holds its last frame, audio has
//! no samples), so the file's timeline equals the wall clock in every player, whether or not it
//! honours edit lists. [`Gaps::Collapse`] puts it right after the previous one. Recordings that
//! overlap in wall time are put back to back.

use std::sync::Arc;

use super::{
    Edit, Layout, LayoutError, MOVIE_TIMESCALE, OutChunk, OutSample, SegRun, Track, assemble, from_ns, rescale, to_ns,
};
use crate::index::SegmentIndex;

/// Where a clip starts: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accuracy {
    /// Exactly the frames presented in `[start, end)`; the pre-roll from the previous sync
    /// sample is carried and hidden by the edit list.
    Frame,
    /// From the sync sample at or before `start`: nothing is hidden but a B-frame delay.
    Keyframe,
}

/// What the timeline does between recordings: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gaps {
    /// Keep the wall-clock gap in the timeline.
    Keep,
    /// Put recordings back to back.
    Collapse,
}

/// One recording a clip may take media from.
#[derive(Debug, Clone, Copy)]
pub struct ClipSource<'a> {
    /// The recording's whole file (its head is not read: [`Layout::build_headless`] will do).
    pub layout: &'a Layout,
    /// Wall-clock time of the file's movie time 0, nanoseconds since the Unix epoch.
    pub start_ns: i128,
}

/// What to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRange {
    /// Wall-clock start (inclusive) and end (exclusive), nanoseconds since the Unix epoch.
    pub start_ns: i128,
    pub end_ns: i128,
    pub accuracy: Accuracy,
    pub gaps: Gaps,
}

/// The part of one recording a clip presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipRun {
    /// Index into the sources.
    pub source: usize,
    /// Wall-clock span presented, nanoseconds since the Unix epoch.
    pub wall_start_ns: i128,
    pub wall_end_ns: i128,
    /// Clip time at which `wall_start_ns` is presented, nanoseconds.
    pub clip_start_ns: i128,
}

/// A clip's file.
#[derive(Debug, Clone)]
pub struct Clip {
    /// The file: `layout.segments[i]` is segment `sources[i].1` of source `sources[i].0`.
    pub layout: Layout,
    /// Per segment of `layout`: (source index, segment index in that source's layout).
    pub sources: Vec<(u32, u32)>,
    /// The recordings' spans presented, in clip order (gaps lie between them).
    pub runs: Vec<ClipRun>,
}

/// Why a clip cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipError {
    /// No source presents anything in the range.
    #[error("no media in the range")]
    NoMedia,
    /// `end_ns <= start_ns`.
    #[error("the range ends before it starts")]
    Empty,
    /// The recordings cannot share one file (a track's codec changes).
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Decode and presentation times of one track of a source, track ticks.
struct Times {
    dts: Vec<i64>,
}

impl Times {
    fn of(t: &Track) -> Times {
        let mut dts = Vec::with_capacity(t.samples.len());
        let mut d = t.first_dts;
        for s in &t.samples {
            dts.push(d);
            d = d.saturating_add(s.dur as i64);
        }
        Times { dts }
    }

    fn pts(&self, t: &Track, k: usize) -> i64 {
        self.dts[k].saturating_add(t.samples[k].cts as i64)
    }
}

/// Earliest first presentation of any track, ns: what the file presents at movie time 0.
fn movie_start_ns(l: &Layout) -> i128 {
    l.tracks.iter().map(|t| to_ns(t.first_dts.max(t.min_pts), t.timescale)).min().unwrap_or(0)
}

/// Last sync sample (decode order) presented at or before `at_ns`, else 0.
fn sync_at_or_before(t: &Track, times: &Times, at_ns: i128) -> usize {
    (0..t.samples.len()).rev().find(|&k| t.samples[k].sync && to_ns(times.pts(t, k), t.timescale) <= at_ns).unwrap_or(0)
}

/// What one source gives the clip.
struct PartSel {
    source: usize,
    /// Track-time ns (the source's output timeline) of the clip's first instant in this part,
    /// and of the end of what it presents.
    t0_ns: i128,
    tend_ns: i128,
    /// Clip time of `t0_ns`, ns.
    offset_ns: i128,
    /// Per track of the source: the samples kept, `first..end` in decode order.
    sel: Vec<Option<(usize, usize)>>,
    times: Vec<Times>,
}

/// Cuts `range` out of `sources` (ordered by wall-clock start, each overlapping the range).
///
/// Errors: [`ClipError::Empty`] for an empty range, [`ClipError::NoMedia`] when no frame is
/// presented in it, [`ClipError::Layout`] when a track's codec differs between recordings.
/// O(samples of the sources).
pub fn clip(sources: &[ClipSource<'_>], range: ClipRange) -> Result<Clip, ClipError> {
    if range.end_ns <= range.start_ns {
        return Err(ClipError::Empty);
    }
    let mut parts: Vec<PartSel> = Vec::new();
    let mut clip_end_ns: i128 = 0;
    // Wall-clock time of the clip's movie time 0.
    let mut wall0: Option<i128> = None;
    for (si, src) in sources.iter().enumerate() {
        let l = src.layout;
        let Some(anchor) = l.tracks.first() else { continue };
        let ms = movie_start_ns(l);
        let dom = |wall: i128| wall - src.start_ns + ms;
        let (lo, hi) = (dom(range.start_ns), dom(range.end_ns));
        let tend = hi.min(ms + to_ns(l.movie_dur as i64, MOVIE_TIMESCALE));
        let times: Vec<Times> = l.tracks.iter().map(Times::of).collect();
        let t0 = if wall0.is_none() {
            let at = &times[0];
            let k0 = sync_at_or_before(anchor, at, lo);
            let pts_ns = |k: usize| to_ns(at.pts(anchor, k), anchor.timescale);
            match range.accuracy {
                Accuracy::Frame => match (k0..anchor.samples.len()).map(pts_ns).filter(|&p| p >= lo).min() {
                    Some(p) => p,
                    None => continue,
                },
                Accuracy::Keyframe => pts_ns(k0).max(ms),
            }
        } else {
            lo.max(ms)
        };
        if t0 >= tend {
            continue;
        }
        let sel: Vec<Option<(usize, usize)>> = l
            .tracks
            .iter()
            .zip(&times)
            .map(|(t, tm)| {
                let first = sync_at_or_before(t, tm, t0);
                let end = (0..t.samples.len()).rev().find(|&k| to_ns(tm.pts(t, k), t.timescale) < tend)? + 1;
                (end > first).then_some((first, end))
            })
            .collect();
        if sel.iter().all(Option::is_none) {
            continue;
        }
        let wall_t0 = src.start_ns - ms + t0;
        let offset = match (wall0, range.gaps) {
            (None, _) => 0,
            (Some(w0), Gaps::Keep) => (wall_t0 - w0).max(clip_end_ns),
            (Some(_), Gaps::Collapse) => clip_end_ns,
        };
        wall0.get_or_insert(wall_t0);
        clip_end_ns = offset + (tend - t0);
        parts.push(PartSel { source: si, t0_ns: t0, tend_ns: tend, offset_ns: offset, sel, times });
    }
    if parts.is_empty() {
        return Err(ClipError::NoMedia);
    }

    // The clip's tracks: every key of any part, in key order (video first), described by the
    // first part that has it.
    let mut keys: Vec<(super::TrackKind, u8)> = Vec::new();
    for p in &parts {
        for (t, sel) in sources[p.source].layout.tracks.iter().zip(&p.sel) {
            if sel.is_some() && !keys.contains(&t.key) {
                keys.push(t.key);
            }
        }
    }
    keys.sort();
    let mut tracks: Vec<Track> = keys
        .iter()
        .map(|&key| {
            let tpl = parts
                .iter()
                .flat_map(|p| sources[p.source].layout.tracks.iter().zip(&p.sel))
                .find(|(t, sel)| t.key == key && sel.is_some())
                .map(|(t, _)| t)
                .expect("a part has it");
            Track {
                key: tpl.key,
                kind: tpl.kind,
                language: tpl.language,
                alternate_group: tpl.alternate_group,
                enabled: tpl.enabled,
                codec: tpl.codec,
                timescale: tpl.timescale,
                width: tpl.width,
                height: tpl.height,
                matrix: tpl.matrix,
                entries: Vec::new(),
                samples: Vec::new(),
                runs: Vec::new(),
                chunks: Vec::new(),
                first_dts: 0,
                last_dts: 0,
                last_src: 0,
                last_dur_known: true,
                min_pts: i64::MAX,
            }
        })
        .collect();
    // Clip decode times of each track's samples, clip track ticks (negative for pre-roll).
    let mut dts: Vec<Vec<i64>> = vec![Vec::new(); tracks.len()];
    let mut segments: Vec<Arc<SegmentIndex>> = Vec::new();
    let mut seg_sources: Vec<(u32, u32)> = Vec::new();
    let mut chunks: Vec<OutChunk> = Vec::new();
    let mut payload = 0u64;

    for p in &parts {
        let l = sources[p.source].layout;
        // Source track → clip track, and the first clip sample index of its kept samples.
        let mut to_clip = vec![None; l.tracks.len()];
        let mut base = vec![0usize; l.tracks.len()];
        for (ti, (t, sel)) in l.tracks.iter().zip(&p.sel).enumerate() {
            let Some((first, end)) = *sel else { continue };
            let ci = keys.iter().position(|&k| k == t.key).expect("registered");
            let ct = &mut tracks[ci];
            if ct.codec != t.codec {
                return Err(LayoutError::CodecChange {
                    kind: t.kind,
                    from: ct.codec,
                    to: t.codec,
                    segment: segments.len(),
                }
                .into());
            }
            to_clip[ti] = Some(ci);
            base[ti] = ct.samples.len();
            let shift = from_ns(p.offset_ns - p.t0_ns, ct.timescale);
            for k in first..end {
                let s = t.samples[k];
                let cts = rescale(s.cts as i64, t.timescale, ct.timescale) as i32;
                let dur = rescale(s.dur as i64, t.timescale, ct.timescale).clamp(0, u32::MAX as i64) as u32;
                ct.samples.push(OutSample { dur, cts, ..s });
                dts[ci].push(rescale(p.times[ti].dts[k], t.timescale, ct.timescale) + shift);
            }
        }
        // Output chunks in the source's file order, cut to the kept samples.
        let mut next_chunk = vec![0usize; l.tracks.len()];
        let mut next_sample = vec![0usize; l.tracks.len()];
        let mut clip_seg: Option<(u32, u32)> = None; // (source segment, clip segment)
        for oc in &l.chunks {
            let ti = oc.out_track as usize;
            let t = &l.tracks[ti];
            let (n, sdi) = t.chunks[next_chunk[ti]];
            next_chunk[ti] += 1;
            let c0 = next_sample[ti];
            next_sample[ti] += n as usize;
            let (Some(ci), Some((first, end))) = (to_clip[ti], p.sel[ti]) else { continue };
            let (a, b) = (c0.max(first), (c0 + n as usize).min(end));
            if a >= b {
                continue;
            }
            let seg = match clip_seg {
                Some((s, cs)) if s == oc.segment => cs,
                _ => {
                    let cs = segments.len() as u32;
                    segments.push(l.segments[oc.segment as usize].clone());
                    seg_sources.push((p.source as u32, oc.segment));
                    clip_seg = Some((oc.segment, cs));
                    cs
                }
            };
            let src_off: u64 = t.samples[c0..a].iter().map(|s| s.len as u64).sum();
            let len_bytes: u64 = t.samples[a..b].iter().map(|s| s.len as u64).sum();
            let ct = &mut tracks[ci];
            let entry = &t.entries[sdi as usize - 1];
            let sdi = match ct.entries.iter().position(|e| e == entry) {
                Some(i) => i + 1,
                None => {
                    ct.entries.push(entry.clone());
                    ct.entries.len()
                }
            } as u32;
            ct.chunks.push(((b - a) as u32, sdi));
            let first_in_clip = (base[ti] + (a - first)) as u32;
            match ct.runs.last_mut() {
                Some(r) if r.segment == seg => r.count += (b - a) as u32,
                _ => ct.runs.push(SegRun { segment: seg, first: first_in_clip, count: (b - a) as u32, dts: 0, sdi }),
            }
            chunks.push(OutChunk {
                out_start: payload,
                len_bytes,
                segment: seg,
                track: oc.track,
                chunk: oc.chunk,
                out_track: ci as u8,
                src_off,
            });
            payload += len_bytes;
        }
    }

    // Durations from the clip decode times (a gap is carried by the sample before it); the
    // stored decode times start at 0 for the earliest track.
    for (t, d) in tracks.iter_mut().zip(dts.iter_mut()) {
        for k in 0..d.len().saturating_sub(1) {
            if d[k + 1] <= d[k] {
                d[k + 1] = d[k] + 1;
            }
            t.samples[k].dur = u32::try_from(d[k + 1] - d[k]).unwrap_or(u32::MAX);
        }
        if let Some(last) = t.samples.last_mut()
            && last.dur == 0
        {
            last.dur = 1;
        }
    }
    let base_ns = tracks.iter().zip(&dts).map(|(t, d)| to_ns(d[0], t.timescale)).min().unwrap_or(0);
    let mut edits = Vec::with_capacity(tracks.len());
    for (t, d) in tracks.iter_mut().zip(&dts) {
        let z = -from_ns(base_ns, t.timescale);
        t.first_dts = d[0] + z;
        t.last_dts = *d.last().expect("samples") + z;
        for r in &mut t.runs {
            r.dts = d[r.first as usize] + z;
        }
        let pts = |k: usize| d[k] + t.samples[k].cts as i64;
        let first_pts = (0..d.len()).map(pts).min().expect("samples");
        let last_end = (0..d.len()).map(|k| pts(k) + t.samples[k].dur as i64).max().expect("samples");
        t.min_pts = first_pts + z;
        let start_ns = to_ns(first_pts, t.timescale).max(0);
        let end_ns = to_ns(last_end, t.timescale).min(clip_end_ns).max(start_ns);
        edits.push(Edit {
            empty: from_ns(start_ns, MOVIE_TIMESCALE) as u64,
            media_time: (from_ns(start_ns, t.timescale) - d[0]).max(0),
            media_movie_dur: from_ns(end_ns - start_ns, MOVIE_TIMESCALE) as u64,
        });
    }
    let movie_dur = edits.iter().map(|e| e.empty + e.media_movie_dur).max().unwrap_or(0);
    let layout = assemble(tracks, &edits, movie_dur, chunks, payload, segments);

    let runs = parts
        .iter()
        .map(|p| {
            let src = &sources[p.source];
            let ms = movie_start_ns(src.layout);
            ClipRun {
                source: p.source,
                wall_start_ns: src.start_ns - ms + p.t0_ns,
                wall_end_ns: src.start_ns - ms + p.tend_ns,
                clip_start_ns: p.offset_ns,
            }
        })
        .collect();
    Ok(Clip { layout, sources: seg_sources, runs })
}

#[cfg(test)]
mod tests;
