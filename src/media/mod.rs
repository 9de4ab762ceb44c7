//! Media: files of the tree made into bytes, whoever asks (an HTTP request, a ZIP member, an
//! export job). No HTTP here: a file is a [`FileSpec`] (an ordered list of recording ranges),
//! resolved against the catalog into a [`File`]; [`body`] makes any byte range of its full MP4
//! and [`fragments`] its quasi-stream (and live tail), both as streams of [`Bytes`]; [`filler`]
//! makes the whole full MP4 into the caller's buffers (exports).
//!
//! ```text
//! FileSpec ──catalog rows──► File (length, ETag, modification time: from the rows alone)
//!    │                        │
//!    └─► LoadedFile (Layout from the sample indexes; cached per user by spec and version)
//!          body(range):  head bytes (stored head object, or the layout) + mdat chunks
//!                        fMP4 chunk: a ranged read of the stored segment
//!                        TS chunk:   the segment read once and transmuxed, shared by viewers
//!          fill(buf):    the whole file in order into the caller's buffers, each segment
//!                        read once and transmuxed straight into them (not cached)
//!          fragments():  init, then moof + mdat per segment (live: as segments land)
//! ```
//!
//! Each user has a [`UserMedia`]: a store handle that reaches only their objects, their caches,
//! and their share of workers (the pieces made at once for all their bodies together).

mod body;
mod cache;
pub mod chunks;
mod clip;
mod fill;
mod spec;
mod stream;
pub mod thumb;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

pub use crate::format::mp4::clip::{Accuracy, ClipError, Gaps};
pub use body::{BodyStream, body};
pub use cache::LoadedFile;
pub use clip::open_clip;
pub use fill::{Filler, filler};
pub use spec::{ClipSpan, Cut, File, FileSpec, MediaRange, Part};
pub use stream::{MAX_BEHIND_SEGMENTS, Stop, fragments, never_stop};

use crate::catalog::{Catalog, CatalogError, Recording};
use crate::format::FormatError;
use crate::format::mp4::{FORMAT_VERSION, LayoutError};
use crate::model::{RecordingId, UserId};
use crate::store::{ObjectStore, ScopedStore, StoreError};

/// Why bytes of a file cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored sample index does not decode (catalog corruption).
    #[error("recording {recording}, segment {seq}: stored sample index: {source}")]
    Index { recording: RecordingId, seq: i64, source: FormatError },
    /// The stored indexes do not make a layout.
    #[error("recording {0}: {1}")]
    Layout(RecordingId, LayoutError),
    /// A stored segment's bytes do not match its index (the object changed behind jitmux).
    #[error("segment object {key}: bytes do not match the index: {source}")]
    Transmux { key: String, source: FormatError },
    /// The recording changed between its row and its layout (a live append); ask again.
    #[error("recording {0} changed while being served")]
    Changed(RecordingId),
    /// The recording is gone from the catalog.
    #[error("recording {0} was removed")]
    Gone(RecordingId),
    /// A clip cannot be cut from the recordings.
    #[error("{0}")]
    Clip(ClipError),
    /// A blocking task failed (panicked or was cancelled).
    #[error("background task failed: {0}")]
    Task(String),
}

/// One user's media: a store handle that reaches only their objects, their layout and segment
/// caches, and their share of workers.
pub struct UserMedia {
    pub user: UserId,
    /// The user's objects only ([`crate::model::keys::user_prefix`]).
    pub store: Arc<ScopedStore>,
    cache: cache::Cache,
    /// Pieces (reads, transmuxes, thumbnails) made at once for all of the user's bodies.
    workers: Semaphore,
    /// When the store handle's archive grants were last read from the catalog.
    grants_read: std::sync::Mutex<Option<std::time::Instant>>,
    /// Held while the grants are re-read: concurrent requests (every live viewer waking for a
    /// segment) wait for one read instead of each making its own.
    grants_refresh: tokio::sync::Mutex<()>,
}

