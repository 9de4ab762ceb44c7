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
//!
//! ## Growing files
//! A live recording grows one segment at a time. [`LayoutBuilder`] keeps the timeline, the
//! tracks and, per track, the counts that decide every box size (runs of `stts`, `ctts` and `stsc`
//! entries, sync samples, chunks, sample entries, the presentation span), so that
//! [`LayoutBuilder::push`] costs the new segment's samples and [`LayoutBuilder::summary`] gives
//! the file's length, head length, duration and codecs in O(tracks) without writing the `moov`;
//! [`LayoutBuilder::layout`] writes the head when a reader needs it. [`Layout::build`] is that
//! builder with every segment pushed, so both ways give the same bytes.

use std::sync::Arc;

use super::boxes::BoxWriter;
use super::index::{Codec, Container, SegmentIndex, TrackKind};

pub mod clip;

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
    /// A fragment of the quasi-stream cannot be written ([`super::frag::fragment_header`]).
    #[error("{0}")]
    Fragment(super::FormatError),
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
    /// Offset of its first byte in the source chunk's output bytes: 0 unless the chunk is cut
    /// (a clip starting or ending inside it, [`clip`]).
    pub src_off: u64,
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
        codecs_of(self.tracks.iter())
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

    /// Builds the layout of `segments` joined into one progressive MP4: a [`LayoutBuilder`] with
    /// every segment pushed in order, then [`LayoutBuilder::layout`].
    ///
    /// The *n*-th video (audio) track of every segment is the *n*-th video (audio) track of the
    /// file; a track's codec may not change between segments.
    pub fn build(segments: &[SegmentInput]) -> Result<Layout, LayoutError> {
        let mut b = LayoutBuilder::new();
        for seg in segments {
            b.push(seg.clone())?;
        }
        b.into_layout(true)
    }

    /// [`Layout::build`] without the head: what a clip is cut from ([`clip::clip`] reads the
    /// tracks, chunks and segments only), made without writing a `moov` it would not use.
    /// `head` is empty, so chunk offsets count from the first payload byte and `len_bytes` is
    /// the payload's; not the layout of a playable file. Errors: as [`Layout::build`].
    pub fn build_headless(segments: &[SegmentInput]) -> Result<Layout, LayoutError> {
        let mut b = LayoutBuilder::new();
        for seg in segments {
            b.push(seg.clone())?;
        }
        b.into_layout(false)
    }
}

/// The RFC 6381 codecs parameter of `tracks` (in file order): each track's first sample entry,
/// comma-separated.
fn codecs_of<'a>(tracks: impl Iterator<Item = &'a Track>) -> String {
    let each = tracks.filter_map(|t| t.entries.first());
    each.map(|e| super::codecs::codec_string(e).unwrap_or_default()).collect::<Vec<_>>().join(",")
}

/// What is known of the file after each [`LayoutBuilder::push`], without writing its `moov`:
/// the figures a growing recording's catalog row needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSummary {
    /// Total file length in bytes ([`Layout::len_bytes`]).
    pub len_bytes: u64,
    /// Length in bytes of `ftyp` + `moov` + `mdat` header (ISO/IEC 14496-12 §4.3, §8.2.1,
    /// §8.1.1): `layout.head.len()`, the offset of the first payload byte.
    pub head_len_bytes: u64,
    /// Presentation duration of the movie, [`MOVIE_TIMESCALE`] ticks ([`Layout::movie_dur`]; the
    /// `mvhd` duration, §8.2.2).
    pub movie_dur: u64,
    /// The RFC 6381 codecs parameter ([`Layout::codecs`]).
    pub codecs: String,
}

/// Builds a [`Layout`] one segment at a time, so that a growing (live) recording costs the new
/// segment's samples per append rather than the whole file's.
///
/// The builder keeps what [`Layout::build`] used to recompute from scratch: the joined timeline
/// (see the module docs), the output tracks with their samples, the output chunks with the
/// running payload size, and per track the counts that decide the size of its boxes (`stts`/
/// `ctts` runs, sync samples, `stsz` uniformity, `stsc` runs, chunks, `stsd` entries, decode and
/// presentation spans). [`LayoutBuilder::push`] updates them from the new segment
/// alone; [`LayoutBuilder::summary`] reads the file's figures off them in O(tracks);
/// [`LayoutBuilder::layout`] writes the head in O(file).
///
/// Neither `summary` nor `layout` changes the builder: everything that [`Layout::build`] does
/// after the last segment (dropping tracks without samples, ordering tracks, alternate groups,
/// the final duration of each track's last sample, edit lists, `stco` vs `co64`) happens on
/// copies, so pushing can go on. The bytes are those of [`Layout::build`] on the same segments.
#[derive(Debug, Clone, Default)]
pub struct LayoutBuilder {
    tl: Timeline,
    /// Output tracks in first-seen order, with or without samples; the layout's are those with
    /// samples, ordered by key.
    tracks: Vec<Track>,
    /// Running counts of each entry of `tracks`.
    stats: Vec<TrackStats>,
    /// Output chunks in file order.
    chunks: Vec<PendingChunk>,
    segments: Vec<Arc<SegmentIndex>>,
    /// How to take back the last successful push, until it is taken back.
    undo: Option<Undo>,
}

/// An output chunk before the layout's track order and head length are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingChunk {
    len_bytes: u64,
    /// Index into the builder's segments.
    segment: u32,
    /// Index into that segment's `tracks`.
    track: u8,
    /// Index into that track's `chunks`.
    chunk: u32,
    /// Index into the builder's tracks.
    builder_track: usize,
}

/// The builder's state before a push: enough to restore it exactly.
#[derive(Debug, Clone)]
struct Undo {
    tl: Timeline,
    /// One per track that existed before the push; later tracks are dropped.
    tracks: Vec<TrackMark>,
    stats: Vec<TrackStats>,
    chunks: usize,
}

impl LayoutBuilder {
    /// An empty builder: no segments, no tracks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next segment (in playlist order).
    ///
    /// Errors with [`LayoutError::CodecChange`] when one of its tracks has another codec than the
    /// output track it continues; the builder is then left exactly as it was (including what
    /// [`LayoutBuilder::undo`] would take back). Cost: O(samples and chunks of this segment +
    /// tracks + distinct sample entries of its tracks), never O(earlier segments).
    pub fn push(&mut self, seg: SegmentInput) -> Result<(), LayoutError> {
        let si = self.segments.len();
        for (key, t) in seg.index.keyed_tracks() {
            if let Some(b) = self.tracks.iter().find(|b| b.key == key)
                && b.codec != t.config.codec
            {
                return Err(LayoutError::CodecChange { kind: key.0, from: b.codec, to: t.config.codec, segment: si });
            }
        }
        let undo = Undo {
            tl: self.tl.clone(),
            tracks: self.tracks.iter().map(Track::mark).collect(),
            stats: self.stats.clone(),
            chunks: self.chunks.len(),
        };
        for (key, t) in seg.index.keyed_tracks() {
            if !self.tracks.iter().any(|b| b.key == key) {
                self.tracks.push(Track::new(key, t));
                self.stats.push(TrackStats::default());
            }
        }
        self.tl.add_segment(si as u32, &seg, &mut self.tracks);
        for (st, t) in self.stats.iter_mut().zip(&self.tracks) {
            st.update(t);
        }
        // Output chunk order: segment order, then the segment's tracks in order (video first).
        for (ti, (key, t)) in seg.index.keyed_tracks().enumerate() {
            let b = self.tracks.iter().position(|b| b.key == key).expect("registered");
            for (ci, c) in t.chunks.iter().enumerate() {
                self.chunks.push(PendingChunk {
                    len_bytes: c.len_bytes,
                    segment: si as u32,
                    track: ti as u8,
                    chunk: ci as u32,
                    builder_track: b,
                });
                self.stats[b].payload += c.len_bytes;
            }
        }
        self.segments.push(seg.index);
        self.undo = Some(undo);
        Ok(())
    }

