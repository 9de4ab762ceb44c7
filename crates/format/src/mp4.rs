//! The progressive MP4 layout: a whole `.mp4` file (ISO/IEC 14496-12) described from sample
//! indexes alone, so its length, `moov` and the position of every payload byte are known before
//! a single segment is read.
//!
//! The file is `ftyp`, `moov`, `mdat`; the `mdat` holds one chunk per (segment, track, source
//! run), segments in playlist order and, within a segment, video before audio. Box tree written
//! by [`Layout::build`] (ISO/IEC 14496-12 clause numbers):
//!
//! ```text
//! ftyp                       4.3   FileTypeBox
//! moov                       8.2.1 MovieBox
//!   mvhd                     8.2.2 MovieHeaderBox (timescale MOVIE_TIMESCALE)
//!   trak                     8.3.1 TrackBox (video first, then audio)
//!     tkhd                   8.3.2 TrackHeaderBox (matrix: rotation from the source)
//!     edts/elst              8.6.5/8.6.6 EditListBox (aligns tracks; hides B-frame delay)
//!     mdia                   8.4.1
//!       mdhd                 8.4.2 MediaHeaderBox (timescale of the source track)
//!       hdlr                 8.4.3 HandlerBox
//!       minf                 8.4.4
//!         vmhd|smhd          12.1.2 / 12.2.2
//!         dinf/dref/url      8.7.1-8.7.2
//!         stbl               8.5.1
//!           stsd             8.5.2 SampleDescriptionBox (one entry per distinct source config)
//!           stts             8.6.1.2 TimeToSampleBox
//!           ctts             8.6.1.3 CompositionOffsetBox (version 1 when offsets are negative)
//!           stss             8.6.2 SyncSampleBox (absent when every sample is sync)
//!           stsz             8.7.3.2 SampleSizeBox
//!           stsc             8.7.4 SampleToChunkBox
//!           stco|co64        8.7.5 ChunkOffsetBox (co64 when the file passes 4 GiB)
//! mdat                       8.1.1 MediaDataBox (64-bit largesize when needed)
//! ```
//!
//! ## One timeline from many segments
//! Within a segment, decode-time deltas are kept exactly. Between segments, a track continues
//! when its next decode time follows the previous one by at most [`JOIN_GAP_NS`] beyond the
//! expected end; otherwise — or when the playlist says `#EXT-X-DISCONTINUITY` / `#EXT-X-GAP` /
//! a segment is missing — the segment is *joined*: every track restarts at the latest end of any
//! track, keeping the tracks' relative offsets inside the new segment. So gaps are closed,
//! restarts continue seamlessly, and no sample gets a negative or huge duration. MPEG-TS
//! timestamps are compared modulo 2^33 ([`SegmentIndex::ts_origin_90k`]).

use std::sync::Arc;

use super::boxes::BoxWriter;
use super::index::{Codec, Container, SegmentIndex, TrackKind};

/// Version of the bytes this module writes. Bump it whenever a change alters output bytes for
/// the same input: it is hashed into every ETag, so caches and resumed downloads never mix the
/// old and the new layout.
pub const FORMAT_VERSION: u32 = 1;

/// `mvhd` timescale: 90 kHz, so MPEG-TS times and edit list offsets are exact.
pub const MOVIE_TIMESCALE: u32 = 90_000;

/// Largest forward jump between segments (beyond the expected next decode time) that is kept
/// as part of one continuous run; anything larger is closed by a join. Nanoseconds.
pub const JOIN_GAP_NS: i128 = 1_000_000_000;

/// Largest decode-time delta accepted between two samples of one segment; a larger or
/// non-positive delta is replaced by the previous delta. Nanoseconds.
pub const MAX_SAMPLE_DUR_NS: i128 = 60_000_000_000;

/// One segment as the layout sees it.
#[derive(Debug, Clone)]
pub struct SegmentInput {
    pub index: Arc<SegmentIndex>,
    /// The playlist says the timeline does not continue here: `#EXT-X-DISCONTINUITY`, or the
    /// previous entry is `#EXT-X-GAP` or missing.
    pub join_before: bool,
}

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("no samples in any segment")]
    Empty,
    #[error("{kind:?} codec changes from {from:?} to {to:?} at segment {segment}")]
    CodecChange { kind: TrackKind, from: Codec, to: Codec, segment: usize },
}

/// Where one output chunk's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutChunk {
    /// Offset of its first byte in the output file.
    pub out_start: u64,
    pub len_bytes: u64,
    /// Index into the layout's segments.
    pub segment: u32,
    /// Index into that segment's `tracks`.
    pub track: u8,
    /// Index into that track's `chunks`.
    pub chunk: u32,
    /// Index into the layout's `tracks`: the output track the chunk belongs to.
    pub out_track: u8,
}

/// A complete virtual MP4 file: its first bytes (`ftyp`, `moov`, `mdat` header) in memory and a
/// map of where every later byte comes from.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `ftyp` + `moov` + `mdat` header; the file's first `head.len()` bytes.
    pub head: Vec<u8>,
    /// Output chunks in file order; `chunks[0].out_start == head.len()`, each follows the last.
    pub chunks: Vec<OutChunk>,
    /// Total file length in bytes.
    pub len_bytes: u64,
    /// The segments the chunks refer to.
    pub segments: Vec<Arc<SegmentIndex>>,
    /// Output tracks, video first: every sample's timing on the joined timeline.
    pub tracks: Vec<Track>,
    /// Presentation duration of the movie, `MOVIE_TIMESCALE` ticks.
    pub movie_dur: u64,
}

