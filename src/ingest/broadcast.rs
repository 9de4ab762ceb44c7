//! One camera's broadcast as a state machine without I/O: uploads, playlists and the outcome of
//! each catalog write go in; what to store and what to write to the catalog comes out. The
//! driver ([`super::Ingest`]) does the I/O. Because nothing here awaits anything, every rule
//! (playlist order, gaps, codec changes, the rollback of a refused append) is tested on values.
//!
//! A segment is *appended* in playlist order once it is uploaded, indexed and stored and a
//! playlist names it. An append extends the file incrementally ([`LayoutBuilder::push`], the
//! ETag hasher): its cost does not grow with the broadcast's length. It becomes part of the
//! broadcast only when the driver reports the catalog write done ([`Broadcast::appended`]); a
//! failed write is taken back whole ([`Broadcast::append_failed`]), so no phantom segment stays
//! in the layout or the ETag.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::IngestError;
use crate::catalog::{Camera, NewRecording, Recording, Segment};
use crate::format::fmp4::InitSegment;
use crate::format::index::{ParamCarry, SegmentIndex};
use crate::format::m3u8::MediaPlaylist;
use crate::format::mp4::{FORMAT_VERSION, LayoutBuilder, LayoutSummary, MOVIE_TIMESCALE, SegmentInput};
use crate::format::{fmp4, ts};
use crate::model::{EtagHasher, UserId, day_and_name, keys, sha256_hex};

/// Segments uploaded after a missing one before the missing one is given up (a gap).
pub const SKIP_MISSING_AFTER: usize = 2;

/// A segment uploaded, indexed and stored, waiting for a playlist to name it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub index: Arc<SegmentIndex>,
    /// [`SegmentIndex::encode`] bytes.
    pub encoded: Vec<u8>,
    pub object_key: String,
    /// Hex SHA-256 of the segment bytes.
    pub sha256: String,
    pub len_bytes: u64,
    pub init_key: Option<String>,
}

/// What indexing an uploaded segment found: pure CPU work ([`index_segment`]) that the driver
/// runs off the runtime threads.
pub struct Indexed {
    /// The segment, its object key included.
    pub pending: Pending,
    /// Streams the segment has that are not carried.
    pub skipped: Vec<String>,
    /// The parameter sets carried after it (MPEG-TS).
    pub carry: Option<ParamCarry>,
}

/// What the driver needs to index a segment: the init segment it belongs to (fMP4) or the
/// parameter sets carried so far (MPEG-TS), and whose object it will be.
pub enum SegmentJob {
    Ts { user: UserId, carry: ParamCarry },
    Fmp4 { user: UserId, init: Arc<InitSegment>, init_key: String },
}

/// Indexes one uploaded segment (its whole bytes): parse, encode, hash. CPU only.
pub fn index_segment(file: &str, job: SegmentJob, data: &[u8]) -> Result<Indexed, IngestError> {
    let bad = |source| IngestError::Unparsable { file: file.to_string(), source };
    let (index, user, init_key, skipped, carry, ext) = match job {
        SegmentJob::Fmp4 { user, init, init_key } => {
            let index = fmp4::index_segment(&init, data).map_err(bad)?;
            (index, user, Some(init_key), init.skipped.clone(), None, "m4s")
        }
        SegmentJob::Ts { user, mut carry } => {
            let ts = ts::index_segment_with(data, &mut carry).map_err(bad)?;
            (ts.index, user, None, ts.skipped, Some(carry), "ts")
        }
    };
    if index.tracks.iter().all(|t| t.samples.is_empty()) {
        return Err(IngestError::NoSamples(file.to_string()));
    }
    let sha256 = sha256_hex(data);
    let pending = Pending {
        encoded: index.encode(),
        index: Arc::new(index),
        object_key: keys::segment(user, &sha256, ext),
        sha256,
        len_bytes: data.len() as u64,
        init_key,
    };
    Ok(Indexed { pending, skipped, carry })
}

/// The next thing the driver must do for a broadcast.
#[derive(Debug)]
pub enum Step {
    /// Insert the broadcast's recording with its first segment (`NewRecording::live`), then
    /// report with [`Broadcast::appended`] or [`Broadcast::append_failed`].
    Start(NewRecording),
    /// Append `segment` to the recording, which grows to `rec`; then report the same way.
    Grow(Recording, Segment),
    /// The broadcast is complete (`#EXT-X-ENDLIST` and every segment in): end it with
    /// [`Broadcast::end`].
    End,
    /// Nothing to do until the next upload.
    Wait,
}

