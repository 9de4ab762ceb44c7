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
//!
//! Between uploads a broadcast lives in the catalog, so that any node may take the next upload:
//! [`Broadcast::save`] gives the part that cannot be derived (uploads not yet appended, the
//! playlist entries not yet consumed, init segments, gaps, carried parameter sets) as a
//! [`Saved`] JSON document; [`Broadcast::restore`] takes it up again on any node, and
//! [`Broadcast::catch_up`] pushes the segments other nodes appended since this node's copy.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::IngestError;
use crate::catalog::{Camera, NewRecording, Recording, Segment};
use crate::format::fmp4::InitSegment;
use crate::format::index::{ParamCarry, SegmentIndex};
use crate::format::m3u8::{MediaPlaylist, PlaylistSegment};
use crate::format::mp4::{FORMAT_VERSION, LayoutBuilder, LayoutSummary, MOVIE_TIMESCALE, SegmentInput};
use crate::format::{fmp4, ts};
use crate::model::{EtagHasher, RecordingId, UserId, day_and_name, keys, sha256_hex};

/// Segments uploaded after a missing one before the missing one is given up (a gap).
pub const SKIP_MISSING_AFTER: usize = 2;

/// Refused uploads a saved broadcast remembers beyond the playlist's consumed entries.
const SAVED_REJECTED: usize = 64;

/// A broadcast's state as stored in the catalog between uploads (JSON, in `broadcasts.state`):
/// everything [`Broadcast::restore`] cannot derive from the recording's segments.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// The live recording's id, once the first segment is appended.
    pub recording: Option<i64>,
    /// Segments appended to it.
    pub segments: i64,
    /// Init segments: (upload name, object key).
    inits: Vec<(String, String)>,
    latest_init: Option<String>,
    pending: Vec<SavedPending>,
    /// fMP4 segments stored before any init segment: (upload name, object key).
    awaiting_init: Vec<(String, String)>,
    rejected: Vec<String>,
    /// Appended uploads the last playlist still names.
    appended: Vec<String>,
    /// Hex of the encoded index whose video configs are carried (MPEG-TS).
    carry: Option<String>,
    skipped: Vec<String>,
    /// The last playlist from the cursor on.
    playlist: Option<SavedPlaylist>,
    playlist_first: u64,
    cursor: (u64, bool),
}

impl Saved {
    /// The stored JSON document.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|e| unreachable!("a Saved always serializes: {e}"))
    }

    /// Object keys of the init segments it names.
    pub fn init_keys(&self) -> impl Iterator<Item = &str> {
        self.inits.iter().map(|(_, k)| k.as_str())
    }

    /// Parses a stored document. Errors: not one (a catalog written by another version).
    pub fn decode(b: &[u8]) -> Result<Saved, IngestError> {
        serde_json::from_slice(b).map_err(|e| IngestError::Resume(format!("stored broadcast state: {e}")))
    }
}

/// An uploaded segment not yet appended, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct SavedPending {
    name: String,
    /// Hex of [`SegmentIndex::encode`].
    index: String,
    object_key: String,
    sha256: String,
    len_bytes: u64,
    init_key: Option<String>,
}

/// A playlist's entries from the cursor on, as stored.
#[derive(Debug, Serialize, Deserialize)]
struct SavedPlaylist {
    media_sequence: u64,
    target_duration_s: Option<u64>,
    ended: bool,
    /// (URI, EXTINF seconds, media sequence number, discontinuity, gap).
    entries: Vec<(String, f64, u64, bool, bool)>,
}

impl SavedPlaylist {
    fn from_playlist(p: &MediaPlaylist, cursor: u64) -> Self {
        SavedPlaylist {
            media_sequence: p.media_sequence,
            target_duration_s: p.target_duration_s,
            ended: p.ended,
            entries: p
                .segments
                .iter()
                .filter(|e| e.sequence >= cursor)
                .map(|e| (e.uri.clone(), e.duration_s, e.sequence, e.discontinuity, e.gap))
                .collect(),
        }
    }

    fn into_playlist(self) -> MediaPlaylist {
        MediaPlaylist {
            target_duration_s: self.target_duration_s,
            media_sequence: self.media_sequence,
            playlist_type: None,
            ended: self.ended,
            segments: self
                .entries
                .into_iter()
                .map(|(uri, duration_s, sequence, discontinuity, gap)| PlaylistSegment {
                    uri,
                    duration_s,
                    sequence,
                    discontinuity,
                    gap,
                    map_uri: None,
                    program_date_time: None,
                })
                .collect(),
        }
    }
}

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
    /// after the first media segment), by name and stored object key: indexed when an init
    /// arrives.
    awaiting_init: Vec<(String, String)>,
    /// Uploads that were refused, oldest first; the playlist's entries for them become gaps.
    rejected: Vec<String>,
    appended: HashSet<String>,
    /// Video parameter sets carried between MPEG-TS segments.
    carry: ParamCarry,
    /// The encoded index of the segment `carry` was taken from (what [`Saved`] keeps of it).
    carry_src: Option<Vec<u8>>,
    /// Source streams not carried, in first-seen order.
    skipped: Vec<String>,
    /// The file so far, extended one segment per append.
    builder: LayoutBuilder,
    /// The first appended segment: it fixes the codec of every track.
    first: Option<Arc<SegmentIndex>>,
    etag: EtagHasher,
    playlist: Option<MediaPlaylist>,
    /// The media sequence number of the last playlist's first entry.
    playlist_first: u64,
    /// Media sequence number of the first playlist entry not yet appended or given up, and
    /// whether the timeline joins before it.
    cursor: (u64, bool),
    in_flight: Option<InFlight>,
    ended: bool,
}

