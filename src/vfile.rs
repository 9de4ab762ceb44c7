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
use futures::Stream;
use http::{HeaderMap, HeaderValue};
use lru::LruCache;

use crate::catalog::{Catalog, Recording};
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
    ts_chunks: Mutex<LruCache<(String, u8, u32), Bytes>>,
}

impl LayoutCache {
    /// A cache holding up to `n` layouts and 32 transmuxed chunks.
    pub fn new(n: NonZeroUsize) -> Self {
        LayoutCache {
            layouts: Mutex::new(LruCache::new(n)),
            ts_chunks: Mutex::new(LruCache::new(NonZeroUsize::new(32).unwrap())),
        }
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

/// One recording served as a full MP4.
pub struct Mp4File {
    state: AppState,
    rec: Recording,
}

impl Mp4File {
    pub fn new(state: AppState, rec: Recording) -> Self {
        Mp4File { state, rec }
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
        tokio::spawn(async move {
            if let Err(e) = produce(&state, &rec, range, &tx).await {
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
async fn produce(state: &AppState, rec: &Recording, range: Range<u64>, tx: &Tx) -> Result<(), BoxError> {
    let loaded = state.layouts.get_or_build(&state.catalog, rec).await?;
    if loaded.layout.len_bytes != rec.len_bytes as u64 || loaded.etag != rec.etag {
        return Err(format!("recording {} changed while being served", rec.id).into());
    }
    let layout = &loaded.layout;
    let mut pos = range.start;
    while pos < range.end {
        let piece = if pos < loaded.head.len() as u64 {
            loaded.head.slice(pos as usize..range.end.min(loaded.head.len() as u64) as usize)
        } else {
            let c = layout.chunks[layout.chunk_at(pos)];
            let seg = &layout.segments[c.segment as usize];
            let chunk = seg.tracks[c.track as usize].chunks[c.chunk as usize];
            let key = &loaded.object_keys[c.segment as usize];
            let off = pos - c.out_start;
            let n = (range.end - pos).min(c.len_bytes - off).min(PIECE_BYTES);
            match seg.container {
                Container::Fmp4 => {
                    let start = chunk.src_start + off;
                    state.store.get_range(key, start..start + n).await?
                }
                Container::Ts => {
                    let bytes = ts_chunk(state, key, seg, c.track, c.chunk).await?;
                    bytes.slice(off as usize..(off + n) as usize)
                }
            }
        };
        pos += piece.len() as u64;
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The transmuxed bytes of one MPEG-TS chunk, from the LRU or made now. On a miss, every chunk
/// of the segment is transmuxed from one read of the stored segment (the output visits a
/// segment's chunks one after another, so the others are needed next).
async fn ts_chunk(
    state: &AppState,
    key: &str,
    seg: &Arc<SegmentIndex>,
    track: u8,
    chunk: u32,
) -> Result<Bytes, BoxError> {
    let ck = (key.to_string(), track, chunk);
    if let Some(b) = state.layouts.ts_chunks.lock().unwrap().get(&ck) {
        return Ok(b.clone());
    }
    let chunks = || seg.tracks.iter().flat_map(|t| t.chunks.iter());
    let lo = chunks().map(|c| c.src_start).min().expect("segment has chunks");
    let hi = chunks().map(|c| c.src_end).max().expect("segment has chunks");
    let src = state.store.get_range(key, lo..hi).await?;
    let seg = seg.clone();
    let made = tokio::task::spawn_blocking(move || -> Result<Vec<(u8, u32, Bytes)>, BoxError> {
        let mut made = Vec::new();
        for (ti, t) in seg.tracks.iter().enumerate() {
            for (ci, c) in t.chunks.iter().enumerate() {
                let mut out = Vec::with_capacity(c.len_bytes as usize);
                let range = (c.src_start - lo) as usize..(c.src_end - lo) as usize;
                crate::format::ts::transmux_chunk(t, c, &src[range], &mut out)?;
                made.push((ti as u8, ci as u32, Bytes::from(out)));
            }
        }
        Ok(made)
    })
    .await??;
    let mut cache = state.layouts.ts_chunks.lock().unwrap();
    let mut wanted = None;
    for (ti, ci, bytes) in made {
        if (ti, ci) == (track, chunk) {
            wanted = Some(bytes.clone());
        }
        cache.put((key.to_string(), ti, ci), bytes);
    }
    Ok(wanted.expect("requested chunk is in its segment"))
}