    /// Takes back the segment added by the last successful [`LayoutBuilder::push`], restoring
    /// exactly the state before it (summary, layout and what later pushes make of the timeline),
    /// so that a caller whose storage of that segment failed can go on as if it never came.
    ///
    /// One level: returns `false`, changing nothing, when there is nothing to take back — no push
    /// yet, or the last successful push was already taken back. A failed push changes nothing,
    /// so an `undo` right after it takes back the last successful push before it (if that was not
    /// taken back already). O(tracks + samples of that segment).
    pub fn undo(&mut self) -> bool {
        let Some(u) = self.undo.take() else { return false };
        self.tl = u.tl;
        self.tracks.truncate(u.tracks.len());
        for (t, m) in self.tracks.iter_mut().zip(&u.tracks) {
            t.rewind(m);
        }
        self.stats = u.stats;
        self.chunks.truncate(u.chunks);
        self.segments.pop();
        true
    }

    /// Segments pushed.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether no segment has been pushed.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The figures of the file so far, equal to those of [`LayoutBuilder::layout`], in O(tracks)
    /// time: box sizes follow from the running per-track counts and the last two samples of each
    /// track (whose final duration [`Layout::build`] settles only at the end); no sample table is
    /// walked and no `moov` is written.
    ///
    /// Errors with [`LayoutError::Empty`] when no track has samples.
    pub fn summary(&self) -> Result<LayoutSummary, LayoutError> {
        let plan = self.plan()?;
        Ok(LayoutSummary {
            len_bytes: plan.head_len + plan.payload,
            head_len_bytes: plan.head_len,
            movie_dur: plan.movie_dur,
            codecs: codecs_of(plan.order.iter().map(|&b| &self.tracks[b])),
        })
    }

    /// The complete layout of the segments so far, as [`Layout::build`] makes it. Writes the head:
    /// O(file). Does not consume or change the builder: pushing can go on.
    ///
    /// Errors with [`LayoutError::Empty`] when no track has samples.
    pub fn layout(&self) -> Result<Layout, LayoutError> {
        let plan = self.plan()?;
        let tracks = plan.order.iter().map(|&b| self.tracks[b].clone()).collect();
        Ok(self.layout_of(plan, tracks, self.segments.clone(), true))
    }

    /// The layout as [`Self::layout`] makes it, with its head (`ftyp`, `moov`, `mdat` header)
    /// or without ([`Layout::build_headless`]); the builder's tracks and segments moved into it
    /// rather than copied. Errors: as [`Self::layout`].
    fn into_layout(mut self, head: bool) -> Result<Layout, LayoutError> {
        let plan = self.plan()?;
        let mut all: Vec<Option<Track>> = std::mem::take(&mut self.tracks).into_iter().map(Some).collect();
        let tracks = plan.order.iter().map(|&b| all[b].take().expect("a track is in the order once")).collect();
        let segments = std::mem::take(&mut self.segments);
        Ok(self.layout_of(plan, tracks, segments, head))
    }

    /// The layout of `plan` over `tracks` (the builder's, in `plan.order`) and `segments`.
    fn layout_of(&self, plan: Plan, mut tracks: Vec<Track>, segments: Vec<Arc<SegmentIndex>>, head: bool) -> Layout {
        let several = |kind| tracks.iter().filter(|t| t.kind == kind).count() > 1;
        let groups = [several(TrackKind::Video).then_some(2), several(TrackKind::Audio).then_some(1)];
        for i in 0..tracks.len() {
            let first_of_kind = i == 0 || tracks[i - 1].kind != tracks[i].kind;
            let t = &mut tracks[i];
            t.alternate_group = groups[t.kind as usize].unwrap_or(0);
            t.enabled = first_of_kind;
            t.finish();
        }

        // One entry per builder track (`stats` is parallel to them; `tracks` may be moved out).
        let mut out_track = vec![None; self.stats.len()];
        for (i, &b) in plan.order.iter().enumerate() {
            out_track[b] = Some(i as u8);
        }
        let mut chunks = Vec::with_capacity(self.chunks.len());
        let mut payload = 0u64;
        for c in &self.chunks {
            let Some(out_track) = out_track[c.builder_track] else { continue };
            chunks.push(OutChunk {
                out_start: payload,
                len_bytes: c.len_bytes,
                segment: c.segment,
                track: c.track,
                chunk: c.chunk,
                out_track,
                src_off: 0,
            });
            payload += c.len_bytes;
        }
        debug_assert_eq!(payload, plan.payload);

        if !head {
            return Layout {
                head: Vec::new(),
                chunks,
                len_bytes: payload,
                segments,
                tracks,
                movie_dur: plan.movie_dur,
            };
        }
        let layout = assemble(tracks, &plan.edits, plan.movie_dur, chunks, payload, segments);
        debug_assert_eq!(
            layout.head.len() as u64,
            plan.head_len,
            "box sizes computed from counts disagree with the writers"
        );
        layout
    }

    /// The file's track order, edit lists and part sizes, from the running counts: O(tracks).
    fn plan(&self) -> Result<Plan, LayoutError> {
        let mut order: Vec<usize> = (0..self.tracks.len()).filter(|&b| !self.tracks[b].samples.is_empty()).collect();
        if order.is_empty() {
            return Err(LayoutError::Empty);
        }
        order.sort_by_key(|&b| self.tracks[b].key);
        let totals: Vec<TrackTotals> = order.iter().map(|&b| self.stats[b].totals(&self.tracks[b])).collect();
        let spans: Vec<Span> = totals.iter().map(|x| x.span).collect();
        let edits = edits(&spans);
        let movie_dur = edits.iter().map(|e| e.empty + e.media_movie_dur).max().unwrap_or(0);
        let payload: u64 = order.iter().map(|&b| self.stats[b].payload).sum();
        let mdat_header_len = mdat_header_len(payload);
        let moov_len = |co64: bool| {
            let traks = order.iter().zip(&totals).zip(&edits);
            8 + mvhd_len(movie_dur) + traks.map(|((&b, x), e)| trak_len(self.tracks[b].kind, x, e, co64)).sum::<u64>()
        };
        // The moov size does not depend on chunk offsets, only on stco vs co64; co64 when the
        // file with stco would pass 4 GiB.
        let co64 = ftyp_len() + moov_len(false) + mdat_header_len + payload > u32::MAX as u64;
        let head_len = ftyp_len() + moov_len(co64) + mdat_header_len;
        Ok(Plan { order, edits, movie_dur, payload, head_len })
    }
}

/// Writes the head of a file whose tracks, edit lists and chunks are settled: `ftyp`, `moov`
/// (with `co64` when the file passes 4 GiB with `stco`), `mdat` header, and the chunks' offsets
/// (given relative to the `mdat` payload, `payload` bytes in all) made absolute. O(samples).
fn assemble(
    tracks: Vec<Track>,
    edits: &[Edit],
    movie_dur: u64,
    mut chunks: Vec<OutChunk>,
    payload: u64,
    segments: Vec<Arc<SegmentIndex>>,
) -> Layout {
    let ftyp = ftyp();
    let mdat_header_len = mdat_header_len(payload);
    let mut moov = write_moov(&tracks, edits, movie_dur, false);
    let co64 = (ftyp.len() + moov.buf.len()) as u64 + mdat_header_len + payload > u32::MAX as u64;
    if co64 {
        moov = write_moov(&tracks, edits, movie_dur, true);
    }
    let base = (ftyp.len() + moov.buf.len()) as u64 + mdat_header_len;

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
    head.reserve_exact(moov.buf.len() + mdat_header_len as usize);
    head.extend_from_slice(&moov.buf);
    write_mdat_header(&mut head, payload);
    let len_bytes = head.len() as u64 + payload;
    Layout { head, chunks, len_bytes, segments, tracks, movie_dur }
}