impl Layout {
    /// The RFC 6381 codecs parameter of the file: each track's first sample entry, video first,
    /// comma-separated (`avc1.640028,mp4a.40.2`), as [`super::codecs::codec_string`] reads it.
    pub fn codecs(&self) -> String {
        let each = self.tracks.iter().filter_map(|t| t.entries.first());
        each.map(|e| super::codecs::codec_string(e).unwrap_or_default()).collect::<Vec<_>>().join(",")
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.movie_dur as f64 / MOVIE_TIMESCALE as f64
    }

    /// Bytes of the file holding the payloads of output track `track`'s samples from segment
    /// `segment` (empty range if none). A segment's chunks are contiguous per track in the
    /// `mdat`.
    pub fn segment_track_bytes(&self, segment: u32, track: usize) -> std::ops::Range<u64> {
        let lo = self.chunks.partition_point(|c| c.segment < segment);
        let hi = self.chunks.partition_point(|c| c.segment <= segment);
        let mut range: Option<std::ops::Range<u64>> = None;
        for c in self.chunks[lo..hi].iter().filter(|c| c.out_track as usize == track) {
            let end = c.out_start + c.len_bytes;
            range = Some(range.map_or(c.out_start..end, |r| r.start..end));
        }
        range.unwrap_or(0..0)
    }

    /// Index of the chunk holding byte `pos` (`pos >= head.len()`, `pos < len_bytes`).
    pub fn chunk_at(&self, pos: u64) -> usize {
        self.chunks.partition_point(|c| c.out_start + c.len_bytes <= pos)
    }

    /// Builds the layout of `segments` joined into one progressive MP4.
    ///
    /// The *n*-th video (audio) track of every segment is the *n*-th video (audio) track of the
    /// file; a track's codec may not change between segments.
    pub fn build(segments: &[SegmentInput]) -> Result<Layout, LayoutError> {
        let mut tracks: Vec<Track> = Vec::new();
        let mut tl = Timeline::default();
        for (si, seg) in segments.iter().enumerate() {
            for (key, t) in seg.index.keyed_tracks() {
                match tracks.iter().find(|b| b.key == key) {
                    Some(b) if b.codec != t.config.codec => {
                        return Err(LayoutError::CodecChange {
                            kind: key.0,
                            from: b.codec,
                            to: t.config.codec,
                            segment: si,
                        });
                    }
                    Some(_) => {}
                    None => tracks.push(Track::new(key, t)),
                }
            }
            tl.add_segment(si as u32, seg, &mut tracks);
        }
        tracks.retain(|t| !t.samples.is_empty());
        if tracks.is_empty() {
            return Err(LayoutError::Empty);
        }
        tracks.sort_by_key(|t| t.key);
        let several = |kind| tracks.iter().filter(|t| t.kind == kind).count() > 1;
        let groups = [several(TrackKind::Video).then_some(2), several(TrackKind::Audio).then_some(1)];
        for i in 0..tracks.len() {
            let first_of_kind = i == 0 || tracks[i - 1].kind != tracks[i].kind;
            let t = &mut tracks[i];
            t.alternate_group = groups[t.kind as usize].unwrap_or(0);
            t.enabled = first_of_kind;
            t.finish();
        }

        // Output chunk order: segment order, then the segment's tracks in order (video first).
        let mut chunks = Vec::new();
        let mut payload = 0u64;
        for (si, seg) in segments.iter().enumerate() {
            for (ti, (key, t)) in seg.index.keyed_tracks().enumerate() {
                let Some(out_track) = tracks.iter().position(|b| b.key == key) else { continue };
                for (ci, c) in t.chunks.iter().enumerate() {
                    chunks.push(OutChunk {
                        out_start: payload,
                        len_bytes: c.len_bytes,
                        segment: si as u32,
                        track: ti as u8,
                        chunk: ci as u32,
                        out_track: out_track as u8,
                    });
                    payload += c.len_bytes;
                }
            }
        }

        let ftyp = ftyp();
        let mdat_hdr_len: u64 = if payload + 8 > u32::MAX as u64 { 16 } else { 8 };
        let edits: Vec<Edit> = edits(&tracks);
        let movie_dur = edits.iter().map(|e| e.empty + e.media_movie_dur).max().unwrap_or(0);
        // The moov size does not depend on chunk offsets, only on stco vs co64.
        let mut moov = write_moov(&tracks, &edits, movie_dur, false);
        let co64 = (ftyp.len() + moov.buf.len()) as u64 + mdat_hdr_len + payload > u32::MAX as u64;
        if co64 {
            moov = write_moov(&tracks, &edits, movie_dur, true);
        }
        let base = (ftyp.len() + moov.buf.len()) as u64 + mdat_hdr_len;

        // Patch chunk offsets into each track's stco/co64 table.
        let mut next_in_track = vec![0usize; tracks.len()];
        for c in &mut chunks {
            c.out_start += base;
            let ti = c.out_track as usize;
            let pos = moov.chunk_offset_pos[ti] + next_in_track[ti] * if co64 { 8 } else { 4 };
            next_in_track[ti] += 1;
            if co64 {
                moov.buf[pos..pos + 8].copy_from_slice(&c.out_start.to_be_bytes());
            } else {
                moov.buf[pos..pos + 4].copy_from_slice(&(c.out_start as u32).to_be_bytes());
            }
        }

        let mut head = ftyp;
        head.extend_from_slice(&moov.buf);
        if mdat_hdr_len == 16 {
            head.extend_from_slice(&1u32.to_be_bytes());
            head.extend_from_slice(b"mdat");
            head.extend_from_slice(&(payload + 16).to_be_bytes());
        } else {
            head.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
            head.extend_from_slice(b"mdat");
        }
        let len_bytes = head.len() as u64 + payload;
        Ok(Layout {
            head,
            chunks,
            len_bytes,
            segments: segments.iter().map(|s| s.index.clone()).collect(),
            tracks,
            movie_dur,
        })
    }
}