/// An append sent to the catalog and not yet confirmed: how to take it back.
#[derive(Debug)]
struct InFlight {
    name: String,
    pending: Pending,
    etag_before: EtagHasher,
}

/// One camera's broadcast in progress.
pub struct Broadcast {
    pub camera: Camera,
    /// The live recording, from the first appended segment on.
    rec: Option<Recording>,
    /// Init segments by upload name: parsed, and their object key.
    inits: HashMap<String, (Arc<InitSegment>, String)>,
    latest_init: Option<String>,
    pending: HashMap<String, Pending>,
    /// fMP4 segments uploaded before the init segment they need (ffmpeg finishes `init.mp4`
    /// after the first media segment): indexed when an init arrives.
    awaiting_init: Vec<(String, Bytes)>,
    /// Uploads that were refused; the playlist's entries for them become gaps.
    rejected: HashSet<String>,
    appended: HashSet<String>,
    /// Video parameter sets carried between MPEG-TS segments.
    carry: ParamCarry,
    /// Source streams not carried, in first-seen order.
    skipped: Vec<String>,
    /// The file so far, extended one segment per append.
    builder: LayoutBuilder,
    /// The first appended segment: it fixes the codec of every track.
    first: Option<Arc<SegmentIndex>>,
    etag: EtagHasher,
    playlist: Option<MediaPlaylist>,
    /// Media sequence number of the first playlist entry not yet appended or given up, and
    /// whether the timeline joins before it.
    cursor: (u64, bool),
    in_flight: Option<InFlight>,
    last_upload: Instant,
    ended: bool,
}

impl Broadcast {
    /// A new broadcast of `camera`, nothing uploaded yet.
    pub fn new(camera: Camera, now: Instant) -> Self {
        Broadcast {
            camera,
            rec: None,
            inits: HashMap::new(),
            latest_init: None,
            pending: HashMap::new(),
            awaiting_init: Vec::new(),
            rejected: HashSet::new(),
            appended: HashSet::new(),
            carry: ParamCarry::default(),
            skipped: Vec::new(),
            builder: LayoutBuilder::new(),
            first: None,
            etag: EtagHasher::default(),
            playlist: None,
            cursor: (0, false),
            in_flight: None,
            last_upload: now,
            ended: false,
        }
    }

    /// The broadcast of live recording `rec` resumed (after a restart) from its stored segments
    /// and their decoded indexes, and the init segment its fMP4 segments use. O(recording).
    pub fn resume(
        camera: Camera,
        rec: Recording,
        segments: Vec<(Segment, SegmentIndex)>,
        init: Option<(InitSegment, String)>,
        now: Instant,
    ) -> Result<Self, IngestError> {
        let mut bc = Broadcast::new(camera, now);
        for (s, index) in segments {
            bc.carry.remember(&index);
            let index = Arc::new(index);
            bc.first.get_or_insert_with(|| index.clone());
            bc.builder
                .push(SegmentInput { index, join_before: s.join_before })
                .map_err(|e| IngestError::Resume(format!("recording {}: {e}", rec.id)))?;
            bc.etag.push(&s.sha256, &s.sample_index, s.join_before);
            bc.appended.insert(s.source_name);
        }
        if let Some((init, key)) = init {
            bc.inits.insert("(resumed)".into(), (Arc::new(init), key));
            bc.latest_init = Some("(resumed)".into());
        }
        bc.skipped = rec.skipped.lines().map(str::to_string).collect();
        bc.rec = Some(rec);
        Ok(bc)
    }

    /// Notes an upload at `now` (for the idle timeout).
    pub fn touch(&mut self, now: Instant) {
        self.last_upload = now;
    }

    /// Time since the last upload.
    pub fn idle_for(&self, now: Instant) -> std::time::Duration {
        now.saturating_duration_since(self.last_upload)
    }

    /// The live recording, once the first segment is appended.
    pub fn recording(&self) -> Option<&Recording> {
        self.rec.as_ref()
    }

    /// Whether the broadcast has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Segments appended so far.
    pub fn len(&self) -> usize {
        self.builder.len()
    }

    /// Whether no segment is appended yet.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }

