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
use crate::service::AppState;

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

/// Recently used layouts by recording (bounded LRU), plus transmuxed MPEG-TS chunks.
pub struct LayoutCache {
    layouts: Mutex<LruCache<(i64, i64), Arc<LoadedRecording>>>,
    /// Transmuxed MPEG-TS segments by object key: `[track][chunk]` bytes, made once even when
    /// several requests (or a request's look-ahead) want them at the same time.
    ts_segments: Mutex<LruCache<String, Arc<tokio::sync::OnceCell<TsChunks>>>>,
}

impl LayoutCache {
    /// A cache holding up to `n` layouts and 16 transmuxed MPEG-TS segments.
    pub fn new(n: NonZeroUsize) -> Self {
        LayoutCache {
            layouts: Mutex::new(LruCache::new(n)),
            ts_segments: Mutex::new(LruCache::new(NonZeroUsize::new(16).unwrap())),
        }
    }

    /// Whether the layout of `rec` is cached.
    pub fn contains(&self, rec: &Recording) -> bool {
        self.layouts.lock().unwrap().contains(&(rec.id, rec.updated_ms))
    }

    /// The layout of `rec`, from the cache or built from the catalog's sample indexes (reads no
    /// segment).
    pub async fn get_or_build(&self, catalog: &Catalog, rec: &Recording) -> Result<Arc<LoadedRecording>, BoxError> {
        let key = (rec.id, rec.updated_ms);
        if let Some(l) = self.layouts.lock().unwrap().get(&key) {
            return Ok(l.clone());
        }
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
        let loaded = Arc::new(loaded);
        self.layouts.lock().unwrap().put(key, loaded.clone());
        Ok(loaded)
    }
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
    user_id: i64,
    rec: Recording,
}

impl Mp4File {
    pub fn new(state: AppState, user_id: i64, rec: Recording) -> Self {
        Mp4File { state, user_id, rec }
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
        let user_id = self.user_id;
        tokio::spawn(async move {
            if let Err(e) = produce(&state, user_id, &rec, range, &tx).await {
                tracing::warn!(recording = rec.id, "body production failed: {e}");
                let _ = tx.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Box::pin(sync_wrapper::SyncStream::new(stream))
    }

    fn add_headers(&self, h: &mut HeaderMap) {
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    }

    fn etag(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("\"{}\"", self.rec.etag)).ok()
    }

    fn last_modified(&self) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(self.rec.updated_ms.max(0) as u64))
    }
}

type Tx = tokio::sync::mpsc::Sender<Result<Bytes, BoxError>>;