/// One output sample; times in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutSample {
    pub dur: u32,
    /// Composition offset PTS − DTS.
    pub cts: i32,
    pub len: u32,
    pub sync: bool,
}

/// The samples of one track that come from one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegRun {
    /// Index into the layout's segments.
    pub segment: u32,
    /// Index of the first sample in [`Track::samples`].
    pub first: u32,
    pub count: u32,
    /// Output decode time of the first sample, track timescale.
    pub dts: i64,
    /// 1-based index of its sample description in [`Track::entries`].
    pub sdi: u32,
}

/// One output track: samples of all segments joined into one timeline.
#[derive(Debug, Clone)]
pub struct Track {
    /// `(kind, n)`: the `n`-th track of its kind in each segment ([`SegmentIndex::keyed_tracks`]).
    pub key: (TrackKind, u8),
    pub kind: TrackKind,
    /// ISO 639-2/T language (`mdhd`), from the first segment that has the track.
    pub language: [u8; 3],
    /// `tkhd` alternate_group: 0 for a track alone of its kind, else shared by its kind.
    pub alternate_group: u16,
    /// `tkhd` track_enabled: the first track of its kind.
    pub enabled: bool,
    pub codec: Codec,
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    pub matrix: [i32; 9],
    /// Distinct sample entries (`stsd` entries), in first-use order.
    pub entries: Vec<Vec<u8>>,
    pub samples: Vec<OutSample>,
    /// Per segment that has samples of this track, in segment order.
    pub runs: Vec<SegRun>,
    /// Per output chunk: (samples, 1-based sample description index).
    chunks: Vec<(u32, u32)>,
    /// Output decode time of the first sample (track timescale; 0 unless the track starts later
    /// than another).
    pub first_dts: i64,
    /// Output decode time of the last sample.
    last_dts: i64,
    /// Source decode time of the last sample (output timescale, recording domain).
    last_src: i64,
    /// Whether the last sample's duration came from the source.
    last_dur_known: bool,
    /// Min over samples of output PTS, track timescale.
    pub min_pts: i64,
}

impl Track {
    fn new(key: (TrackKind, u8), t: &super::index::TrackIndex) -> Self {
        Track {
            key,
            kind: t.kind(),
            language: t.config.language,
            alternate_group: 0,
            enabled: true,
            codec: t.config.codec,
            timescale: t.config.timescale,
            width: t.config.width,
            height: t.config.height,
            matrix: t.config.matrix,
            entries: Vec::new(),
            samples: Vec::new(),
            runs: Vec::new(),
            chunks: Vec::new(),
            first_dts: 0,
            last_dts: 0,
            last_src: 0,
            last_dur_known: false,
            min_pts: i64::MAX,
        }
    }

    /// A plausible duration for the last sample when the source does not give one: the previous
    /// sample's, else the audio frame length, else 1/30 s.
    fn nominal_dur(&self) -> u32 {
        if let Some(p) = self.samples.iter().rev().nth(1) {
            return p.dur.max(1);
        }
        match self.codec {
            Codec::Aac => 1024,
            Codec::Ac3 => 1536,
            _ => (self.timescale / 30).max(1),
        }
    }

    /// Expected duration of the last sample so far.
    fn last_dur_est(&self) -> u32 {
        match self.samples.last() {
            Some(s) if self.last_dur_known || s.dur > 0 => s.dur,
            _ => self.nominal_dur(),
        }
    }

    fn finish(&mut self) {
        if !self.last_dur_known {
            let d = self.nominal_dur();
            if let Some(s) = self.samples.last_mut() {
                s.dur = d;
            }
        }
    }

    /// Sum of sample durations, timescale ticks.
    pub fn media_dur(&self) -> u64 {
        self.samples.iter().map(|s| s.dur as u64).sum()
    }
}

fn rescale(v: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return v;
    }
    let n = v as i128 * to as i128;
    let d = from as i128;
    ((2 * n + d).div_euclid(2 * d)) as i64
}

fn to_ns(v: i64, ts: u32) -> i128 {
    let n = v as i128 * 1_000_000_000;
    (2 * n + ts as i128).div_euclid(2 * ts as i128)
}

fn from_ns(ns: i128, ts: u32) -> i64 {
    let n = ns * ts as i128;
    ((2 * n + 1_000_000_000).div_euclid(2_000_000_000)) as i64
}