    /// Takes a new playlist: the order in which uploads are appended, gaps, the end.
    pub fn set_playlist(&mut self, pl: MediaPlaylist) {
        let first = pl.segments.first().map_or(pl.media_sequence, |s| s.sequence);
        let before = self.playlist.as_ref().map_or(0, |p| p.segments.first().map_or(p.media_sequence, |s| s.sequence));
        if first < before {
            // The numbering went back (a restarted encoder): look at every entry again.
            self.cursor = (0, false);
        } else if first > self.cursor.0 {
            // The window slid past entries never appended; the timeline joins over the hole if
            // there is one (the layout sees the jump in decode times).
            self.cursor = (first, self.cursor.1);
        }
        self.playlist = Some(pl);
    }

    /// Takes an fMP4 init segment stored under `key`; returns the segments that waited for it,
    /// to be indexed now.
    pub fn add_init(&mut self, file: String, init: InitSegment, key: String) -> Vec<(String, Bytes)> {
        self.inits.insert(file.clone(), (Arc::new(init), key));
        self.latest_init = Some(file);
        std::mem::take(&mut self.awaiting_init)
    }

    /// What indexing segment `file` needs, or `None` when it is an fMP4 segment that arrived
    /// before any init segment: then it is kept (with `data`) until one arrives.
    pub fn segment_job(&mut self, file: &str, fmp4: bool, data: &Bytes) -> Option<SegmentJob> {
        let user = self.camera.user_id;
        if !fmp4 {
            return Some(SegmentJob::Ts { user, carry: self.carry.clone() });
        }
        let Some((init, init_key)) = self.latest_init.as_ref().and_then(|n| self.inits.get(n)) else {
            self.awaiting_init.push((file.to_string(), data.clone()));
            return None;
        };
        Some(SegmentJob::Fmp4 { user, init: init.clone(), init_key: init_key.clone() })
    }

    /// Checks an indexed segment against the broadcast (its tracks' codecs are fixed by the
    /// first segment) and takes in its carried parameter sets and skipped streams; returns the
    /// pending segment, to be stored and then [added](Self::add_pending).
    pub fn accept(&mut self, file: &str, indexed: Indexed) -> Result<Pending, IngestError> {
        let Indexed { pending, skipped, carry } = indexed;
        if let Some(first) = &self.first {
            for (key, t) in pending.index.keyed_tracks() {
                let same = first.keyed_tracks().find(|(k, _)| *k == key).map(|(_, f)| f);
                if let Some(f) = same.filter(|f| f.config.codec != t.config.codec) {
                    return Err(IngestError::CodecChange {
                        file: file.to_string(),
                        kind: key.0,
                        from: f.config.codec,
                        to: t.config.codec,
                    });
                }
            }
        }
        if let Some(c) = carry {
            self.carry = c;
        }
        for s in skipped {
            if !self.skipped.contains(&s) {
                self.skipped.push(s);
            }
        }
        Ok(pending)
    }

    /// A segment stored and waiting for a playlist to name it.
    pub fn add_pending(&mut self, file: String, pending: Pending) {
        self.pending.insert(file, pending);
    }

    /// An upload that was refused: its playlist entry becomes a gap.
    pub fn reject(&mut self, file: String) {
        self.rejected.insert(file);
    }

    /// The next step, in playlist order. After [`Step::Start`] or [`Step::Grow`] it must be told
    /// the outcome before it is asked again.
    pub fn next_step(&mut self, now_ms: i64) -> Step {
        if self.in_flight.is_some() || self.ended {
            return Step::Wait;
        }
        let Some(pl) = self.playlist.take() else { return Step::Wait };
        let step = self.next_in(&pl, now_ms);
        self.playlist = Some(pl);
        step
    }

    fn next_in(&mut self, pl: &MediaPlaylist, now_ms: i64) -> Step {
        let (cursor_seq, mut join_next) = self.cursor;
        let start = pl.segments.partition_point(|e| e.sequence < cursor_seq);
        let mut complete = true;
        for (i, entry) in pl.segments.iter().enumerate().skip(start) {
            if entry.gap || self.rejected.contains(&entry.uri) {
                join_next = true;
                self.cursor = (entry.sequence + 1, true);
                continue;
            }
            if self.appended.contains(&entry.uri) {
                join_next = false;
                self.cursor = (entry.sequence + 1, false);
                continue;
            }
            let Some(p) = self.pending.remove(&entry.uri) else {
                let later = pl.segments[i + 1..].iter().filter(|e| self.pending.contains_key(&e.uri)).count();
                if later >= SKIP_MISSING_AFTER || (pl.ended && later > 0) {
                    tracing::warn!(camera = self.camera.name, "segment {} never arrived: a gap", entry.uri);
                    self.rejected.insert(entry.uri.clone());
                    join_next = true;
                    self.cursor = (entry.sequence + 1, true);
                    continue;
                }
                complete = false;
                break;
            };
            let join = join_next || entry.discontinuity;
            match self.prepare(entry.uri.clone(), entry.duration_s, p, join, now_ms) {
                Ok(step) => return step,
                Err(e) => {
                    tracing::warn!(camera = self.camera.name, "segment {} refused: {e}", entry.uri);
                    self.rejected.insert(entry.uri.clone());
                    join_next = true;
                    self.cursor = (entry.sequence + 1, true);
                }
            }
        }
        if pl.ended && complete { Step::End } else { Step::Wait }
    }