impl Broadcast {
    /// A new broadcast of `camera`, nothing uploaded yet.
    pub fn new(camera: Camera) -> Self {
        Broadcast {
            camera,
            rec: None,
            inits: HashMap::new(),
            latest_init: None,
            pending: HashMap::new(),
            awaiting_init: Vec::new(),
            rejected: Vec::new(),
            appended: HashSet::new(),
            carry: ParamCarry::default(),
            carry_src: None,
            skipped: Vec::new(),
            builder: LayoutBuilder::new(),
            first: None,
            etag: EtagHasher::default(),
            playlist: None,
            playlist_first: 0,
            cursor: (0, false),
            in_flight: None,
            ended: false,
        }
    }

    /// Takes up the broadcast's state `saved` as the catalog holds it (this node's copy may be
    /// older: another node took the last uploads). The stored part is replaced; the derived
    /// part (layout, ETag, the first segment) is kept when it is a prefix of the same
    /// recording, else started again. Returns the recording and the first segment number this
    /// copy lacks, to be read from the catalog and given to [`Self::catch_up`].
    ///
    /// `init_of` gives the parsed init segment stored under an object key. Errors: an undecodable
    /// stored index, an init segment `init_of` lacks.
    pub fn restore(
        &mut self,
        saved: Saved,
        init_of: impl Fn(&str) -> Option<Arc<InitSegment>>,
    ) -> Result<Option<(RecordingId, i64)>, IngestError> {
        let bad = |what: String| IngestError::Resume(what);
        let same = self.rec.as_ref().map(|r| r.id.0) == saved.recording && self.builder.len() as i64 <= saved.segments;
        if !same {
            self.rec = None;
            self.builder = LayoutBuilder::new();
            self.etag = EtagHasher::default();
            self.first = None;
        }
        self.inits.clear();
        for (name, key) in saved.inits {
            let init = init_of(&key).ok_or_else(|| bad(format!("init segment {key} not loaded")))?;
            self.inits.insert(name, (init, key));
        }
        self.latest_init = saved.latest_init;
        self.pending.clear();
        for p in saved.pending {
            let encoded = hex::decode(&p.index).map_err(|e| bad(format!("upload {}: {e}", p.name)))?;
            let index = SegmentIndex::decode(&encoded).map_err(|e| bad(format!("upload {}: {e}", p.name)))?;
            let pending = Pending {
                index: Arc::new(index),
                encoded,
                object_key: p.object_key,
                sha256: p.sha256,
                len_bytes: p.len_bytes,
                init_key: p.init_key,
            };
            self.pending.insert(p.name, pending);
        }
        self.awaiting_init = saved.awaiting_init;
        self.rejected = saved.rejected;
        self.appended = saved.appended.into_iter().collect();
        self.carry = ParamCarry::default();
        self.carry_src = match saved.carry {
            Some(h) => {
                let encoded = hex::decode(&h).map_err(|e| bad(format!("carried parameter sets: {e}")))?;
                let index = SegmentIndex::decode(&encoded).map_err(|e| bad(format!("carried parameter sets: {e}")))?;
                self.carry.remember(&index);
                Some(encoded)
            }
            None => None,
        };
        self.skipped = saved.skipped;
        self.playlist = saved.playlist.map(SavedPlaylist::into_playlist);
        self.playlist_first = saved.playlist_first;
        self.cursor = saved.cursor;
        self.in_flight = None;
        self.ended = false;
        let have = self.builder.len() as i64;
        Ok(match saved.recording {
            Some(id) if have < saved.segments => Some((RecordingId(id), have)),
            _ => None,
        })
    }

    /// Pushes the segments `segments` (numbered from this copy's length on, with their decoded
    /// indexes) that other nodes appended to recording `rec`, whose row is now `rec`.
    /// O(new segments).
    pub fn catch_up(&mut self, rec: Recording, segments: Vec<(Segment, SegmentIndex)>) -> Result<(), IngestError> {
        for (s, index) in segments {
            if s.seq != self.builder.len() as i64 {
                return Err(IngestError::Resume(format!("recording {}: segment {} out of order", rec.id, s.seq)));
            }
            let index = Arc::new(index);
            self.first.get_or_insert_with(|| index.clone());
            self.builder
                .push(SegmentInput { index, join_before: s.join_before })
                .map_err(|e| IngestError::Resume(format!("recording {}: {e}", rec.id)))?;
            self.etag.push(&s.sha256, &s.sample_index, s.join_before);
        }
        self.rec = Some(rec);
        Ok(())
    }