/// Signed difference `a - b` of two 33-bit MPEG-TS timestamps (ISO/IEC 13818-1 §2.4.3.7).
fn ts_delta_33(a: u64, b: u64) -> i64 {
    let m = 1i64 << 33;
    let d = (a as i64 - b as i64).rem_euclid(m);
    if d >= m / 2 { d - m } else { d }
}

/// Joins segments into one timeline (see the module docs).
#[derive(Debug, Default)]
struct Timeline {
    /// MPEG-TS: last segment origin and the accumulated offset of the current origin, 90 kHz.
    prev_origin: Option<u64>,
    origin_acc_90k: i64,
    /// Output time minus source time of the current run, nanoseconds.
    run_offset_ns: i128,
    started: bool,
}

impl Timeline {
    fn add_segment(&mut self, si: u32, seg: &SegmentInput, tracks: &mut [Track]) {
        let idx = &seg.index;
        if let Some(o) = idx.ts_origin_90k {
            if let Some(p) = self.prev_origin {
                self.origin_acc_90k += ts_delta_33(o, p);
            }
            self.prev_origin = Some(o);
        }
        // Source decode times of each track's samples, in the output track timescale and the
        // recording's time domain.
        let srcs: Vec<(usize, Vec<i64>)> = idx
            .keyed_tracks()
            .filter(|(_, t)| !t.samples.is_empty())
            .map(|(key, t)| {
                let b = tracks.iter().position(|b| b.key == key).expect("registered");
                let in_ts = t.config.timescale;
                let origin = match idx.container {
                    Container::Ts => rescale(self.origin_acc_90k, 90_000, in_ts),
                    Container::Fmp4 => 0,
                };
                let out_ts = tracks[b].timescale;
                (b, t.samples.iter().map(|s| rescale(s.dts + origin, in_ts, out_ts)).collect())
            })
            .collect();
        if srcs.is_empty() {
            return;
        }

        let mut continuous = self.started && !seg.join_before;
        if continuous {
            for (b, src) in &srcs {
                let t = &tracks[*b];
                if t.samples.is_empty() {
                    continue;
                }
                let d = src[0] - t.last_src;
                let late = to_ns(src[0] - (t.last_src + t.last_dur_est() as i64), t.timescale);
                if d <= 0 || late > JOIN_GAP_NS {
                    continuous = false;
                }
            }
        }
        if !continuous {
            let end_ns = tracks
                .iter()
                .filter(|t| !t.samples.is_empty())
                .map(|t| to_ns(t.last_dts + t.last_dur_est() as i64, t.timescale))
                .max()
                .unwrap_or(0);
            let min_src_ns = srcs.iter().map(|(b, src)| to_ns(src[0], tracks[*b].timescale)).min().expect("non-empty");
            self.run_offset_ns = end_ns - min_src_ns;
        }
        self.started = true;

        for ((b, src), t_idx) in srcs.iter().zip(idx.tracks.iter().filter(|t| !t.samples.is_empty())) {
            let t = &mut tracks[*b];
            let ts = t.timescale;
            let first_out = if continuous && !t.samples.is_empty() {
                t.last_dts + (src[0] - t.last_src)
            } else {
                let v = from_ns(to_ns(src[0], ts) + self.run_offset_ns, ts);
                if t.samples.is_empty() { v.max(0) } else { v.max(t.last_dts + 1) }
            };
            if let Some(last) = t.samples.last_mut() {
                last.dur = u32::try_from(first_out - t.last_dts).unwrap_or(u32::MAX);
            } else {
                t.first_dts = first_out;
            }
            // Sample description: reuse an identical entry or add one.
            let sdi = match t.entries.iter().position(|e| *e == t_idx.config.sample_entry) {
                Some(i) => i + 1,
                None => {
                    t.entries.push(t_idx.config.sample_entry.clone());
                    t.entries.len()
                }
            } as u32;
            for c in &t_idx.chunks {
                t.chunks.push((c.samples, sdi));
            }
            t.runs.push(SegRun {
                segment: si,
                first: t.samples.len() as u32,
                count: src.len() as u32,
                dts: first_out,
                sdi,
            });
            let in_ts = t_idx.config.timescale;
            let max_dur = from_ns(MAX_SAMPLE_DUR_NS, ts);
            let mut out = first_out;
            let n = src.len();
            for (k, s) in t_idx.samples.iter().enumerate() {
                let cts = rescale(s.cts_offset as i64, in_ts, ts) as i32;
                t.min_pts = t.min_pts.min(out + cts as i64);
                let dur = if k + 1 < n {
                    let d = src[k + 1] - src[k];
                    if d > 0 && d <= max_dur {
                        d
                    } else {
                        t.samples.last().map(|p| p.dur as i64).filter(|&d| d > 0).unwrap_or(1)
                    }
                } else {
                    rescale(s.dur as i64, in_ts, ts)
                };
                t.samples.push(OutSample {
                    dur: dur.clamp(0, u32::MAX as i64) as u32,
                    cts,
                    len: s.len_bytes,
                    sync: s.sync,
                });
                if k + 1 < n {
                    out += dur;
                }
            }
            t.last_dts = out;
            t.last_src = src[n - 1];
            t.last_dur_known = t_idx.samples[n - 1].dur > 0;
        }
    }
}