/// What the file looks like, from the builder's counts alone.
#[derive(Debug, Clone)]
struct Plan {
    /// The file's tracks (those with samples) in file order (by key: video first), as indexes
    /// into the builder's tracks.
    order: Vec<usize>,
    /// Per track of `order`.
    edits: Vec<Edit>,
    /// `mvhd` duration, [`MOVIE_TIMESCALE`] ticks.
    movie_dur: u64,
    /// Bytes of `mdat` payload.
    payload: u64,
    /// `ftyp` + `moov` + `mdat` header, bytes.
    head_len: u64,
}

/// Running counts of one output track that decide the size of its boxes (ISO/IEC 14496-12
/// §8.5–8.7) and its edit list (§8.6.6), updated sample by sample as segments come so that a
/// summary never walks the samples again.
///
/// Durations are counted for every sample but the last (the *timed* samples): the last one's is
/// provisional until the next segment of the track sets it, or [`Track::finish`] at the end. So
/// the final figures are the timed counts plus the last sample with its final duration
/// ([`TrackStats::totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TrackStats {
    /// Samples counted: all of the track's.
    samples: usize,
    /// Samples whose duration is counted: all but the last.
    timed: usize,
    /// Runs of equal durations over the timed samples (`stts` entries, §8.6.1.2).
    stts: RunCount<u32>,
    /// Sum of the timed samples' durations, track timescale ticks.
    timed_dur: u64,
    /// Max over the timed samples of DTS + composition offset + duration (the end of its
    /// presentation), track timescale ticks, DTS counted as [`Track::first_dts`] + the durations
    /// before it; `None` while no sample is timed.
    timed_pres_end: Option<i64>,
    /// Runs of equal composition offsets over all samples (`ctts` entries, §8.6.1.3).
    ctts: RunCount<i32>,
    /// Some composition offset is not 0: `ctts` is written.
    any_cts: bool,
    /// Sync samples (`stss` entries when some sample is not sync, §8.6.2).
    sync: u64,
    /// Some sample's size differs from the first's: `stsz` has a table (§8.7.3.2).
    sizes_differ: bool,
    /// Runs of equal (samples per chunk, sample description index) (`stsc` entries, §8.7.4).
    stsc: RunCount<(u32, u32)>,
    /// Chunks counted ([`Track::chunks`]; `stco`/`co64` entries, §8.7.5).
    chunks: usize,
    /// Sample entries counted and their total size in bytes (`stsd`, §8.5.2).
    entries: usize,
    entries_len: u64,
    /// Bytes of `mdat` payload of the track's chunks.
    payload: u64,
}

/// Number of runs of equal values in a sequence, and its last value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RunCount<T> {
    runs: u64,
    last: Option<T>,
}

impl<T: PartialEq + Copy> RunCount<T> {
    fn push(&mut self, v: T) {
        if self.last != Some(v) {
            self.runs += 1;
            self.last = Some(v);
        }
    }
}

/// The final figures of one track, its last sample's duration settled.
#[derive(Debug, Clone, Copy)]
struct TrackTotals {
    /// Sum of sample durations (the `mdhd` duration), track timescale ticks.
    media_dur: u64,
    span: Span,
    stbl: StblCounts,
}

impl TrackStats {
    /// Counts what `t` gained since the last call: O(new samples + new chunks + new entries).
    fn update(&mut self, t: &Track) {
        for s in &t.samples[self.samples..] {
            self.ctts.push(s.cts);
            self.any_cts |= s.cts != 0;
            self.sync += s.sync as u64;
            self.sizes_differ |= s.len != t.samples[0].len;
        }
        self.samples = t.samples.len();
        // Every sample but the last now has its final duration.
        let timed = self.samples.saturating_sub(1);
        for s in &t.samples[self.timed..timed] {
            let dts = t.first_dts + self.timed_dur as i64;
            let end = dts + s.cts as i64 + s.dur as i64;
            self.timed_pres_end = Some(self.timed_pres_end.map_or(end, |e| e.max(end)));
            self.stts.push(s.dur);
            self.timed_dur += s.dur as u64;
        }
        self.timed = timed;
        for &c in &t.chunks[self.chunks..] {
            self.stsc.push(c);
        }
        self.chunks = t.chunks.len();
        self.entries_len += t.entries[self.entries..].iter().map(|e| e.len() as u64).sum::<u64>();
        self.entries = t.entries.len();
    }

    /// The final figures of `t` (which has samples and whose changes are all counted), as if
    /// [`Track::finish`] had run: O(1), reading only its last two samples.
    fn totals(&self, t: &Track) -> TrackTotals {
        let last = *t.samples.last().expect("a track with samples");
        let last_dur = t.final_last_dur();
        let dts = t.first_dts + self.timed_dur as i64;
        let end = dts + last.cts as i64 + last_dur as i64;
        TrackTotals {
            media_dur: self.timed_dur + last_dur as u64,
            span: Span {
                timescale: t.timescale,
                first_dts: t.first_dts,
                min_pts: t.min_pts,
                pres_end: self.timed_pres_end.map_or(end, |e| e.max(end)),
            },
            stbl: StblCounts {
                entries: self.entries as u64,
                entries_len: self.entries_len,
                // The last duration continues the run of the timed ones or starts a new one.
                stts_runs: self.stts.runs + (self.stts.last != Some(last_dur)) as u64,
                ctts_runs: self.any_cts.then_some(self.ctts.runs),
                stss: (self.sync < self.samples as u64).then_some(self.sync),
                samples: self.samples as u64,
                stsz_uniform: !self.sizes_differ,
                stsc_runs: self.stsc.runs,
                chunks: self.chunks as u64,
            },
        }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The duration, in timescale ticks, that [`Track::finish`] gives the last sample: its own
    /// when the source gave one, else [`Track::nominal_dur`].
    fn final_last_dur(&self) -> u32 {
        match self.samples.last() {
            Some(s) if self.last_dur_known => s.dur,
            _ => self.nominal_dur(),
        }
    }

    /// Settles the last sample's duration: the file ends here.
    fn finish(&mut self) {
        let d = self.final_last_dur();
        if let Some(s) = self.samples.last_mut() {
            s.dur = d;
        }
    }

    /// What [`Timeline::add_segment`] may change, to put it back with [`Track::rewind`].
    fn mark(&self) -> TrackMark {
        TrackMark {
            samples: self.samples.len(),
            last_dur: self.samples.last().map(|s| s.dur),
            entries: self.entries.len(),
            chunks: self.chunks.len(),
            runs: self.runs.len(),
            first_dts: self.first_dts,
            last_dts: self.last_dts,
            last_src: self.last_src,
            last_dur_known: self.last_dur_known,
            min_pts: self.min_pts,
        }
    }

    /// Puts the track back as it was at `m`: drops what came since, restores the last sample's
    /// provisional duration. O(samples dropped).
    fn rewind(&mut self, m: &TrackMark) {
        self.samples.truncate(m.samples);
        if let (Some(s), Some(d)) = (self.samples.last_mut(), m.last_dur) {
            s.dur = d;
        }
        self.entries.truncate(m.entries);
        self.chunks.truncate(m.chunks);
        self.runs.truncate(m.runs);
        self.first_dts = m.first_dts;
        self.last_dts = m.last_dts;
        self.last_src = m.last_src;
        self.last_dur_known = m.last_dur_known;
        self.min_pts = m.min_pts;
    }

    /// Sum of sample durations, timescale ticks.
    pub fn media_dur(&self) -> u64 {
        self.samples.iter().map(|s| s.dur as u64).sum()
    }
}

/// A [`Track`] as it was before a segment: its lengths and running values ([`Track::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TrackMark {
    samples: usize,
    /// Duration of the last sample, ticks (provisional, changed when the next segment comes).
    last_dur: Option<u32>,
    entries: usize,
    chunks: usize,
    runs: usize,
    first_dts: i64,
    last_dts: i64,
    last_src: i64,
    last_dur_known: bool,
    min_pts: i64,
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
                t.min_pts = t.min_pts.min(out.saturating_add(cts as i64));
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
                    out = out.saturating_add(dur);
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

impl Edit {
    /// Entries of the `elst`: an empty edit first when the track starts later than the movie.
    fn entries(&self) -> u32 {
        (self.empty > 0) as u32 + 1
    }

