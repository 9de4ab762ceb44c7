//! The virtual MP4 file: an [`http_serve::Entity`] whose length, ETag and `moov` come from the
//! catalog alone, and whose `mdat` bytes are produced on demand from exactly the segments a byte
//! range touches.
//!
//! A `GET` spawns one producer task per requested range that walks the [`Layout`]'s chunks,
//! reading fMP4 payloads straight from the store (a copy) and transmuxing MPEG-TS chunks
//! (Annex B → length-prefixed, ADTS → raw AAC) through a small LRU so that range-heavy clients
//! do not transmux the same chunk twice. The producer sends pieces of at most [`PIECE_BYTES`]
//! over a channel of [`CHANNEL_PIECES`] entries: memory per request is bounded, and a client that
//! disconnects drops the receiver, which stops the producer at its next send.

use std::num::NonZeroUsize;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue};
use lru::LruCache;

use crate::catalog::{Catalog, Recording};
use crate::format::frag;
use crate::format::index::{Container, SegmentIndex};
use crate::format::mp4::{Layout, SegmentInput};
use crate::instance::{Slot, UserInstance};
use crate::service::AppState;
use crate::store::ObjectStore;

/// Boxed error type of body streams.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest piece of body sent at once, bytes.
pub const PIECE_BYTES: u64 = 1 << 20;
/// Pieces buffered between a producer and the connection.
pub const CHANNEL_PIECES: usize = 2;

/// A recording's layout with what serving it needs.
#[derive(Debug)]
pub struct LoadedRecording {
    pub layout: Layout,
    /// `ftyp` + `moov` + `mdat` header as shared bytes.
    pub head: Bytes,
    /// Strong ETag value (no quotes).
    pub etag: String,
    /// Object key of each segment, parallel to `layout.segments`.
    pub object_keys: Vec<String>,
}

/// A layout built once and shared.
type LayoutCell = Arc<tokio::sync::OnceCell<Arc<LoadedRecording>>>;

/// Recently used layouts by recording (bounded LRU), plus transmuxed MPEG-TS chunks.
pub struct LayoutCache {
    /// Built (or being built) layouts by (recording id, `updated_ms`): concurrent requests for
    /// the same snapshot, such as every live viewer when a segment lands, build it once.
    layouts: Mutex<LruCache<(i64, i64), LayoutCell>>,
    /// Output chunks of recently used segments by object key, made once even when several
    /// requests (live viewers, a request's look-ahead) want them at the same time.
    segments: Mutex<LruCache<String, Arc<tokio::sync::OnceCell<SegChunks>>>>,
}

impl LayoutCache {
    /// A cache holding up to `n` layouts and the output chunks of 32 segments.
    pub fn new(n: NonZeroUsize) -> Self {
        LayoutCache {
            layouts: Mutex::new(LruCache::new(n)),
            segments: Mutex::new(LruCache::new(NonZeroUsize::new(32).unwrap())),
        }
    }

    /// Whether the layout of `rec` is cached.
    pub fn contains(&self, rec: &Recording) -> bool {
        self.layouts.lock().unwrap().peek(&(rec.id, rec.updated_ms)).is_some_and(|c| c.initialized())
    }

    /// The layout of `rec`, from the cache or built from the catalog's sample indexes (reads no
    /// segment).
    pub async fn get_or_build(&self, catalog: &Catalog, rec: &Recording) -> Result<Arc<LoadedRecording>, BoxError> {
        let cell = self.layouts.lock().unwrap().get_or_insert((rec.id, rec.updated_ms), Default::default).clone();
        Ok(cell.get_or_try_init(|| build(catalog, rec)).await?.clone())
    }
}