/// Edit list of one track, ISO/IEC 14496-12 §8.6.6.
#[derive(Debug, Clone, Copy)]
struct Edit {
    /// Empty edit before the media, movie timescale.
    empty: u64,
    /// Media time where presentation starts, media timescale.
    media_time: i64,
    /// Duration of the media edit, movie timescale.
    media_movie_dur: u64,
}

/// Aligns tracks: movie time 0 is the earliest first presentation time of any track; a track
/// that starts later gets an empty edit; B-frame delay (first PTS > first DTS) is hidden by the
/// media edit's `media_time`.
fn edits(tracks: &[Track]) -> Vec<Edit> {
    let start_ns: Vec<i128> = tracks.iter().map(|t| to_ns(t.first_dts.max(t.min_pts), t.timescale)).collect();
    let movie_start = *start_ns.iter().min().expect("tracks");
    tracks
        .iter()
        .zip(&start_ns)
        .map(|(t, &s)| {
            let media_time = (t.min_pts - t.first_dts).max(0);
            // Presentation span: from the first presented instant to the end of the last
            // presented sample (PTS order), not the decode span.
            let (mut dts, mut end) = (t.first_dts, i64::MIN);
            for s in &t.samples {
                end = end.max(dts + s.cts as i64 + s.dur as i64);
                dts += s.dur as i64;
            }
            let media_dur = end - t.first_dts.max(t.min_pts);
            Edit {
                empty: from_ns(s - movie_start, MOVIE_TIMESCALE).max(0) as u64,
                media_time,
                media_movie_dur: rescale(media_dur.max(0), t.timescale, MOVIE_TIMESCALE) as u64,
            }
        })
        .collect()
}

fn ftyp() -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(32);
    w.start(b"ftyp");
    w.bytes(b"isom");
    w.u32(0x200);
    for b in [b"isom", b"iso2", b"avc1", b"mp41"] {
        w.bytes(b);
    }
    w.end();
    w.finish()
}

struct Moov {
    buf: Vec<u8>,
    /// Per track, offset in `buf` of the first chunk offset entry.
    chunk_offset_pos: Vec<usize>,
}

fn write_moov(tracks: &[Track], edits: &[Edit], movie_dur: u64, co64: bool) -> Moov {
    let nsamples: usize = tracks.iter().map(|t| t.samples.len()).sum();
    let mut w = BoxWriter::with_capacity(1024 + nsamples * 12);
    let mut chunk_offset_pos = Vec::new();
    w.start(b"moov");
    write_mvhd(&mut w, movie_dur, tracks.len() as u32 + 1);
    for (i, (t, e)) in tracks.iter().zip(edits).enumerate() {
        chunk_offset_pos.push(write_trak(&mut w, t, e, i as u32 + 1, co64));
    }
    w.end();
    Moov { buf: w.finish(), chunk_offset_pos }
}

fn write_trak(w: &mut BoxWriter, t: &Track, e: &Edit, track_id: u32, co64: bool) -> usize {
    let tk_dur = e.empty + e.media_movie_dur;
    w.start(b"trak");
    write_tkhd(w, t, track_id, tk_dur);

    w.start(b"edts");
    let entries = (e.empty > 0) as u32 + 1;
    let long = e.empty > u32::MAX as u64 || e.media_movie_dur > u32::MAX as u64 || e.media_time > i32::MAX as i64;
    w.start_full(b"elst", long as u8, 0);
    w.u32(entries);
    let mut entry = |dur: u64, media_time: i64| {
        if long {
            w.u64(dur);
            w.u64(media_time as u64);
        } else {
            w.u32(dur as u32);
            w.i32(media_time as i32);
        }
        w.u32(0x0001_0000); // media_rate 1.0
    };
    if e.empty > 0 {
        entry(e.empty, -1);
    }
    entry(e.media_movie_dur, e.media_time);
    w.end();
    w.end();

    w.start(b"mdia");
    let media_dur = t.media_dur();
    write_mdhd(w, t.timescale, media_dur, t.language);
    write_hdlr(w, t.kind);
    w.start(b"minf");
    write_minf_header(w, t.kind);
    let pos = write_stbl(w, t, co64);
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
    pos
}

/// Writes `mvhd` (ISO/IEC 14496-12 §8.2.2; version 1 when `dur` needs 64 bits), timescale
/// [`MOVIE_TIMESCALE`]; `dur` 0 means unknown (fragmented files).
pub(super) fn write_mvhd(w: &mut BoxWriter, dur: u64, next_track_id: u32) {
    let long = dur > u32::MAX as u64;
    w.start_full(b"mvhd", long as u8, 0);
    write_times(w, long, MOVIE_TIMESCALE, None, dur);
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    for m in super::boxes::UNITY_MATRIX {
        w.i32(m);
    }
    w.zeros(24); // pre_defined
    w.u32(next_track_id);
    w.end();
}

