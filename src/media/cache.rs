//! A user's layouts, built once and shared; segments' output chunks through the node's
//! [`super::chunks`] cache.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use super::chunks::SegChunks;
use super::{File, FileSpec, MediaError, UserMedia};
use crate::catalog::{Catalog, Segment};
use crate::format::index::{Container, SegmentIndex};
use crate::format::mp4::{Layout, SegmentInput};
use crate::model::RecordingId;
use crate::store::ObjectStore as _;

/// A file's layout with what serving it needs.
#[derive(Debug)]
pub struct LoadedFile {
    /// The layout; its `head` is moved out (empty), into `head`.
    pub layout: Layout,
    /// `ftyp` + `moov` + `mdat` header as shared bytes.
    pub head: Bytes,
    /// Strong ETag value (no quotes).
    pub etag: String,
    /// Object key (or archive URL) and ETag (archives indexed in place) of each segment,
    /// parallel to `layout.segments`.
    pub objects: Vec<(String, Option<String>)>,
    /// A clip's spans per recording, in clip order; empty for a whole recording.
    pub spans: Vec<super::ClipSpan>,
}

/// Layouts cached per user.
const LAYOUTS: usize = 8;

/// A layout built once and shared by concurrent requests.
type LayoutCell = Arc<tokio::sync::OnceCell<Arc<LoadedFile>>>;

/// Recently used layouts (by spec and version); concurrent requests for the same layout build
/// it once (every live viewer when a segment lands).
pub(super) struct Cache {
    layouts: Mutex<LruCache<(FileSpec, i64), LayoutCell>>,
}

impl Cache {
    pub(super) fn new() -> Self {
        let n = |v: usize| NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN);
        Cache { layouts: Mutex::new(LruCache::new(n(LAYOUTS))) }
    }

    /// Whether the layout of `file` is cached and built.
    pub(super) fn has_layout(&self, file: &File) -> bool {
        let key = (file.spec().clone(), file.version());
        self.layouts.lock().unwrap_or_else(PoisonError::into_inner).peek(&key).is_some_and(|c| c.initialized())
    }

    pub(super) async fn load(&self, catalog: &Catalog, file: &File) -> Result<Arc<LoadedFile>, MediaError> {
        self.load_with(file.spec().clone(), file.version(), || build(catalog, file)).await
    }

    /// The layout cached for `(spec, version)`, or made by `make` (once for concurrent callers).
    pub(super) async fn load_with<F>(
        &self,
        spec: FileSpec,
        version: i64,
        make: impl FnOnce() -> F,
    ) -> Result<Arc<LoadedFile>, MediaError>
    where
        F: std::future::Future<Output = Result<Arc<LoadedFile>, MediaError>>,
    {
        let cell = self
            .layouts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert((spec, version), Default::default)
            .clone();
        Ok(cell.get_or_try_init(make).await?.clone())
    }
}

/// The layout input of stored segment `s` of `recording`: its sample index decoded. Errors:
/// [`MediaError::Index`] for an index that does not decode.
pub(super) fn segment_input(
    recording: RecordingId,
    s: &Segment,
    join_before: bool,
) -> Result<SegmentInput, MediaError> {
    let index =
        SegmentIndex::decode(&s.sample_index).map_err(|source| MediaError::Index { recording, seq: s.seq, source })?;
    Ok(SegmentInput { index: Arc::new(index), join_before })
}