/// Builds a recording's layout from the catalog's sample indexes (reads no segment).
async fn build(catalog: &Catalog, rec: &Recording) -> Result<Arc<LoadedRecording>, BoxError> {
    let t0 = std::time::Instant::now();
    let segs = catalog.segments(rec.id).await?;
    let t_fetch = t0.elapsed();
    let loaded = tokio::task::spawn_blocking(move || -> Result<LoadedRecording, BoxError> {
        let t1 = std::time::Instant::now();
        let mut inputs = Vec::with_capacity(segs.len());
        for s in &segs {
            let index = SegmentIndex::decode(&s.sample_index).map_err(|e| format!("segment {}: {e}", s.seq))?;
            inputs.push(SegmentInput { index: Arc::new(index), join_before: s.join_before });
        }
        let t_decode = t1.elapsed();
        let layout = Layout::build(&inputs)?;
        tracing::debug!(
            segments = segs.len(),
            fetch_ms = t_fetch.as_secs_f64() * 1e3,
            decode_ms = t_decode.as_secs_f64() * 1e3,
            build_ms = (t1.elapsed() - t_decode).as_secs_f64() * 1e3,
            "layout built"
        );
        let etag = crate::import::full_file_etag(
            segs.iter().map(|s| (s.sha256.as_str(), s.sample_index.as_slice(), s.join_before)),
        );
        Ok(LoadedRecording {
            head: Bytes::copy_from_slice(&layout.head),
            layout,
            etag,
            object_keys: segs.into_iter().map(|s| s.object_key).collect(),
        })
    })
    .await??;
    Ok(Arc::new(loaded))
}

/// Object key of the stored head (`ftyp` + `moov` + `mdat` header) of a full MP4 whose ETag
/// value is `etag`. Written at import; lets the first bytes of a file, which every player asks
/// for first, be served without building the layout (constant time, whatever the length).
pub fn head_key(user_id: i64, etag: &str) -> String {
    format!("users/{user_id}/heads/{etag}.mp4")
}

/// One recording served as a full MP4.
pub struct Mp4File {
    state: AppState,
    inst: Arc<UserInstance>,
    rec: Recording,
    /// The user's download slot, held until every body made from this entity is done.
    slot: Arc<Slot>,
    /// `Content-Disposition` sent with it.
    disposition: HeaderValue,
}

impl Mp4File {
    pub fn new(state: AppState, inst: Arc<UserInstance>, slot: Slot, rec: Recording, disposition: HeaderValue) -> Self {
        Mp4File { state, inst, rec, slot: Arc::new(slot), disposition }
    }

    /// Whether the recording is a live broadcast still growing.
    pub fn live(&self) -> bool {
        self.rec.live
    }
}

impl http_serve::Entity for Mp4File {
    type Data = Bytes;
    type Error = BoxError;

    fn len(&self) -> u64 {
        self.rec.len_bytes as u64
    }

    fn get_range(&self, range: Range<u64>) -> Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + Sync>> {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_PIECES);
        let state = self.state.clone();
        let rec = self.rec.clone();
        let (inst, slot) = (self.inst.clone(), self.slot.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = produce(&state, &inst, &rec, range, &tx).await {
                tracing::warn!(recording = rec.id, "body production failed: {e}");
                let _ = tx.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Box::pin(sync_wrapper::SyncStream::new(stream))
    }

    fn add_headers(&self, h: &mut HeaderMap) {
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        h.insert(http::header::CONTENT_DISPOSITION, self.disposition.clone());
    }

    fn etag(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("\"{}\"", self.rec.etag)).ok()
    }