/// Writes `tkhd` (§8.3.2; in movie): duration `dur` in movie timescale ticks, the track's
/// matrix and display size. A track alone of its kind is enabled with no alternate group; of
/// several tracks of one kind (two audio languages) all share an alternate group (1 audio,
/// 2 video) and only the first is enabled, so a player plays one at a time (as FFmpeg's
/// `movenc` writes them).
pub(super) fn write_tkhd(w: &mut BoxWriter, t: &Track, track_id: u32, dur: u64) {
    let long = dur > u32::MAX as u64;
    w.start_full(b"tkhd", long as u8, if t.enabled { 3 } else { 2 }); // track_enabled | track_in_movie
    write_times(w, long, track_id, Some(0), dur);
    w.zeros(8);
    w.u16(0); // layer
    w.u16(t.alternate_group);
    w.u16(if t.kind == TrackKind::Audio { 0x0100 } else { 0 });
    w.u16(0);
    for m in t.matrix {
        w.i32(m);
    }
    w.u32(t.width << 16);
    w.u32(t.height << 16);
    w.end();
}

/// Writes `mdhd` (§8.4.2): `dur` in `timescale` ticks and the ISO 639-2/T `language`
/// (`und` when it is not three lower-case letters).
pub(super) fn write_mdhd(w: &mut BoxWriter, timescale: u32, dur: u64, language: [u8; 3]) {
    let long = dur > u32::MAX as u64;
    w.start_full(b"mdhd", long as u8, 0);
    write_times(w, long, timescale, None, dur);
    w.u16(packed_language(language));
    w.u16(0);
    w.end();
}

/// `mdhd` language field: three 5-bit letters, each `c − 0x60` (§8.4.2.3).
fn packed_language(l: [u8; 3]) -> u16 {
    let l = if l.iter().all(u8::is_ascii_lowercase) { l } else { super::index::UNDETERMINED };
    l.iter().fold(0u16, |acc, &c| (acc << 5) | (c - 0x60) as u16)
}

/// The version-dependent part of `mvhd`/`tkhd`/`mdhd`: creation and modification time (0),
/// `id` (timescale, or track_ID followed by `reserved`), duration; 64-bit fields when `long`.
fn write_times(w: &mut BoxWriter, long: bool, id: u32, reserved: Option<u32>, dur: u64) {
    if long {
        w.u64(0);
        w.u64(0);
    } else {
        w.u32(0);
        w.u32(0);
    }
    w.u32(id);
    if let Some(r) = reserved {
        w.u32(r);
    }
    if long { w.u64(dur) } else { w.u32(dur as u32) }
}

/// Writes `hdlr` (ISO/IEC 14496-12 §8.4.3) for a track of `kind`.
pub(super) fn write_hdlr(w: &mut BoxWriter, kind: TrackKind) {
    w.start_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    let (handler, name): (&[u8; 4], &[u8]) = match kind {
        TrackKind::Video => (b"vide", b"VideoHandler\0"),
        TrackKind::Audio => (b"soun", b"SoundHandler\0"),
    };
    w.bytes(handler);
    w.zeros(12);
    w.bytes(name);
    w.end();
}

/// Writes the first boxes of `minf`: `vmhd` or `smhd` (§12.1.2 / §12.2.2) and `dinf`/`dref`
/// with one self-contained `url ` entry (§8.7.1–8.7.2: media data is in this file).
pub(super) fn write_minf_header(w: &mut BoxWriter, kind: TrackKind) {
    match kind {
        TrackKind::Video => {
            w.start_full(b"vmhd", 0, 1);
            w.zeros(8);
            w.end();
        }
        TrackKind::Audio => {
            w.start_full(b"smhd", 0, 0);
            w.zeros(4);
            w.end();
        }
    }
    w.start(b"dinf");
    w.start_full(b"dref", 0, 0);
    w.u32(1);
    w.start_full(b"url ", 0, 1);
    w.end();
    w.end();
    w.end();
}

/// Writes `stbl`; returns the offset of the first chunk offset entry.
fn write_stbl(w: &mut BoxWriter, t: &Track, co64: bool) -> usize {
    w.start(b"stbl");
    w.start_full(b"stsd", 0, 0);
    w.u32(t.entries.len() as u32);
    for e in &t.entries {
        w.bytes(e);
    }
    w.end();

    // stts: run-length coded durations.
    let runs = run_lengths(t.samples.iter().map(|s| s.dur));
    w.start_full(b"stts", 0, 0);
    w.u32(runs.len() as u32);
    for (n, d) in runs {
        w.u32(n);
        w.u32(d);
    }
    w.end();

    if t.samples.iter().any(|s| s.cts != 0) {
        let negative = t.samples.iter().any(|s| s.cts < 0);
        let runs = run_lengths(t.samples.iter().map(|s| s.cts));
        w.start_full(b"ctts", negative as u8, 0);
        w.u32(runs.len() as u32);
        for (n, c) in runs {
            w.u32(n);
            w.i32(c);
        }
        w.end();
    }

    if t.samples.iter().any(|s| !s.sync) {
        let n = t.samples.iter().filter(|s| s.sync).count();
        w.start_full(b"stss", 0, 0);
        w.u32(n as u32);
        for (i, _) in t.samples.iter().enumerate().filter(|(_, s)| s.sync) {
            w.u32(i as u32 + 1);
        }
        w.end();
    }

    w.start_full(b"stsz", 0, 0);
    let first = t.samples[0].len;
    if t.samples.iter().all(|s| s.len == first) {
        w.u32(first);
        w.u32(t.samples.len() as u32);
    } else {
        w.u32(0);
        w.u32(t.samples.len() as u32);
        for s in &t.samples {
            w.u32(s.len);
        }
    }
    w.end();

    // stsc: a new entry whenever samples-per-chunk or the description index changes.
    let mut stsc: Vec<(u32, u32, u32)> = Vec::new();
    for (i, &(n, sdi)) in t.chunks.iter().enumerate() {
        if stsc.last().is_none_or(|&(_, pn, ps)| pn != n || ps != sdi) {
            stsc.push((i as u32 + 1, n, sdi));
        }
    }
    w.start_full(b"stsc", 0, 0);
    w.u32(stsc.len() as u32);
    for (f, n, s) in stsc {
        w.u32(f);
        w.u32(n);
        w.u32(s);
    }
    w.end();

    w.start_full(if co64 { b"co64" } else { b"stco" }, 0, 0);
    w.u32(t.chunks.len() as u32);
    let pos = w.buf.len();
    w.zeros(t.chunks.len() * if co64 { 8 } else { 4 });
    w.end();
    w.end();
    pos
}