    /// The state to store in the catalog (see [`Saved`]): the playlist from the cursor on, the
    /// uploads and gaps that can still matter.
    pub fn save(&self) -> Saved {
        let cursor = self.cursor.0;
        let window: HashSet<&str> =
            self.playlist.iter().flat_map(|p| p.segments.iter()).map(|e| e.uri.as_str()).collect();
        let consumed: HashSet<&str> = self
            .playlist
            .iter()
            .flat_map(|p| p.segments.iter())
            .filter(|e| e.sequence < cursor)
            .map(|e| e.uri.as_str())
            .collect();
        let mut rejected: Vec<String> =
            self.rejected.iter().filter(|n| !consumed.contains(n.as_str())).cloned().collect();
        let keep_from = rejected.len().saturating_sub(SAVED_REJECTED);
        rejected.drain(..keep_from);
        let mut pending: Vec<SavedPending> = self
            .pending
            .iter()
            .filter(|(n, _)| !consumed.contains(n.as_str()))
            .map(|(n, p)| SavedPending {
                name: n.clone(),
                index: hex::encode(&p.encoded),
                object_key: p.object_key.clone(),
                sha256: p.sha256.clone(),
                len_bytes: p.len_bytes,
                init_key: p.init_key.clone(),
            })
            .collect();
        pending.sort_by(|a, b| a.name.cmp(&b.name));
        let mut inits: Vec<(String, String)> = self.inits.iter().map(|(n, (_, k))| (n.clone(), k.clone())).collect();
        inits.sort();
        let mut appended: Vec<String> = self.appended.iter().filter(|n| window.contains(n.as_str())).cloned().collect();
        appended.sort();
        Saved {
            recording: self.rec.as_ref().map(|r| r.id.0),
            segments: self.builder.len() as i64,
            inits,
            latest_init: self.latest_init.clone(),
            pending,
            awaiting_init: self.awaiting_init.clone(),
            rejected,
            appended,
            carry: self.carry_src.as_ref().map(hex::encode),
            skipped: self.skipped.clone(),
            playlist: self.playlist.as_ref().map(|p| SavedPlaylist::from_playlist(p, cursor)),
            playlist_first: self.playlist_first,
            cursor: self.cursor,
        }
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
        let before = if self.playlist.is_some() { self.playlist_first } else { 0 };
        self.playlist_first = first;
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

    /// Takes an fMP4 init segment stored under `key`; returns the segments that waited for it
    /// (name, stored object key), to be indexed now.
    pub fn add_init(&mut self, file: String, init: Arc<InitSegment>, key: String) -> Vec<(String, String)> {
        self.inits.insert(file.clone(), (init, key));
        self.latest_init = Some(file);
        std::mem::take(&mut self.awaiting_init)
    }

    /// What indexing a segment needs, or `None` when it is an fMP4 segment and no init segment
    /// has arrived yet: then store it and [wait](Self::await_init).
    pub fn segment_job(&self, fmp4: bool) -> Option<SegmentJob> {
        let user = self.camera.user_id;
        if !fmp4 {
            return Some(SegmentJob::Ts { user, carry: self.carry.clone() });
        }
        let (init, init_key) = self.latest_init.as_ref().and_then(|n| self.inits.get(n))?;
        Some(SegmentJob::Fmp4 { user, init: init.clone(), init_key: init_key.clone() })
    }

    /// An fMP4 segment stored under `key` before any init segment: indexed when one arrives.
    pub fn await_init(&mut self, file: String, key: String) {
        self.awaiting_init.push((file, key));
    }

    /// Checks an indexed segment against the broadcast (its tracks' codecs are fixed by the
    /// first segment) and takes in its carried parameter sets and skipped streams; returns the
    /// pending segment, to be stored and then [added](Self::add_pending).
    pub fn accept(&mut self, file: &str, indexed: Indexed) -> Result<Pending, IngestError> {
        let Indexed { pending, skipped, carry } = indexed;
        let carried = carry.is_some().then(|| pending.encoded.clone());
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
            self.carry_src = carried;
        }
        for s in skipped {
            if !self.skipped.contains(&s) {
                self.skipped.push(s);
            }
        }
        Ok(pending)
    }

    /// A segment stored and waiting for a playlist to name it. An earlier refusal of the same
    /// upload is forgotten (a load balancer sent it again to another node, which took it).
    pub fn add_pending(&mut self, file: String, pending: Pending) {
        self.rejected.retain(|n| *n != file);
        self.pending.insert(file, pending);
    }

    /// An upload that was refused: its playlist entry becomes a gap.
    pub fn reject(&mut self, file: String) {
        if !self.rejected.contains(&file) {
            self.rejected.push(file);
        }
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
                    self.reject(entry.uri.clone());
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
                    self.reject(entry.uri.clone());
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