    /// Whether the `elst` needs version 1 (64-bit durations and media times, §8.6.6.2).
    fn long(&self) -> bool {
        self.empty > u32::MAX as u64 || self.media_movie_dur > u32::MAX as u64 || self.media_time > i32::MAX as i64
    }
}

/// What the edit list of one track depends on; track timescale ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    /// Ticks per second of the other fields.
    timescale: u32,
    /// [`Track::first_dts`].
    first_dts: i64,
    /// [`Track::min_pts`].
    min_pts: i64,
    /// End of the last presented sample: max over samples of DTS + composition offset +
    /// duration, the DTS counted from `first_dts` by durations.
    pres_end: i64,
}

/// Aligns tracks: movie time 0 is the earliest first presentation time of any track; a track
/// that starts later gets an empty edit; B-frame delay (first PTS > first DTS) is hidden by the
/// media edit's `media_time`. One [`Edit`] per span, O(tracks).
fn edits(spans: &[Span]) -> Vec<Edit> {
    let start_ns: Vec<i128> = spans.iter().map(|t| to_ns(t.first_dts.max(t.min_pts), t.timescale)).collect();
    let movie_start = *start_ns.iter().min().expect("tracks");
    spans
        .iter()
        .zip(&start_ns)
        .map(|(t, &s)| {
            let media_time = (t.min_pts - t.first_dts).max(0);
            // Presentation span: from the first presented instant to the end of the last
            // presented sample (PTS order), not the decode span.
            let media_dur = t.pres_end - t.first_dts.max(t.min_pts);
            Edit {
                empty: from_ns(s - movie_start, MOVIE_TIMESCALE).max(0) as u64,
                media_time,
                media_movie_dur: rescale(media_dur.max(0), t.timescale, MOVIE_TIMESCALE) as u64,
            }
        })
        .collect()
}

/// Compatible brands of `ftyp` (§4.3).
const FTYP_BRANDS: [&[u8; 4]; 4] = [b"isom", b"iso2", b"avc1", b"mp41"];

fn ftyp() -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(ftyp_len() as usize);
    w.start(b"ftyp");
    w.bytes(b"isom");
    w.u32(0x200);
    for b in FTYP_BRANDS {
        w.bytes(b);
    }
    w.end();
    w.finish()
}

/// Size of [`ftyp`]'s box in bytes: header, major brand, minor version, compatible brands.
fn ftyp_len() -> u64 {
    8 + 4 + 4 + 4 * FTYP_BRANDS.len() as u64
}

/// Size in bytes of the `mdat` header (§8.1.1, §4.2) before `payload` bytes: 8, or 16 with a
/// 64-bit largesize when the box passes 4 GiB − 1.
fn mdat_header_len(payload: u64) -> u64 {
    if payload + 8 > u32::MAX as u64 { 16 } else { 8 }
}