fn run_lengths<T: PartialEq + Copy>(it: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for v in it {
        match out.last_mut() {
            Some((n, p)) if *p == v => *n += 1,
            _ => out.push((1, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::UNITY_MATRIX;
    use crate::index::{Chunk, Sample, TrackConfig, TrackIndex};

    /// A synthetic segment: `n` video samples of `len` bytes, 3000-tick (1/30 s) spacing from
    /// `dts0`, one chunk; plus AAC audio 1024-tick frames from `adts0` (48 kHz).
    fn seg(dts0: i64, n: u32, len: u32, adts0: i64, origin: Option<u64>) -> SegmentInput {
        let vs: Vec<Sample> = (0..n)
            .map(|i| Sample {
                dts: dts0 + i as i64 * 3000,
                dur: 0,
                cts_offset: 6000,
                len_bytes: len,
                sync: i == 0,
                src_offset: i as u64 * 188,
            })
            .collect();
        let a: Vec<Sample> = (0..(n * 3000 / 1920))
            .map(|i| Sample {
                dts: adts0 + i as i64 * 1024,
                dur: 1024,
                cts_offset: 0,
                len_bytes: 10,
                sync: true,
                src_offset: 0,
            })
            .collect();
        let track = |codec, timescale, samples: Vec<Sample>| {
            let len = samples.iter().map(|s| s.len_bytes as u64).sum();
            TrackIndex {
                config: TrackConfig {
                    codec,
                    timescale,
                    sample_entry: vec![0, 0, 0, 8, b'a', b'v', b'c', b'1'],
                    width: 640,
                    height: 360,
                    matrix: UNITY_MATRIX,
                    source_id: 1,
                    language: crate::index::UNDETERMINED,
                },
                chunks: vec![Chunk {
                    first_sample: 0,
                    samples: samples.len() as u32,
                    src_start: 0,
                    src_end: 188,
                    len_bytes: len,
                }],
                samples,
            }
        };
        SegmentInput {
            index: Arc::new(SegmentIndex {
                container: if origin.is_some() { Container::Ts } else { Container::Fmp4 },
                ts_origin_90k: origin,
                tracks: vec![track(Codec::H264, 90000, vs), track(Codec::Aac, 48000, a)],
            }),
            join_before: false,
        }
    }

    fn durations(l: &Layout) -> Vec<u32> {
        // stts of the first trak, decoded from the head.
        let h = &l.head;
        let p = h.windows(4).position(|w| w == b"stts").unwrap();
        let n = u32::from_be_bytes(h[p + 8..p + 12].try_into().unwrap()) as usize;
        let mut out = Vec::new();
        for i in 0..n {
            let q = p + 12 + i * 8;
            let c = u32::from_be_bytes(h[q..q + 4].try_into().unwrap());
            let d = u32::from_be_bytes(h[q + 4..q + 8].try_into().unwrap());
            out.extend(std::iter::repeat_n(d, c as usize));
        }
        out
    }

    #[test]
    fn continuous_segments_keep_exact_durations() {
        let l = Layout::build(&[seg(0, 60, 100, 0, None), seg(180_000, 60, 100, 96_000, None)]).unwrap();
        assert!(durations(&l).iter().all(|&d| d == 3000), "{:?}", durations(&l));
        assert_eq!(l.len_bytes, l.head.len() as u64 + l.chunks.iter().map(|c| c.len_bytes).sum::<u64>());
        assert_eq!(l.chunks[0].out_start, l.head.len() as u64);
    }

    #[test]
    fn restart_and_gap_are_joined_without_bad_durations() {
        // second segment restarts at 0 (discontinuity), third jumps 10 s ahead (gap)
        let l = Layout::build(&[
            seg(900_000, 60, 100, 480_000, None),
            seg(0, 60, 100, 0, None),
            seg(180_000 + 900_000, 60, 100, 96_000 + 480_000, None),
        ])
        .unwrap();
        let d = durations(&l);
        assert_eq!(d.len(), 180);
        assert!(d.iter().all(|&d| (3000..=6000).contains(&d)), "{d:?}");
    }

    #[test]
    fn pts_wrap_between_segments_is_continuous() {
        let wrap = 1u64 << 33;
        let l = Layout::build(&[seg(0, 60, 100, 0, Some(wrap - 90_000)), seg(0, 60, 100, 0, Some(90_000))]).unwrap();
        assert!(durations(&l).iter().all(|&d| d == 3000));
    }

    #[test]
    fn co64_and_largesize_past_4_gib() {
        // 2000 segments of 60 samples × 40 000 bytes = 4.8 GB of payload.
        let segs: Vec<_> = (0..2000).map(|i| seg(i * 180_000, 60, 40_000, i * 96_000, None)).collect();
        let l = Layout::build(&segs).unwrap();
        assert!(l.len_bytes > 1 << 32);
        let h = &l.head;
        assert!(h.windows(4).any(|w| w == b"co64"));
        assert!(!h.windows(4).any(|w| w == b"stco"));
        // mdat with largesize: size field 1, then 64-bit size covering the rest of the file.
        let m = h.len() - 16;
        assert_eq!(&h[m..m + 8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        assert_eq!(u64::from_be_bytes(h[m + 8..].try_into().unwrap()), l.len_bytes - m as u64);
        // the last video chunk offset in co64 equals the layout's own idea of it
        let p = h.windows(4).position(|w| w == b"co64").unwrap();
        let n = u32::from_be_bytes(h[p + 8..p + 12].try_into().unwrap()) as usize;
        let last = u64::from_be_bytes(h[p + 12 + (n - 1) * 8..p + 20 + (n - 1) * 8].try_into().unwrap());
        let expect = l.chunks.iter().rfind(|c| c.track == 0).unwrap().out_start;
        assert_eq!(last, expect);
        assert!(last > 1 << 32);
    }

    #[test]
    fn chunk_at_finds_the_chunk() {
        let l = Layout::build(&[seg(0, 10, 100, 0, None)]).unwrap();
        let h = l.head.len() as u64;
        assert_eq!(l.chunk_at(h), 0);
        assert_eq!(l.chunk_at(h + 999), 0);
        assert_eq!(l.chunk_at(h + 1000), 1);
        assert_eq!(l.chunk_at(l.len_bytes - 1), l.chunks.len() - 1);
    }

    /// Values of `(tkhd flags, alternate_group, mdhd language)` per `trak` of a written head.
    fn trak_fields(head: &[u8]) -> Vec<(u32, u16, [u8; 3])> {
        use crate::boxes::{Boxes, child};
        let moov = Boxes::new(head, 0, head.len()).map(Result::unwrap).find(|b| &b.fourcc == b"moov").unwrap();
        let mut out = Vec::new();
        for trak in Boxes::children(head, &moov).map(Result::unwrap).filter(|b| &b.fourcc == b"trak") {
            let tkhd = child(head, &trak, b"tkhd").unwrap().unwrap();
            let (_, v, flags) = tkhd.full(head).unwrap();
            // version 0: times 8, track_ID 4, reserved 4, duration 4, reserved 8, layer 2.
            let at = tkhd.body + 4 + if v == 1 { 32 } else { 20 } + 8 + 2;
            let group = u16::from_be_bytes([head[at], head[at + 1]]);
            let mdia = child(head, &trak, b"mdia").unwrap().unwrap();
            let mdhd = child(head, &mdia, b"mdhd").unwrap().unwrap();
            let p = u16::from_be_bytes([head[mdhd.body + 4 + 16], head[mdhd.body + 4 + 17]]);
            let lang = [(p >> 10) & 31, (p >> 5) & 31, p & 31].map(|c| c as u8 + 0x60);
            out.push((flags, group, lang));
        }
        out
    }

    #[test]
    fn several_audio_tracks_share_an_alternate_group_with_their_languages() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/sets/c01_h264_2aac_lang_ts");
        let segs: Vec<SegmentInput> = (0..3)
            .map(|n| {
                let data = std::fs::read(format!("{dir}/seg_0000{n}.ts")).unwrap();
                SegmentInput { index: Arc::new(crate::ts::index_segment(&data).unwrap()), join_before: false }
            })
            .collect();
        let l = Layout::build(&segs).unwrap();
        assert_eq!(
            l.tracks.iter().map(|t| t.key).collect::<Vec<_>>(),
            [(TrackKind::Video, 0), (TrackKind::Audio, 0), (TrackKind::Audio, 1)]
        );
        // Video alone: enabled, no group. Audio: one group, the first enabled (ISO/IEC 14496-12
        // §8.3.2: one track of an alternate group is played).
        assert_eq!(trak_fields(&l.head), [(3, 0, *b"und"), (3, 1, *b"eng"), (2, 1, *b"deu")]);
        assert_eq!(l.codecs(), "avc1.640015,mp4a.40.2,mp4a.40.2");
        // Each segment's chunks of the second audio track follow the first's.
        for s in 0..3 {
            let (a0, a1) = (l.segment_track_bytes(s, 1), l.segment_track_bytes(s, 2));
            assert!(!a0.is_empty() && a0.end == a1.start, "{a0:?} {a1:?}");
        }
        // One track of each kind: no alternate group, as before.
        let single = Layout::build(&[seg(0, 60, 100, 0, None)]).unwrap();
        assert_eq!(trak_fields(&single.head), [(3, 0, *b"und"), (3, 0, *b"und")]);
    }
}