    /// Extends the file by `p` and says how the catalog must record it.
    fn prepare(
        &mut self,
        name: String,
        extinf_s: f64,
        p: Pending,
        join: bool,
        now_ms: i64,
    ) -> Result<Step, IngestError> {
        self.builder
            .push(SegmentInput { index: p.index.clone(), join_before: join })
            .map_err(|e| IngestError::Layout(name.clone(), e))?;
        let summary = match self.builder.summary() {
            Ok(s) => s,
            Err(e) => {
                self.builder.undo();
                return Err(IngestError::Layout(name, e));
            }
        };
        let etag_before = self.etag.clone();
        self.etag.push(&p.sha256, &p.encoded, join);
        let segment = Segment {
            seq: self.builder.len() as i64 - 1,
            source_name: name.clone(),
            object_key: p.object_key.clone(),
            init_key: p.init_key.clone(),
            object_etag: None,
            init_etag: None,
            sha256: p.sha256.clone(),
            len_bytes: p.len_bytes as i64,
            extinf_ms: (extinf_s * 1000.0).round() as i64,
            join_before: join,
            sample_index: p.encoded.clone(),
        };
        let step = self.record(&summary, segment, now_ms);
        self.in_flight = Some(InFlight { name, pending: p, etag_before });
        Ok(step)
    }

    fn record(&self, s: &LayoutSummary, segment: Segment, now_ms: i64) -> Step {
        let duration_ms = (s.movie_dur as f64 * 1000.0 / MOVIE_TIMESCALE as f64).round() as i64;
        match &self.rec {
            None => {
                let start_ms = now_ms - duration_ms;
                let (day, name) = day_and_name(start_ms);
                Step::Start(NewRecording {
                    camera_id: self.camera.id,
                    day,
                    name,
                    start_ms,
                    duration_ms,
                    len_bytes: s.len_bytes as i64,
                    head_len_bytes: s.head_len_bytes as i64,
                    etag: self.etag.value(),
                    format_version: FORMAT_VERSION as i64,
                    updated_ms: now_ms,
                    live: true,
                    codecs: s.codecs.clone(),
                    modified_ms: now_ms,
                    skipped: self.skipped.join("\n"),
                    source: None,
                    segments: vec![segment],
                })
            }
            Some(rec) => {
                let mut rec = rec.clone();
                rec.duration_ms = duration_ms;
                rec.len_bytes = s.len_bytes as i64;
                rec.head_len_bytes = s.head_len_bytes as i64;
                rec.etag = self.etag.value();
                rec.format_version = FORMAT_VERSION as i64;
                // Strictly increasing: it keys cached layouts.
                rec.updated_ms = now_ms.max(rec.updated_ms + 1);
                rec.modified_ms = now_ms;
                rec.codecs = s.codecs.clone();
                rec.skipped = self.skipped.join("\n");
                Step::Grow(rec, segment)
            }
        }
    }

    /// The catalog recorded the append in flight: the recording is now `rec`.
    pub fn appended(&mut self, rec: Recording) {
        if let Some(f) = self.in_flight.take() {
            self.first.get_or_insert_with(|| f.pending.index.clone());
            self.appended.insert(f.name);
        }
        self.rec = Some(rec);
    }

    /// The catalog refused the append in flight: it is taken back whole (layout, ETag), and
    /// the segment waits to be appended again at the next upload.
    pub fn append_failed(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.builder.undo();
            self.etag = f.etag_before;
            self.pending.insert(f.name, f.pending);
        }
    }

    /// Ends the broadcast: returns what the driver needs to store its head (the file's
    /// builder, whose layout it computes off the runtime threads) and the recording to mark as
    /// ended, if any segment was appended.
    pub fn end(&mut self) -> Option<(LayoutBuilder, Recording)> {
        self.ended = true;
        let rec = self.rec.clone()?;
        Some((std::mem::take(&mut self.builder), rec))
    }
}

#[cfg(test)]
mod tests;