/// Builds a file's layout from the catalog's sample indexes (reads no segment); decoding and
/// layout run on the blocking pool.
async fn build(catalog: &Catalog, file: &File) -> Result<Arc<LoadedFile>, MediaError> {
    let t0 = std::time::Instant::now();
    let mut parts = Vec::with_capacity(file.spec().parts.len());
    for (i, part) in file.spec().parts.iter().enumerate() {
        let segs = catalog.segments(part.recording).await?;
        if segs.is_empty() && i == 0 && catalog.recording_by_id(part.recording).await?.is_none() {
            return Err(MediaError::Gone(part.recording));
        }
        parts.push((part.recording, segs));
    }
    let t_fetch = t0.elapsed();
    let loaded = tokio::task::spawn_blocking(move || -> Result<LoadedFile, MediaError> {
        let t1 = std::time::Instant::now();
        let mut inputs = Vec::new();
        let mut etag = crate::model::EtagHasher::default();
        let mut objects = Vec::new();
        let first = parts.first().map(|p| p.0);
        for (p, (recording, segs)) in parts.iter().enumerate() {
            for (i, s) in segs.iter().enumerate() {
                // A part after the first starts a new run of the timeline.
                let join_before = s.join_before || (p > 0 && i == 0);
                inputs.push(segment_input(*recording, s, join_before)?);
                etag.push(&s.sha256, &s.sample_index, join_before);
                objects.push((s.object_key.clone(), s.object_etag.clone()));
            }
        }
        let t_decode = t1.elapsed();
        let mut layout = Layout::build(&inputs).map_err(|e| MediaError::Layout(first.unwrap_or(RecordingId(0)), e))?;
        tracing::debug!(
            segments = inputs.len(),
            fetch_ms = t_fetch.as_secs_f64() * 1e3,
            decode_ms = t_decode.as_secs_f64() * 1e3,
            build_ms = (t1.elapsed() - t_decode).as_secs_f64() * 1e3,
            "layout built"
        );
        Ok(LoadedFile {
            head: Bytes::from(std::mem::take(&mut layout.head)),
            layout,
            etag: etag.value(),
            objects,
            spans: Vec::new(),
        })
    })
    .await
    .map_err(|e| MediaError::Task(e.to_string()))??;
    Ok(Arc::new(loaded))
}

/// The output bytes of one chunk through the node's cache. On a miss, every chunk of the
/// segment is made from one read of the stored segment (transmuxed for MPEG-TS, sliced for
/// fMP4): the output visits a segment's chunks one after another, and concurrent callers (live
/// viewers, a request's look-ahead, other users of a shared archive) share that one read.
/// Errors: the key outside the user's reach, the store, the transmux.
pub(super) async fn segment_chunk(
    media: &UserMedia,
    object: &(String, Option<String>),
    seg: &Arc<SegmentIndex>,
    track: u8,
    chunk: u32,
) -> Result<Bytes, MediaError> {
    let chunks = segment_chunks(media, object, seg).await?;
    let (key, _) = object;
    chunks.get(track as usize).and_then(|t| t.get(chunk as usize)).cloned().ok_or_else(|| MediaError::Transmux {
        key: key.to_string(),
        source: crate::format::FormatError::new(0, format!("no chunk {chunk} of track {track}")),
    })
}

/// Every output chunk of one segment, from the node's cache or made (see [`segment_chunk`]).
pub(super) async fn segment_chunks(
    media: &UserMedia,
    object: &(String, Option<String>),
    seg: &Arc<SegmentIndex>,
) -> Result<SegChunks, MediaError> {
    let (key, etag) = object;
    media.store.check(key)?;
    super::chunks::node_cache()
        .get_or_make(key, etag.as_deref(), || make_segment_chunks(media, key, etag.as_deref(), seg.clone()))
        .await
}

async fn make_segment_chunks(
    media: &UserMedia,
    key: &str,
    etag: Option<&str>,
    seg: Arc<SegmentIndex>,
) -> Result<SegChunks, MediaError> {
    // Reading and transmuxing take one of the user's workers (waiting for another request's
    // work on the same segment takes none).
    let _worker = media.worker().await?;
    let chunks = || seg.tracks.iter().flat_map(|t| t.chunks.iter());
    let (Some(lo), Some(hi)) = (chunks().map(|c| c.src_start).min(), chunks().map(|c| c.src_end).max()) else {
        return Ok(Arc::new(Vec::new()));
    };
    let src = media.store.get_range_if(key, lo..hi, etag).await?;
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
    let key = key.to_string();
    tokio::task::spawn_blocking(move || -> Result<SegChunks, MediaError> {
        let mut made = Vec::with_capacity(seg.tracks.len());
        for t in &seg.tracks {
            let mut per_track = Vec::with_capacity(t.chunks.len());
            for c in &t.chunks {
                let mut out = Vec::with_capacity(c.len_bytes as usize);
                let range = (c.src_start - lo) as usize..(c.src_end - lo) as usize;
                crate::format::ts::transmux_chunk(t, c, &src[range], &mut out)
                    .map_err(|source| MediaError::Transmux { key: key.clone(), source })?;
                per_track.push(Bytes::from(out));
            }
            made.push(per_track);
        }
        Ok(Arc::new(made))
    })
    .await
    .map_err(|e| MediaError::Task(e.to_string()))?
}