/// How long the archive grants a user's store handle holds may lag the catalog: a revoked
/// grant stops reads within this.
pub const GRANTS_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl UserMedia {
    /// The media of `user` over the node's `store`, making at most `max_workers` pieces at once.
    pub fn new(store: Arc<dyn ObjectStore>, user: UserId, max_workers: usize) -> Self {
        UserMedia {
            user,
            store: Arc::new(ScopedStore::new(store, crate::model::keys::user_prefix(user))),
            cache: cache::Cache::new(),
            workers: Semaphore::new(max_workers.max(1)),
            grants_read: std::sync::Mutex::new(None),
            grants_refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Re-reads the user's archive grants (`jitmux user grant`) into the store handle when the
    /// copy is older than [`GRANTS_TTL`]. Grants that do not parse are ignored (and logged).
    pub async fn refresh_grants(&self, catalog: &Catalog) -> Result<(), MediaError> {
        let lock = || self.grants_read.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = || lock().is_some_and(|t| t.elapsed() < GRANTS_TTL);
        if fresh() {
            return Ok(());
        }
        let _one = self.grants_refresh.lock().await;
        if fresh() {
            return Ok(());
        }
        let urls = catalog.grants(self.user).await?;
        let grants = urls
            .iter()
            .filter_map(|u| {
                crate::store::ArchiveUrl::parse(u).map_err(|e| tracing::warn!("grant of user {}: {e}", self.user)).ok()
            })
            .collect();
        self.store.set_grants(grants);
        *lock() = Some(std::time::Instant::now());
        Ok(())
    }

    /// Takes one of the user's workers for the duration of the returned permit.
    async fn worker(&self) -> Result<tokio::sync::SemaphorePermit<'_>, MediaError> {
        // The semaphore is never closed; a closed one would only mean shutting down.
        self.workers.acquire().await.map_err(|e| MediaError::Task(e.to_string()))
    }

    /// The layout of `file`, from the cache or built from the catalog's sample indexes (reads no
    /// segment).
    pub async fn load(&self, catalog: &Catalog, file: &File) -> Result<Arc<LoadedFile>, MediaError> {
        self.refresh_grants(catalog).await?;
        self.cache.load(catalog, file).await
    }
}

/// The recording as the current [`FORMAT_VERSION`] lays it out: a recording laid out by an
/// older version gets its length, head and ETag recomputed once (head stored, row updated).
pub async fn current(catalog: &Catalog, media: &UserMedia, rec: Recording) -> Result<Recording, MediaError> {
    if rec.format_version == FORMAT_VERSION as i64 {
        return Ok(rec);
    }
    let mut rec = rec;
    let loaded = media.load(catalog, &File::whole(rec.clone())).await?;
    rec.etag = loaded.etag.clone();
    rec.len_bytes = loaded.layout.len_bytes as i64;
    rec.head_len_bytes = loaded.head.len() as i64;
    rec.format_version = FORMAT_VERSION as i64;
    let key = crate::model::keys::head(media.user, &rec.etag);
    media.store.put(&key, loaded.head.clone()).await?;
    catalog.set_layout(rec.id, rec.len_bytes, rec.head_len_bytes, &rec.etag, rec.format_version).await?;
    Ok(rec)
}

/// Bytes `range` of `file`'s full MP4, collected (for tests, small ranges and jobs that want
/// the bytes in memory).
pub async fn read_range(
    catalog: &Catalog,
    media: &Arc<UserMedia>,
    file: &File,
    range: std::ops::Range<u64>,
) -> Result<Bytes, MediaError> {
    use futures::StreamExt;
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut s = body(catalog.clone(), media.clone(), file.clone(), range);
    while let Some(piece) = s.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(Bytes::from(out))
}

/// The CRC-32 of `file`'s full MP4 (what a ZIP member's headers carry): recorded in the catalog
/// by ETag, or computed once by making the file (every byte, through the node's cache) and
/// recorded, so that no later ZIP needs to make it again before its headers.
pub async fn file_crc(catalog: &Catalog, media: &Arc<UserMedia>, file: &File) -> Result<u32, MediaError> {
    use futures::StreamExt;
    if let Some(crc) = catalog.file_crc(file.etag()).await? {
        return Ok(crc);
    }
    let mut h = crc32fast::Hasher::new();
    let mut s = body(catalog.clone(), media.clone(), file.clone(), 0..file.len_bytes());
    while let Some(piece) = s.next().await {
        h.update(&piece?);
    }
    let crc = h.finalize();
    catalog.set_file_crc(file.etag(), crc).await?;
    Ok(crc)
}