/// Appends the `mdat` header for `payload` bytes of payload ([`mdat_header_len`] bytes).
fn write_mdat_header(out: &mut Vec<u8>, payload: u64) {
    if mdat_header_len(payload) == 16 {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
    }
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
    write_edts(w, e);
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

/// Size in bytes of the `trak` that [`write_trak`] writes for a track of `kind` with final
/// figures `x` and edit list `e`: the sum of its boxes' sizes, each from its own `*_len`.
fn trak_len(kind: TrackKind, x: &TrackTotals, e: &Edit, co64: bool) -> u64 {
    let minf = 8 + minf_header_len(kind) + stbl_len(&x.stbl, co64);
    let mdia = 8 + mdhd_len(x.media_dur) + hdlr_len(kind) + minf;
    8 + tkhd_len(e.empty + e.media_movie_dur) + edts_len(e) + mdia
}

/// Writes `edts`/`elst` (ISO/IEC 14496-12 §8.6.5–8.6.6): an empty edit (media_time −1) when the
/// track starts later than the movie, then the media edit; movie timescale durations, media
/// timescale media_time; version 1 when a field needs 64 bits.
fn write_edts(w: &mut BoxWriter, e: &Edit) {
    w.start(b"edts");
    let long = e.long();
    w.start_full(b"elst", long as u8, 0);
    w.u32(e.entries());
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
}

/// Size of [`write_edts`]'s boxes in bytes: `edts` header, `elst` FullBox header and count, then
/// per entry segment_duration and media_time (8 or 16 bytes) and media_rate (4).
fn edts_len(e: &Edit) -> u64 {
    let entry = if e.long() { 8 + 8 + 4 } else { 4 + 4 + 4 };
    8 + 12 + 4 + e.entries() as u64 * entry
}

/// Whether a duration needs the version 1 (64-bit) form of `mvhd`/`tkhd`/`mdhd`.
fn long_dur(dur: u64) -> bool {
    dur > u32::MAX as u64
}

/// Writes `mvhd` (ISO/IEC 14496-12 §8.2.2; version 1 when `dur` needs 64 bits), timescale
/// [`MOVIE_TIMESCALE`]; `dur` 0 means unknown (fragmented files).
pub(super) fn write_mvhd(w: &mut BoxWriter, dur: u64, next_track_id: u32) {
    let long = long_dur(dur);
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

/// Size of [`write_mvhd`]'s box in bytes for duration `dur`: 108, or 120 in version 1. After the
/// times: rate 4, volume 2, reserved 10, matrix 36, pre_defined 24, next_track_ID 4.
fn mvhd_len(dur: u64) -> u64 {
    12 + times_len(long_dur(dur), false) + 4 + 2 + 10 + 36 + 24 + 4
}

/// Writes `tkhd` (§8.3.2; in movie): duration `dur` in movie timescale ticks, the track's
/// matrix and display size. A track alone of its kind is enabled with no alternate group; of
/// several tracks of one kind (two audio languages) all share an alternate group (1 audio,
/// 2 video) and only the first is enabled, so a player plays one at a time (as FFmpeg's
/// `movenc` writes them).
pub(super) fn write_tkhd(w: &mut BoxWriter, t: &Track, track_id: u32, dur: u64) {
    let long = long_dur(dur);
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

/// Size of [`write_tkhd`]'s box in bytes for duration `dur` (movie timescale): 92, or 104 in
/// version 1. After the times: reserved 8, layer, alternate_group, volume, reserved (2 each),
/// matrix 36, width 4, height 4.
fn tkhd_len(dur: u64) -> u64 {
    12 + times_len(long_dur(dur), true) + 8 + 2 + 2 + 2 + 2 + 36 + 4 + 4
}

/// Writes `mdhd` (§8.4.2): `dur` in `timescale` ticks and the ISO 639-2/T `language`
/// (`und` when it is not three lower-case letters).
pub(super) fn write_mdhd(w: &mut BoxWriter, timescale: u32, dur: u64, language: [u8; 3]) {
    let long = long_dur(dur);
    w.start_full(b"mdhd", long as u8, 0);
    write_times(w, long, timescale, None, dur);
    w.u16(packed_language(language));
    w.u16(0);
    w.end();
}

/// Size of [`write_mdhd`]'s box in bytes for duration `dur` (media timescale): 32, or 44 in
/// version 1. After the times: language 2, pre_defined 2.
fn mdhd_len(dur: u64) -> u64 {
    12 + times_len(long_dur(dur), false) + 2 + 2
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

/// Size of [`write_times`]'s fields in bytes.
fn times_len(long: bool, reserved: bool) -> u64 {
    let time = if long { 8 } else { 4 };
    3 * time + 4 + if reserved { 4 } else { 0 }
}

/// `hdlr` handler_type and name (a null-terminated string) of a track of `kind`.
fn handler(kind: TrackKind) -> (&'static [u8; 4], &'static [u8]) {
    match kind {
        TrackKind::Video => (b"vide", b"VideoHandler\0"),
        TrackKind::Audio => (b"soun", b"SoundHandler\0"),
    }
}

/// Writes `hdlr` (ISO/IEC 14496-12 §8.4.3) for a track of `kind`.
pub(super) fn write_hdlr(w: &mut BoxWriter, kind: TrackKind) {
    w.start_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    let (handler, name) = handler(kind);
    w.bytes(handler);
    w.zeros(12);
    w.bytes(name);
    w.end();
}

/// Size of [`write_hdlr`]'s box in bytes: FullBox header, pre_defined 4, handler_type 4,
/// reserved 12, name.
fn hdlr_len(kind: TrackKind) -> u64 {
    12 + 4 + 4 + 12 + handler(kind).1.len() as u64
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

/// Size of [`write_minf_header`]'s boxes in bytes: `vmhd` (graphicsmode + opcolor, 8) or `smhd`
/// (balance + reserved, 4), then `dinf` holding `dref` (entry_count) with an empty `url `.
fn minf_header_len(kind: TrackKind) -> u64 {
    let media_header = match kind {
        TrackKind::Video => 12 + 8,
        TrackKind::Audio => 12 + 4,
    };
    media_header + 8 + (12 + 4 + 12)
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

/// What decides the size of a track's `stbl` (ISO/IEC 14496-12 §8.5.1) as [`write_stbl`]
/// writes it: counts of entries of each table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StblCounts {
    /// `stsd` entries (§8.5.2) and their total size in bytes.
    entries: u64,
    entries_len: u64,
    /// `stts` entries (§8.6.1.2): runs of equal durations.
    stts_runs: u64,
    /// `ctts` entries (§8.6.1.3): runs of equal composition offsets; `None` when every offset is
    /// 0 (no box; the version, 1 for negative offsets, does not change the size).
    ctts_runs: Option<u64>,
    /// `stss` entries (§8.6.2): sync samples; `None` when every sample is sync (no box).
    stss: Option<u64>,
    /// Samples (`stsz` sample_count, §8.7.3.2).
    samples: u64,
    /// Every sample has the first one's size: `stsz` has no table.
    stsz_uniform: bool,
    /// `stsc` entries (§8.7.4): runs of equal (samples per chunk, sample description index).
    stsc_runs: u64,
    /// Chunks (`stco`/`co64` entries, §8.7.5).
    chunks: u64,
}

/// Size in bytes of the `stbl` that [`write_stbl`] writes for a track with counts `c`. Each box
/// is a FullBox header (12) and an entry count (4) — `stsz` has sample_size and sample_count
/// (8) — then its entries: `stts`/`ctts` 8, `stss` 4, `stsz` 4 (when sizes differ), `stsc` 12,
/// `stco` 4 or `co64` 8 bytes each.
fn stbl_len(c: &StblCounts, co64: bool) -> u64 {
    let table = |entries: u64, entry_len: u64| 12 + 4 + entries * entry_len;
    let stsd = table(0, 0) + c.entries_len;
    let stsz = 12 + 8 + if c.stsz_uniform { 0 } else { 4 * c.samples };
    8 + stsd
        + table(c.stts_runs, 8)
        + c.ctts_runs.map_or(0, |n| table(n, 8))
        + c.stss.map_or(0, |n| table(n, 4))
        + stsz
        + table(c.stsc_runs, 12)
        + table(c.chunks, if co64 { 8 } else { 4 })
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

    /// Fuzzing found (sample_index): a stored index whose decode times run up to i64::MAX made
    /// the layout's running output time overflow; it saturates now (the file is nonsense, but no
    /// panic reaches the server).
    #[test]
    fn fuzz_decode_times_near_i64_max_do_not_overflow() {
        let b = include_bytes!("../testdata/fuzz_index_layout-dts-overflow");
        if let Ok(idx) = crate::index::SegmentIndex::decode(b) {
            let idx = Arc::new(idx);
            for join_before in [false, true] {
                let one = SegmentInput { index: idx.clone(), join_before: false };
                let _ = Layout::build(&[one.clone(), SegmentInput { index: idx.clone(), join_before }]);
            }
        }
    }

    /// `Layout::build` as it was before [`LayoutBuilder`]: every segment through the timeline,
    /// then the whole `moov` written (twice when it turns out to need `co64`), edit lists from a
    /// walk over every sample ([`reference_edits`]). Kept verbatim as the reference that the
    /// builder must match byte for byte.
    fn reference_build(segments: &[SegmentInput]) -> Result<Layout, LayoutError> {
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
                        src_off: 0,
                    });
                    payload += c.len_bytes;
                }
            }
        }

        let ftyp = ftyp();
        let mdat_hdr_len: u64 = if payload + 8 > u32::MAX as u64 { 16 } else { 8 };
        let edits: Vec<Edit> = reference_edits(&tracks);
        let movie_dur = edits.iter().map(|e| e.empty + e.media_movie_dur).max().unwrap_or(0);
        let mut moov = write_moov(&tracks, &edits, movie_dur, false);
        let co64 = (ftyp.len() + moov.buf.len()) as u64 + mdat_hdr_len + payload > u32::MAX as u64;
        if co64 {
            moov = write_moov(&tracks, &edits, movie_dur, true);
        }
        let base = (ftyp.len() + moov.buf.len()) as u64 + mdat_hdr_len;

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

    /// The edit lists as they were computed before [`TrackStats`]: from a walk over every sample.
    fn reference_edits(tracks: &[Track]) -> Vec<Edit> {
        let start_ns: Vec<i128> = tracks.iter().map(|t| to_ns(t.first_dts.max(t.min_pts), t.timescale)).collect();
        let movie_start = *start_ns.iter().min().expect("tracks");
        tracks
            .iter()
            .zip(&start_ns)
            .map(|(t, &s)| {
                let media_time = (t.min_pts - t.first_dts).max(0);
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

    /// Asserts that two layouts are the same file: head bytes, chunk map, length, duration,
    /// tracks and segments.
    #[track_caller]
    fn assert_same_layout(a: &Layout, b: &Layout, what: &str) {
        assert!(a.head == b.head, "{what}: heads differ ({} vs {} bytes)", a.head.len(), b.head.len());
        assert!(a.chunks == b.chunks, "{what}: chunks differ");
        assert_eq!(a.len_bytes, b.len_bytes, "{what}: len_bytes");
        assert_eq!(a.movie_dur, b.movie_dur, "{what}: movie_dur");
        assert!(a.tracks == b.tracks, "{what}: tracks differ");
        assert_eq!(a.segments.len(), b.segments.len(), "{what}: segments");
        assert!(a.segments.iter().zip(&b.segments).all(|(x, y)| Arc::ptr_eq(x, y)), "{what}: segments differ");
    }

    /// Asserts that a summary gives the figures of a layout.
    #[track_caller]
    fn assert_summary_of(s: &LayoutSummary, l: &Layout, what: &str) {
        let expect = LayoutSummary {
            len_bytes: l.len_bytes,
            head_len_bytes: l.head.len() as u64,
            movie_dur: l.movie_dur,
            codecs: l.codecs(),
        };
        assert_eq!(*s, expect, "{what}");
    }

    /// Asserts that two builders are in the same state (all but what `undo` would take back).
    #[track_caller]
    fn assert_same_state(a: &LayoutBuilder, b: &LayoutBuilder, what: &str) {
        assert_eq!(a.tl, b.tl, "{what}: timeline");
        assert!(a.tracks == b.tracks, "{what}: tracks differ");
        assert_eq!(a.stats, b.stats, "{what}: stats");
        assert_eq!(a.chunks, b.chunks, "{what}: chunks");
        assert_eq!(a.segments.len(), b.segments.len(), "{what}: segments");
    }

    /// Pushes `segs` one by one; after every push checks the summary and the layout against
    /// [`reference_build`] of the prefix, then that an undo and the same push again change
    /// nothing. Returns the layout of all of them.
    fn built(segs: &[SegmentInput]) -> Layout {
        let mut b = LayoutBuilder::new();
        for (i, seg) in segs.iter().enumerate() {
            b.push(seg.clone()).unwrap();
            let what = format!("prefix of {}", i + 1);
            let reference = reference_build(&segs[..=i]).unwrap();
            assert_summary_of(&b.summary().unwrap(), &reference, &what);
            assert_same_layout(&b.layout().unwrap(), &reference, &what);
        }
        let l = Layout::build(segs).unwrap();
        assert_same_layout(&l, &b.layout().unwrap(), "Layout::build");
        l
    }

    /// A synthetic segment: `n` video samples of `len` bytes, 3000-tick (1/30 s) spacing from
    /// `dts0`, one chunk; plus AAC audio 1024-tick frames from `adts0` (48 kHz).
    pub(super) fn seg(dts0: i64, n: u32, len: u32, adts0: i64, origin: Option<u64>) -> SegmentInput {
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
        let l = built(&[seg(0, 60, 100, 0, None), seg(180_000, 60, 100, 96_000, None)]);
        assert!(durations(&l).iter().all(|&d| d == 3000), "{:?}", durations(&l));
        assert_eq!(l.len_bytes, l.head.len() as u64 + l.chunks.iter().map(|c| c.len_bytes).sum::<u64>());
        assert_eq!(l.chunks[0].out_start, l.head.len() as u64);
    }

    #[test]
    fn restart_and_gap_are_joined_without_bad_durations() {
        // second segment restarts at 0 (discontinuity), third jumps 10 s ahead (gap)
        let l = built(&[
            seg(900_000, 60, 100, 480_000, None),
            seg(0, 60, 100, 0, None),
            seg(180_000 + 900_000, 60, 100, 96_000 + 480_000, None),
        ]);
        let d = durations(&l);
        assert_eq!(d.len(), 180);
        assert!(d.iter().all(|&d| (3000..=6000).contains(&d)), "{d:?}");
    }

    #[test]
    fn pts_wrap_between_segments_is_continuous() {
        let wrap = 1u64 << 33;
        let l = built(&[seg(0, 60, 100, 0, Some(wrap - 90_000)), seg(0, 60, 100, 0, Some(90_000))]);
        assert!(durations(&l).iter().all(|&d| d == 3000));
    }

    #[test]
    fn co64_and_largesize_past_4_gib() {
        // 2000 segments of 60 samples × 40 000 bytes = 4.8 GB of payload.
        let segs: Vec<_> = (0..2000).map(|i| seg(i * 180_000, 60, 40_000, i * 96_000, None)).collect();
        // Through the builder: where the file passes 4 GiB (stco → co64) and where the mdat
        // passes 4 GiB (largesize), the summary's arithmetic is checked against the written
        // head on both sides of the switch (the side before by undoing the push).
        let mut b = LayoutBuilder::new();
        let switches =
            |s: &LayoutSummary| (s.len_bytes > u32::MAX as u64, s.len_bytes - s.head_len_bytes + 8 > u32::MAX as u64);
        let mut prev: Option<LayoutSummary> = None;
        let mut checked = 0;
        for (i, s) in segs.iter().enumerate() {
            b.push(s.clone()).unwrap();
            let sum = b.summary().unwrap();
            if let Some(p) = &prev
                && switches(p) != switches(&sum)
            {
                assert!(b.undo());
                assert_eq!(b.summary().unwrap(), *p);
                let before = b.layout().unwrap();
                assert_summary_of(p, &before, "before the switch");
                assert_same_layout(&before, &reference_build(&segs[..i]).unwrap(), "before the switch");
                b.push(s.clone()).unwrap();
                let after = b.layout().unwrap();
                assert_summary_of(&sum, &after, "after the switch");
                assert_same_layout(&after, &reference_build(&segs[..=i]).unwrap(), "after the switch");
                checked += 1;
            }
            prev = Some(sum);
        }
        assert!(checked >= 1);
        let l = Layout::build(&segs).unwrap();
        assert_summary_of(&b.summary().unwrap(), &l, "2000 segments");
        assert_same_layout(&l, &reference_build(&segs).unwrap(), "2000 segments");
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

    /// `s` with its video samples resized to `sizes` (one chunk, as many samples as sizes).
    fn with_video_sizes(s: &SegmentInput, sizes: &[u32]) -> SegmentInput {
        let mut idx = (*s.index).clone();
        let v = &mut idx.tracks[0];
        v.samples.truncate(sizes.len());
        for (x, &len) in v.samples.iter_mut().zip(sizes) {
            x.len_bytes = len;
        }
        v.chunks[0].samples = sizes.len() as u32;
        v.chunks[0].len_bytes = sizes.iter().map(|&l| l as u64).sum();
        SegmentInput { index: Arc::new(idx), join_before: s.join_before }
    }

    /// The `stco`/`co64` and `mdat` size switches at their exact boundaries: a file of exactly
    /// 4 GiB − 1 bytes keeps `stco`, one byte more takes `co64` although its `mdat` still fits a
    /// 32-bit size (so the head counts in the choice), and the `mdat` takes a largesize when it
    /// passes 4 GiB − 1 itself. The last segment is retried at one position with `undo`.
    #[test]
    fn co64_and_largesize_switch_at_the_exact_boundaries() {
        let mut segs: Vec<SegmentInput> = (0..1780).map(|i| seg(i * 180_000, 60, 40_000, i * 96_000, None)).collect();
        let mut b = LayoutBuilder::new();
        for s in &segs {
            b.push(s.clone()).unwrap();
        }
        let last = seg(1780 * 180_000, 60, 0, 1780 * 96_000, None);
        // Sizes of the last segment's video samples: the first one `a`, the others fixed; the
        // head does not depend on `a` (the sizes differ either way: `stsz` has a table).
        let sizes = |a: u32| std::iter::once(a).chain(std::iter::repeat_n(300_000, 59)).collect::<Vec<_>>();
        b.push(with_video_sizes(&last, &sizes(1000))).unwrap();
        let probe = b.summary().unwrap();
        assert!(probe.len_bytes < u32::MAX as u64);
        assert!(b.undo());
        let rest = probe.len_bytes - 1000; // file length without the first sample's bytes
        let stco_head = probe.head_len_bytes;
        let u32_max = u32::MAX as u64;
        let cases = [
            (u32_max - rest, false, 8),                     // file = 4 GiB − 1
            (u32_max - rest + 1, true, 8),                  // file = 4 GiB, mdat still fits 32 bits
            (u32_max - rest + stco_head - 8, true, 8),      // mdat = 4 GiB − 1
            (u32_max - rest + stco_head - 8 + 1, true, 16), // mdat = 4 GiB: largesize
        ];
        for (a, co64, mdat_header) in cases {
            segs.push(with_video_sizes(&last, &sizes(a as u32)));
            b.push(segs[1780].clone()).unwrap();
            let s = b.summary().unwrap();
            let l = b.layout().unwrap();
            let what = format!("first sample {a} bytes, file {} bytes", s.len_bytes);
            assert_summary_of(&s, &l, &what);
            assert_same_layout(&l, &reference_build(&segs).unwrap(), &what);
            segs.pop();
            assert_eq!(l.head.windows(4).any(|w| w == b"co64"), co64, "{what}");
            assert_eq!(l.head.windows(4).any(|w| w == b"stco"), !co64, "{what}");
            assert_eq!(mdat_header_len(l.len_bytes - l.head.len() as u64), mdat_header, "{what}");
            assert!(b.undo());
        }
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

    /// The segments of a fixture playlist as import reads them (`src/import.rs`): `.ts` indexed
    /// with parameter sets carried from segment to segment, `.m4s` with their `EXT-X-MAP` init
    /// segment; `join_before` from `#EXT-X-DISCONTINUITY`, or an `#EXT-X-GAP` or missing entry
    /// before.
    fn fixture_segments(dir: &std::path::Path) -> Vec<SegmentInput> {
        let pl = crate::m3u8::parse(&std::fs::read(dir.join("index.m3u8")).unwrap()).unwrap();
        let mut inits = std::collections::HashMap::new();
        let mut carry = crate::index::ParamCarry::default();
        let mut join_next = false;
        let mut out = Vec::new();
        for s in &pl.segments {
            let Ok(data) = std::fs::read(dir.join(&s.uri)) else {
                join_next = true;
                continue;
            };
            if s.gap {
                join_next = true;
                continue;
            }
            let index = match &s.map_uri {
                Some(map) => {
                    let init = inits
                        .entry(map.clone())
                        .or_insert_with(|| crate::fmp4::parse_init(&std::fs::read(dir.join(map)).unwrap()).unwrap());
                    crate::fmp4::index_segment(init, &data).unwrap()
                }
                None => crate::ts::index_segment_with(&data, &mut carry).unwrap().index,
            };
            out.push(SegmentInput { index: Arc::new(index), join_before: join_next || s.discontinuity });
            join_next = false;
        }
        out
    }

    /// Every fixture playlist, every prefix: the builder's summary gives the figures of the
    /// layout, and its layout is byte for byte [`reference_build`]'s and `Layout::build`'s;
    /// undoing the push and pushing again change nothing.
    #[test]
    fn every_fixture_prefix_matches_the_reference() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/sets"));
        let mut dirs: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("index.m3u8").exists())
            .collect();
        dirs.sort();
        assert!(dirs.len() >= 20, "{} fixture playlists", dirs.len());
        let (mut playlists, mut checks) = (0, 0);
        for dir in &dirs {
            let name = dir.file_name().unwrap().to_string_lossy();
            let segs = fixture_segments(dir);
            assert!(!segs.is_empty(), "{name}");
            let mut b = LayoutBuilder::new();
            for i in 0..segs.len() {
                let what = format!("{name}, prefix of {}", i + 1);
                let before = (b.summary(), b.clone());
                b.push(segs[i].clone()).unwrap();
                let summary = b.summary().unwrap();
                let layout = b.layout().unwrap();
                let reference = reference_build(&segs[..=i]).unwrap();
                assert_summary_of(&summary, &reference, &what);
                assert_same_layout(&layout, &reference, &what);
                assert_same_layout(&Layout::build(&segs[..=i]).unwrap(), &reference, &what);

                assert!(b.undo(), "{what}");
                assert!(!b.undo(), "{what}: one level");
                assert_eq!(b.summary(), before.0, "{what}: undone");
                assert_same_state(&b, &before.1, &format!("{what}: undone"));
                b.push(segs[i].clone()).unwrap();
                assert_eq!(b.summary().unwrap(), summary, "{what}: pushed again");
                assert_same_layout(&b.layout().unwrap(), &layout, &format!("{what}: pushed again"));
                checks += 1;
            }
            playlists += 1;
        }
        eprintln!("{checks} (playlist, prefix) checks over {playlists} playlists");
    }

    /// A copy of `s` whose first video track has another codec.
    fn with_h265_video(s: &SegmentInput) -> SegmentInput {
        let mut idx = (*s.index).clone();
        idx.tracks[0].config.codec = Codec::H265;
        SegmentInput { index: Arc::new(idx), join_before: s.join_before }
    }

    /// Undo takes back exactly the last successful push, one level deep; a failed push (codec
    /// change) changes nothing, so an undo after it takes back the push before it.
    #[test]
    fn undo_restores_the_state_before_the_push() {
        let (a, b_seg, c) = (seg(0, 60, 100, 0, None), seg(180_000, 60, 100, 96_000, None), seg(0, 30, 90, 0, None));
        let mut b = LayoutBuilder::new();
        assert!(!b.undo(), "nothing pushed");
        assert_eq!(b.summary(), Err(LayoutError::Empty));
        b.push(a.clone()).unwrap();
        let (s1, l1, state1) = (b.summary().unwrap(), b.layout().unwrap(), b.clone());

        // Push, undo: as before; push again: as the first time.
        b.push(b_seg.clone()).unwrap();
        let (s2, l2) = (b.summary().unwrap(), b.layout().unwrap());
        assert!(b.undo());
        assert_eq!(b.len(), 1);
        assert_eq!(b.summary().unwrap(), s1);
        assert_same_layout(&b.layout().unwrap(), &l1, "undone");
        assert_same_state(&b, &state1, "undone");
        assert!(!b.undo(), "one level");
        assert_eq!(b.len(), 1);
        b.push(b_seg.clone()).unwrap();
        assert_eq!(b.summary().unwrap(), s2);
        assert_same_layout(&b.layout().unwrap(), &l2, "pushed again");

        // A failed push leaves everything as it was, what undo takes back included.
        let state2 = b.clone();
        let err = b.push(with_h265_video(&c)).unwrap_err();
        assert_eq!(
            err,
            LayoutError::CodecChange { kind: TrackKind::Video, from: Codec::H264, to: Codec::H265, segment: 2 }
        );
        assert_eq!(b.len(), 2);
        assert_same_state(&b, &state2, "failed push");
        assert_eq!(b.summary().unwrap(), s2);
        assert!(b.undo(), "takes back the last successful push");
        assert_eq!(b.summary().unwrap(), s1);
        assert_same_state(&b, &state1, "undone after a failed push");
        // After an undo, a failed push leaves nothing to take back.
        assert!(b.push(with_h265_video(&c)).is_err());
        assert!(!b.undo());
        assert_eq!(b.summary().unwrap(), s1);

        // Undoing the first push leaves an empty builder, with no track left.
        let mut first = LayoutBuilder::new();
        first.push(a).unwrap();
        assert!(first.undo());
        assert!(first.is_empty() && first.tracks.is_empty());
        assert_eq!(first.summary(), Err(LayoutError::Empty));
        assert_eq!(Layout::build(&[]).unwrap_err(), LayoutError::Empty);
    }

    /// A copy of `s` with only the tracks `keep` says yes to; `empty` tracks lose their samples
    /// and chunks but stay (a segment where a stream sends nothing).
    fn reshaped(
        s: &SegmentInput,
        keep: impl Fn(&TrackIndex) -> bool,
        empty: impl Fn(&TrackIndex) -> bool,
    ) -> SegmentInput {
        let mut idx = (*s.index).clone();
        idx.tracks.retain(|t| keep(t));
        for t in idx.tracks.iter_mut().filter(|t| empty(t)) {
            t.samples.clear();
            t.chunks.clear();
        }
        SegmentInput { index: Arc::new(idx), join_before: s.join_before }
    }

    /// Tracks that have no samples yet, appear later or have no samples in some segment: the
    /// builder's track order (first seen) is not the file's (by key), and a layout with no
    /// samples yet is `Empty`.
    #[test]
    fn tracks_appearing_late_or_empty() {
        let is_video = |t: &TrackIndex| t.kind() == TrackKind::Video;
        let base = |i: i64| seg(i * 180_000, 60, 100 + i as u32, i * 96_000, None);
        let segs = [
            reshaped(&base(0), |_| true, |_| true),          // both tracks, no samples
            reshaped(&base(1), |t| !is_video(t), |_| false), // audio only
            base(2),
            reshaped(&base(3), |_| true, |t| is_video(t)), // video track without samples
            base(4),
        ];
        let mut b = LayoutBuilder::new();
        b.push(segs[0].clone()).unwrap();
        assert_eq!(b.summary(), Err(LayoutError::Empty));
        assert_eq!(b.layout().unwrap_err(), LayoutError::Empty);
        assert_eq!(reference_build(&segs[..1]).unwrap_err(), LayoutError::Empty);
        built(&segs[1..]);
        // From the empty start too.
        for i in 1..segs.len() {
            b.push(segs[i].clone()).unwrap();
            let reference = reference_build(&segs[..=i]).unwrap();
            assert_summary_of(&b.summary().unwrap(), &reference, &format!("prefix of {}", i + 1));
            assert_same_layout(&b.layout().unwrap(), &reference, &format!("prefix of {}", i + 1));
        }
        // The audio track was seen first, yet the video track leads the file.
        let l = b.layout().unwrap();
        assert_eq!(l.tracks.iter().map(|t| t.key).collect::<Vec<_>>(), [(TrackKind::Video, 0), (TrackKind::Audio, 0)]);
    }

    /// `summary` costs O(tracks), not O(samples): it reads the running counts and each track's
    /// last two samples, nothing else. Shown by hollowing out a copy of a 2000-segment builder
    /// — every sample but the last two of each track, every chunk and segment gone — and getting
    /// the same summary from it, every 25 pushes. (`push` is O(its segment) by construction:
    /// [`TrackStats::update`] starts where the last call stopped, [`Timeline::add_segment`]
    /// walks only the new segment's samples.)
    #[test]
    fn summary_never_reads_earlier_samples() {
        let hollow = |b: &LayoutBuilder| {
            let mut h = b.clone();
            for t in &mut h.tracks {
                let n = t.samples.len();
                t.samples.drain(..n.saturating_sub(2));
                t.chunks.clear();
                t.runs.clear();
            }
            h.chunks.clear();
            h.segments.clear();
            h
        };
        let mut b = LayoutBuilder::new();
        for i in 0..2000 {
            b.push(seg(i * 180_000, 60, 100, i * 96_000, None)).unwrap();
            let s = b.summary().unwrap();
            // (Hollowing copies the builder: O(file), so not after every push.)
            if i % 25 == 0 || i == 1999 {
                assert_eq!(hollow(&b).summary().unwrap(), s, "after {} segments", i + 1);
            }
            // The running counts cover every sample but the last of each track.
            for (st, t) in b.stats.iter().zip(&b.tracks) {
                assert_eq!((st.samples, st.timed, st.chunks), (t.samples.len(), t.samples.len() - 1, t.chunks.len()));
            }
        }
        assert_summary_of(&b.summary().unwrap(), &b.layout().unwrap(), "2000 segments");
    }

    /// [`StblCounts`] of a finished track, counted the slow way: a walk over its samples.
    fn scanned_counts(t: &Track) -> StblCounts {
        let n = t.samples.len() as u64;
        StblCounts {
            entries: t.entries.len() as u64,
            entries_len: t.entries.iter().map(|e| e.len() as u64).sum(),
            stts_runs: run_lengths(t.samples.iter().map(|s| s.dur)).len() as u64,
            ctts_runs: t
                .samples
                .iter()
                .any(|s| s.cts != 0)
                .then(|| run_lengths(t.samples.iter().map(|s| s.cts)).len() as u64),
            stss: t.samples.iter().any(|s| !s.sync).then(|| t.samples.iter().filter(|s| s.sync).count() as u64),
            samples: n,
            stsz_uniform: t.samples.iter().all(|s| s.len == t.samples[0].len),
            stsc_runs: run_lengths(t.chunks.iter().copied()).len() as u64,
            chunks: t.chunks.len() as u64,
        }
    }

    /// The `*_len` functions agree with the writers they stand beside, for both versions of
    /// every box whose size depends on one, and the running counts agree with a walk over the
    /// samples.
    #[test]
    fn box_lengths_match_the_writers() {
        let written = |f: &dyn Fn(&mut BoxWriter)| {
            let mut w = BoxWriter::new();
            f(&mut w);
            w.buf.len() as u64
        };
        assert_eq!(ftyp().len() as u64, ftyp_len());
        for payload in [0, u32::MAX as u64 - 8, u32::MAX as u64 - 7, 5 << 30] {
            let mut h = Vec::new();
            write_mdat_header(&mut h, payload);
            assert_eq!(h.len() as u64, mdat_header_len(payload), "mdat header for {payload}");
        }
        let b = built(&[seg(0, 60, 100, 0, None)]);
        let t = &b.tracks[0];
        for dur in [0, u32::MAX as u64, u32::MAX as u64 + 1] {
            assert_eq!(written(&|w| write_mvhd(w, dur, 3)), mvhd_len(dur), "mvhd {dur}");
            assert_eq!(written(&|w| write_tkhd(w, t, 1, dur)), tkhd_len(dur), "tkhd {dur}");
            assert_eq!(written(&|w| write_mdhd(w, 90_000, dur, *b"und")), mdhd_len(dur), "mdhd {dur}");
        }
        assert_eq!((mvhd_len(0), tkhd_len(0), mdhd_len(0)), (108, 92, 32));
        for kind in [TrackKind::Video, TrackKind::Audio] {
            assert_eq!(written(&|w| write_hdlr(w, kind)), hdlr_len(kind), "{kind:?}");
            assert_eq!(written(&|w| write_minf_header(w, kind)), minf_header_len(kind), "{kind:?}");
        }
        let big = u32::MAX as u64 + 1;
        for (empty, media_time, media_movie_dur) in [(0, 0, 9), (5, 3000, 9), (big, 0, 9), (0, 1 << 31, 9), (5, 0, big)]
        {
            let e = Edit { empty, media_time, media_movie_dur };
            assert_eq!(written(&|w| write_edts(w, &e)), edts_len(&e), "{e:?}");
        }

        // stbl: counts kept by the builder == counts from a walk; size == written size.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/sets/r07_h264_high_bframes_vfr_ts");
        let mut sets = vec![fixture_segments(std::path::Path::new(dir))];
        sets.push(vec![seg(0, 60, 100, 0, None), seg(0, 60, 120, 0, None)]);
        for segs in sets {
            let mut bl = LayoutBuilder::new();
            for s in segs {
                bl.push(s).unwrap();
            }
            for (st, t) in bl.stats.iter().zip(&bl.tracks) {
                let counts = st.totals(t).stbl;
                let mut finished = t.clone();
                finished.finish();
                assert_eq!(counts, scanned_counts(&finished));
                for co64 in [false, true] {
                    assert_eq!(written(&|w| _ = write_stbl(w, &finished, co64)), stbl_len(&counts, co64));
                }
            }
        }
    }
}