    /// The recording's modification time in whole seconds (HTTP dates have no more, RFC 9110
    /// §5.6.7, so `If-Modified-Since: <this Last-Modified>` compares equal).
    fn last_modified(&self) -> Option<SystemTime> {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(self.rec.modified_ms.max(0) as u64);
        Some(crate::ranges::whole_seconds(t))
    }
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>;

/// Sends the bytes `range` of the recording's MP4 into `tx`; returns early (Ok) when the
/// receiver is gone.
///
/// Bytes of the head come from the stored head object unless the layout is already cached;
/// the layout, needed for `mdat` bytes, is built concurrently meanwhile.
async fn produce(
    state: &AppState,
    inst: &Arc<UserInstance>,
    rec: &Recording,
    range: Range<u64>,
    tx: &Tx,
) -> Result<(), BoxError> {
    let user_id = inst.user.id;
    let head_len = rec.head_len_bytes as u64;
    let mut pos = range.start;
    if pos < head_len && !inst.layouts.contains(rec) {
        let build = (range.end > head_len).then(|| {
            let (state, inst, rec) = (state.clone(), inst.clone(), rec.clone());
            tokio::spawn(async move { inst.layouts.get_or_build(&state.catalog, &rec).await })
        });
        let end = range.end.min(head_len);
        match inst.store.get_range(&head_key(user_id, &rec.etag), pos..end).await {
            Ok(head) => {
                for off in (0..head.len()).step_by(PIECE_BYTES as usize) {
                    let piece = head.slice(off..head.len().min(off + PIECE_BYTES as usize));
                    if tx.send(Ok(piece)).await.is_err() {
                        return Ok(());
                    }
                }
                pos = end;
            }
            Err(crate::store::StoreError::NotFound(_)) => {} // served from the layout below
            Err(e) => return Err(e.into()),
        }
        if let Some(build) = build {
            build.await??;
        }
        if pos >= range.end {
            return Ok(());
        }
    }
    let loaded = inst.layouts.get_or_build(&state.catalog, rec).await?;
    if loaded.layout.len_bytes != rec.len_bytes as u64 || loaded.etag != rec.etag {
        return Err(format!("recording {} changed while being served", rec.id).into());
    }
    let mut pieces = Vec::new();
    if pos < loaded.head.len() as u64 {
        let end = range.end.min(loaded.head.len() as u64);
        pieces.push(Piece::Static(loaded.head.slice(pos as usize..end as usize)));
        pos = end;
    }
    file_pieces(&loaded.layout, pos..range.end, &mut pieces);
    send_pieces(inst, &loaded, futures::stream::iter(pieces), false, tx).await.map(|_| ())
}

/// Appends the pieces of `range` (inside the `mdat` payload) of the full file: at most
/// [`PIECE_BYTES`] each, never crossing a chunk.
fn file_pieces(layout: &Layout, range: Range<u64>, pieces: &mut Vec<Piece>) {
    let mut pos = range.start;
    while pos < range.end {
        let ci = layout.chunk_at(pos);
        let c = layout.chunks[ci];
        let off = pos - c.out_start;
        let n = (range.end - pos).min(c.len_bytes - off).min(PIECE_BYTES);
        pieces.push(Piece::Chunk { ci, off, n });
        pos += n;
    }
}

/// Fetches pieces (up to [`LOOKAHEAD`] concurrently, so the next chunk is read and transmuxed
/// while the current one is written) and sends them in order. `shared`: take whole segments
/// through the node's segment cache (one store read per segment for all concurrent viewers)
/// rather than reading exactly the piece. Ok(false) when the receiver is gone.
async fn send_pieces(
    inst: &UserInstance,
    loaded: &LoadedRecording,
    pieces: impl Stream<Item = Piece>,
    shared: bool,
    tx: &Tx,
) -> Result<bool, BoxError> {
    let mut stream = std::pin::pin!(pieces.map(|p| fetch_piece(inst, loaded, p, shared)).buffered(LOOKAHEAD));
    while let Some(piece) = stream.next().await {
        if tx.send(Ok(piece?)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The quasi-stream of a recording: a fragmented MP4 from the sync sample at or before
/// `start_s`, made and sent as it goes (bounded memory: at most [`LOOKAHEAD`] pieces are in
/// flight and [`CHANNEL_PIECES`] queued). Dropping the body stops the producer.
///
/// For a live recording it is the live tail: without `start_s` it starts at the newest segment
/// that begins with a sync sample (the latest GOP, at once), then sends a fragment as each new
/// segment lands, and ends when the broadcast ends.
///
/// `slot` (the user's stream slot) is held until the stream ends or the client goes away.
pub fn stream_body(
    state: AppState,
    inst: Arc<UserInstance>,
    slot: Slot,
    rec: Recording,
    start_s: Option<f64>,
) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_PIECES);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = produce_stream(&state, &inst, rec.clone(), start_s, &tx).await {
            tracing::warn!(recording = rec.id, "stream production failed: {e}");
            let _ = tx.send(Err(e)).await;
        }
    });
    axum::body::Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// A live viewer more than this many segments behind the newest skips ahead to the newest
/// segment that begins with a sync sample.
pub const MAX_BEHIND_SEGMENTS: u32 = 4;

/// How often a live viewer re-reads the catalog when no in-process notification came (ingest on
/// another node).
const LIVE_POLL: Duration = Duration::from_secs(1);

async fn produce_stream(
    state: &AppState,
    inst: &Arc<UserInstance>,
    mut rec: Recording,
    start_s: Option<f64>,
    tx: &Tx,
) -> Result<(), BoxError> {
    // Subscribe before reading, so no append between the two is missed.
    let mut changes = state.ingest.hub.subscribe(rec.id);
    let mut loaded = inst.layouts.get_or_build(&state.catalog, &rec).await?;
    if tx.send(Ok(Bytes::from(frag::init_segment(&loaded.layout)))).await.is_err() {
        return Ok(());
    }
    let (mut next, mut from) = match start_s {
        Some(s) => frag::start_point(&loaded.layout, s),
        None if rec.live => (newest_sync_segment(&loaded.layout, 0), Vec::new()),
        None => frag::start_point(&loaded.layout, 0.0),
    };
    loop {
        let n = loaded.layout.segments.len() as u32;
        if rec.live && n.saturating_sub(next) > MAX_BEHIND_SEGMENTS {
            next = newest_sync_segment(&loaded.layout, next);
            from.clear();
        }
        if next < n {
            let layout = &loaded.layout;
            let first = next;
            let pieces = futures::stream::iter(first..n).flat_map(|s| {
                let mut pieces = Vec::new();
                let from: &[Option<u32>] = if s == first { &from } else { &[] };
                if let Some(plan) = frag::plan_fragment(layout, s, from) {
                    pieces.push(Piece::Static(Bytes::from(frag::fragment_header(layout, &plan))));
                    for t in &plan.trafs {
                        file_pieces(layout, t.file_range.clone(), &mut pieces);
                    }
                }
                futures::stream::iter(pieces)
            });
            if !send_pieces(inst, &loaded, pieces, true, tx).await? {
                return Ok(());
            }
            next = n;
            from.clear();
        }
        if !rec.live {
            return Ok(());
        }
        // Wait for the recording to grow or end: announced in-process by ingest on this node,
        // or seen in the catalog (ingest on another node). A closed receiver (client gone) stops us.
        loop {
            let now = tokio::select! {
                _ = changes.changed() => changes.borrow_and_update().clone(),
                _ = tokio::time::sleep(LIVE_POLL) => {
                    Some(state.catalog.recording_by_id(rec.id).await?.ok_or("recording removed")?)
                }
                _ = tx.closed() => return Ok(()),
            };
            if let Some(now) = now.filter(|n| n.updated_ms > rec.updated_ms || n.live != rec.live) {
                rec = now;
                break;
            }
        }
        loaded = inst.layouts.get_or_build(&state.catalog, &rec).await?;
    }
}

/// The newest segment at or after `at_least` whose video samples begin with a sync sample (any
/// segment for audio-only recordings); `at_least` if none.
fn newest_sync_segment(layout: &Layout, at_least: u32) -> u32 {
    let Some(video) = layout.tracks.iter().find(|t| t.kind == crate::format::index::TrackKind::Video) else {
        return (layout.segments.len() as u32).saturating_sub(1).max(at_least);
    };
    video
        .runs
        .iter()
        .rev()
        .find(|r| r.segment >= at_least && video.samples[r.first as usize].sync)
        .map_or(at_least, |r| r.segment)
}

/// Pieces fetched concurrently ahead of the one being sent.
const LOOKAHEAD: usize = 3;

/// A part of the response body.
enum Piece {
    /// Bytes already made (head, `moof`).
    Static(Bytes),
    /// `n` bytes at offset `off` of output chunk `ci`.
    Chunk { ci: usize, off: u64, n: u64 },
}

async fn fetch_piece(
    inst: &UserInstance,
    loaded: &LoadedRecording,
    piece: Piece,
    shared: bool,
) -> Result<Bytes, BoxError> {
    let (ci, off, n) = match piece {
        Piece::Static(b) => return Ok(b),
        Piece::Chunk { ci, off, n } => (ci, off, n),
    };
    let c = loaded.layout.chunks[ci];
    let seg = &loaded.layout.segments[c.segment as usize];
    let key = &loaded.object_keys[c.segment as usize];
    match seg.container {
        Container::Fmp4 if !shared => {
            let start = seg.tracks[c.track as usize].chunks[c.chunk as usize].src_start + off;
            let _worker = inst.workers.acquire().await.expect("never closed");
            Ok(inst.store.get_range(key, start..start + n).await?)
        }
        _ => {
            let bytes = segment_chunk(inst, key, seg, c.track, c.chunk).await?;
            Ok(bytes.slice(off as usize..(off + n) as usize))
        }
    }
}

/// Output chunks of one segment, `[track][chunk]`.
type SegChunks = Arc<Vec<Vec<Bytes>>>;

/// The output bytes of one chunk through the node's segment cache. On a miss, every chunk of the
/// segment is made from one read of the stored segment (transmuxed for MPEG-TS, sliced for
/// fMP4): the output visits a segment's chunks one after another, and concurrent callers (live
/// viewers, a request's look-ahead) share that one read.
pub(crate) async fn segment_chunk(
    inst: &UserInstance,
    key: &str,
    seg: &Arc<SegmentIndex>,
    track: u8,
    chunk: u32,
) -> Result<Bytes, BoxError> {
    let cell = inst.layouts.segments.lock().unwrap().get_or_insert(key.to_string(), Default::default).clone();
    let chunks = cell.get_or_try_init(|| make_segment_chunks(inst, key, seg.clone())).await?;
    Ok(chunks[track as usize][chunk as usize].clone())
}

async fn make_segment_chunks(inst: &UserInstance, key: &str, seg: Arc<SegmentIndex>) -> Result<SegChunks, BoxError> {
    // Reading and transmuxing take one of the user's workers (waiting for another request's
    // work on the same segment takes none).
    let _worker = inst.workers.acquire().await.expect("never closed");
    let chunks = || seg.tracks.iter().flat_map(|t| t.chunks.iter());
    let lo = chunks().map(|c| c.src_start).min().expect("segment has chunks");
    let hi = chunks().map(|c| c.src_end).max().expect("segment has chunks");
    let src = inst.store.get_range(key, lo..hi).await?;
    if seg.container == Container::Fmp4 {
        let made = seg
            .tracks
            .iter()
            .map(|t| {
                t.chunks.iter().map(|c| src.slice((c.src_start - lo) as usize..(c.src_end - lo) as usize)).collect()
            })
            .collect();
        return Ok(Arc::new(made));
    }
    tokio::task::spawn_blocking(move || -> Result<SegChunks, BoxError> {
        let mut made = Vec::with_capacity(seg.tracks.len());
        for t in &seg.tracks {
            let mut per_track = Vec::with_capacity(t.chunks.len());
            for c in &t.chunks {
                let mut out = Vec::with_capacity(c.len_bytes as usize);
                let range = (c.src_start - lo) as usize..(c.src_end - lo) as usize;
                crate::format::ts::transmux_chunk(t, c, &src[range], &mut out)?;
                per_track.push(Bytes::from(out));
            }
            made.push(per_track);
        }
        Ok(Arc::new(made))
    })
    .await?
}