/// Sends the bytes `range` of the recording's MP4 into `tx`; returns early (Ok) when the
/// receiver is gone.
///
/// Bytes of the head come from the stored head object unless the layout is already cached;
/// the layout, needed for `mdat` bytes, is built concurrently meanwhile.
async fn produce(state: &AppState, user_id: i64, rec: &Recording, range: Range<u64>, tx: &Tx) -> Result<(), BoxError> {
    let head_len = rec.head_len_bytes as u64;
    let mut pos = range.start;
    if pos < head_len && !state.layouts.contains(rec) {
        let build = (range.end > head_len).then(|| {
            let (state, rec) = (state.clone(), rec.clone());
            tokio::spawn(async move { state.layouts.get_or_build(&state.catalog, &rec).await })
        });
        let end = range.end.min(head_len);
        match state.store.get_range(&head_key(user_id, &rec.etag), pos..end).await {
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
    let loaded = state.layouts.get_or_build(&state.catalog, rec).await?;
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
    send_pieces(state, &loaded, futures::stream::iter(pieces), tx).await
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
/// while the current one is written) and sends them in order; Ok when done or when the
/// receiver is gone.
async fn send_pieces(
    state: &AppState,
    loaded: &LoadedRecording,
    pieces: impl Stream<Item = Piece>,
    tx: &Tx,
) -> Result<(), BoxError> {
    let mut stream = std::pin::pin!(pieces.map(|p| fetch_piece(state, loaded, p)).buffered(LOOKAHEAD));
    while let Some(piece) = stream.next().await {
        if tx.send(Ok(piece?)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The quasi-stream of a recording: a fragmented MP4 from the sync sample at or before
/// `start_s`, made and sent as it goes (bounded memory: at most [`LOOKAHEAD`] pieces are in
/// flight and [`CHANNEL_PIECES`] queued). Dropping the body stops the producer.
pub fn stream_body(state: AppState, rec: Recording, start_s: f64) -> axum::body::Body {
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_PIECES);
    tokio::spawn(async move {
        if let Err(e) = produce_stream(&state, &rec, start_s, &tx).await {
            tracing::warn!(recording = rec.id, "stream production failed: {e}");
            let _ = tx.send(Err(e)).await;
        }
    });
    axum::body::Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

async fn produce_stream(state: &AppState, rec: &Recording, start_s: f64, tx: &Tx) -> Result<(), BoxError> {
    let loaded = state.layouts.get_or_build(&state.catalog, rec).await?;
    let layout = &loaded.layout;
    if tx.send(Ok(Bytes::from(frag::init_segment(layout)))).await.is_err() {
        return Ok(());
    }
    let (first_seg, from) = frag::start_point(layout, start_s);
    let pieces = futures::stream::iter(first_seg..layout.segments.len() as u32).flat_map(|s| {
        let mut pieces = Vec::new();
        let from: &[Option<u32>] = if s == first_seg { &from } else { &[] };
        if let Some(plan) = frag::plan_fragment(layout, s, from) {
            pieces.push(Piece::Static(Bytes::from(frag::fragment_header(layout, &plan))));
            for t in &plan.trafs {
                file_pieces(layout, t.file_range.clone(), &mut pieces);
            }
        }
        futures::stream::iter(pieces)
    });
    send_pieces(state, &loaded, pieces, tx).await
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

async fn fetch_piece(state: &AppState, loaded: &LoadedRecording, piece: Piece) -> Result<Bytes, BoxError> {
    let (ci, off, n) = match piece {
        Piece::Static(b) => return Ok(b),
        Piece::Chunk { ci, off, n } => (ci, off, n),
    };
    let c = loaded.layout.chunks[ci];
    let seg = &loaded.layout.segments[c.segment as usize];
    let key = &loaded.object_keys[c.segment as usize];
    match seg.container {
        Container::Fmp4 => {
            let start = seg.tracks[c.track as usize].chunks[c.chunk as usize].src_start + off;
            Ok(state.store.get_range(key, start..start + n).await?)
        }
        Container::Ts => {
            let bytes = ts_chunk(state, key, seg, c.track, c.chunk).await?;
            Ok(bytes.slice(off as usize..(off + n) as usize))
        }
    }
}

/// Transmuxed chunks of one MPEG-TS segment, `[track][chunk]`.
type TsChunks = Arc<Vec<Vec<Bytes>>>;

/// The transmuxed bytes of one MPEG-TS chunk. On a miss, every chunk of the segment is
/// transmuxed from one read of the stored segment (the output visits a segment's chunks one
/// after another, so the others are needed next); concurrent callers share that work.
async fn ts_chunk(
    state: &AppState,
    key: &str,
    seg: &Arc<SegmentIndex>,
    track: u8,
    chunk: u32,
) -> Result<Bytes, BoxError> {
    let cell = state.layouts.ts_segments.lock().unwrap().get_or_insert(key.to_string(), Default::default).clone();
    let chunks = cell.get_or_try_init(|| transmux_segment(state, key, seg.clone())).await?;
    Ok(chunks[track as usize][chunk as usize].clone())
}

async fn transmux_segment(state: &AppState, key: &str, seg: Arc<SegmentIndex>) -> Result<TsChunks, BoxError> {
    let chunks = || seg.tracks.iter().flat_map(|t| t.chunks.iter());
    let lo = chunks().map(|c| c.src_start).min().expect("segment has chunks");
    let hi = chunks().map(|c| c.src_end).max().expect("segment has chunks");
    let src = state.store.get_range(key, lo..hi).await?;
    tokio::task::spawn_blocking(move || -> Result<TsChunks, BoxError> {
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
