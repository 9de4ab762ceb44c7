//! Live ingest from real encoders: ffmpeg's HLS muxer with `-method PUT` as it is.
//!
//! ```text
//! ffmpeg -re -i SRC -c copy -f hls -method PUT -headers "Authorization: Bearer KEY" \
//!        -hls_segment_type mpegts|fmp4 http://HOST/v1/ingest/CAMERA/index.m3u8
//! ```
//! ffmpeg PUTs `init.mp4` (fMP4), each segment when complete, and the playlist after each
//! segment, over concurrent connections, so a playlist can name a segment still uploading.
//!
//! Per camera one [`Broadcast`] (a state machine without I/O, [`broadcast`]) collects the
//! uploads; this driver does its I/O: parsing and hashing on the blocking pool, objects into the
//! store, rows into the catalog (which announces each append to the node's live viewers). A
//! broadcast is a recording marked live from its first segment; it ends on `#EXT-X-ENDLIST` or
//! after `idle_timeout` without uploads, and is then an ordinary archived recording whose head
//! is stored for fast first bytes.

pub mod broadcast;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use broadcast::Broadcast;
use broadcast::Step;

use crate::catalog::{Camera, Catalog, CatalogError};
use crate::format::FormatError;
use crate::format::index::{Codec, SegmentIndex, TrackKind};
use crate::format::mp4::LayoutError;
use crate::format::{fmp4, m3u8};
use crate::model::{CameraId, keys, now_ms, sha256_hex};
use crate::store::{ObjectStore, StoreError};

/// Why an upload is refused or a broadcast cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file name is not a plain name.
    #[error("file name {0:?} may contain only letters, digits, '.', '_' and '-'")]
    BadName(String),
    /// Not a playlist, init segment or media segment.
    #[error("{0}: expected .m3u8, .mp4, .ts or .m4s")]
    UnsupportedKind(String),
    /// The bytes do not parse.
    #[error("{file}: {source}")]
    Unparsable { file: String, source: FormatError },
    /// A segment with no audio or video sample.
    #[error("segment {0}: no audio or video samples")]
    NoSamples(String),
    /// A track's codec differs from the broadcast's first segment.
    #[error("segment {file}: {kind:?} codec changes from {from:?} to {to:?}")]
    CodecChange { file: String, kind: TrackKind, from: Codec, to: Codec },
    /// The segment does not fit the broadcast's timeline.
    #[error("segment {0}: {1}")]
    Layout(String, LayoutError),
    /// A live recording could not be taken up again after a restart.
    #[error("cannot resume the broadcast: {0}")]
    Resume(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

/// The live ingest of this node: the broadcasts in progress.
pub struct Ingest {
    catalog: Catalog,
    store: Arc<dyn ObjectStore>,
    broadcasts: Mutex<HashMap<CameraId, Arc<tokio::sync::Mutex<Broadcast>>>>,
    /// A broadcast with no upload for this long ends.
    pub idle_timeout: Duration,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
}

/// Runs CPU work (parsing, hashing, layout) on the blocking pool.
async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| IngestError::Task(e.to_string()))
}

impl Ingest {
    /// Ingest over `catalog` and `store`; broadcasts end after `idle_timeout` without uploads.
    pub fn new(catalog: Catalog, store: Arc<dyn ObjectStore>, idle_timeout: Duration) -> Self {
        Ingest { catalog, store, broadcasts: Mutex::new(HashMap::new()), idle_timeout, max_upload_bytes: 256 << 20 }
    }

    /// Takes one complete upload `file` (`index.m3u8`, `init.mp4`, `NAME.ts`, `NAME.m4s`) for
    /// camera `cam` and appends whatever it makes ready. A refused segment becomes a gap; the
    /// broadcast goes on.
    pub async fn upload(&self, cam: &Camera, file: &str, data: Bytes) -> Result<(), IngestError> {
        crate::model::check_name(file).map_err(|_| IngestError::BadName(file.to_string()))?;
        let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if !matches!(ext, "m3u8" | "mp4" | "ts" | "m4s") {
            return Err(IngestError::UnsupportedKind(file.to_string()));
        }
        let bc = self.broadcast(cam).await?;
        let mut bc = bc.lock().await;
        bc.touch(Instant::now());
        let result = match ext {
            "m3u8" => {
                let name = file.to_string();
                let pl = cpu(move || m3u8::parse(&data)).await?;
                bc.set_playlist(pl.map_err(|source| IngestError::Unparsable { file: name, source })?);
                Ok(())
            }
            "mp4" => self.init(&mut bc, file, data).await,
            _ => {
                let r = self.segment(&mut bc, file, ext == "m4s", data).await;
                if r.is_err() {
                    bc.reject(file.to_string());
                }
                r
            }
        };
        // Append what is ready even when this upload was refused (it is a gap now).
        self.advance(&mut bc).await?;
        result
    }

    /// The camera's broadcast: the one in progress, one resumed from a live recording this
    /// node was serving before a restart, or a new one.
    async fn broadcast(&self, cam: &Camera) -> Result<Arc<tokio::sync::Mutex<Broadcast>>, IngestError> {
        if let Some(b) = self.broadcasts.lock().unwrap_or_else(PoisonError::into_inner).get(&cam.id) {
            return Ok(b.clone());
        }
        let cutoff = now_ms() - self.idle_timeout.as_millis() as i64;
        let bc = match self.catalog.live_recording(cam.id).await?.filter(|r| r.updated_ms >= cutoff) {
            Some(rec) => self.resume(cam, rec).await?,
            None => Broadcast::new(cam.clone(), Instant::now()),
        };
        let bc = Arc::new(tokio::sync::Mutex::new(bc));
        Ok(self.broadcasts.lock().unwrap_or_else(PoisonError::into_inner).entry(cam.id).or_insert(bc).clone())
    }

    /// Takes up live recording `rec` again: its segments, and the init segment its fMP4
    /// segments use.
    async fn resume(&self, cam: &Camera, rec: crate::catalog::Recording) -> Result<Broadcast, IngestError> {
        let segs = self.catalog.segments(rec.id).await?;
        let init = match segs.last().and_then(|s| s.init_key.clone()) {
            Some(key) => {
                let len = self.store.head(&key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
                let b = self.store.get_range(&key, 0..len).await?;
                let file = key.clone();
                let init = cpu(move || fmp4::parse_init(&b)).await?;
                Some((init.map_err(|source| IngestError::Unparsable { file, source })?, key))
            }
            None => None,
        };
        let (cam, id, n) = (cam.clone(), rec.id, segs.len());
        let bc = cpu(move || {
            let mut decoded = Vec::with_capacity(segs.len());
            for s in segs {
                let index = SegmentIndex::decode(&s.sample_index)
                    .map_err(|e| IngestError::Resume(format!("segment {}: {e}", s.seq)))?;
                decoded.push((s, index));
            }
            Broadcast::resume(cam, rec, decoded, init, Instant::now())
        })
        .await??;
        tracing::info!(recording = %id, segments = n, "resuming live broadcast");
        Ok(bc)
    }

    async fn init(&self, bc: &mut Broadcast, file: &str, data: Bytes) -> Result<(), IngestError> {
        let parsed = {
            let data = data.clone();
            cpu(move || fmp4::parse_init(&data)).await?
        };
        let init = parsed.map_err(|source| IngestError::Unparsable { file: file.to_string(), source })?;
        let key = keys::segment(bc.camera.user_id, &sha256_hex(&data), "mp4");
        self.store.put(&key, data).await?;
        for (name, data) in bc.add_init(file.to_string(), init, key) {
            if let Err(e) = self.segment(bc, &name, true, data).await {
                tracing::warn!(camera = bc.camera.name, file = name, "upload rejected: {e}");
                bc.reject(name);
            }
        }
        Ok(())
    }

    /// Indexes, checks and stores one segment; it then waits for a playlist to name it.
    async fn segment(&self, bc: &mut Broadcast, file: &str, fmp4: bool, data: Bytes) -> Result<(), IngestError> {
        let Some(job) = bc.segment_job(file, fmp4, &data) else { return Ok(()) };
        let (name, bytes) = (file.to_string(), data.clone());
        let indexed = cpu(move || broadcast::index_segment(&name, job, &bytes)).await??;
        let pending = bc.accept(file, indexed)?;
        self.store.put(&pending.object_key, data).await?;
        bc.add_pending(file.to_string(), pending);
        Ok(())
    }

    /// Carries out the broadcast's steps until it waits: appends in playlist order, then its
    /// end after `#EXT-X-ENDLIST`.
    async fn advance(&self, bc: &mut Broadcast) -> Result<(), IngestError> {
        loop {
            match bc.next_step(now_ms()) {
                Step::Wait => return Ok(()),
                Step::Start(new) => match self.catalog.insert_recording(&new).await {
                    Ok(rec) => {
                        tracing::info!(recording = %rec.id, camera = bc.camera.name, "broadcast started");
                        bc.appended(rec);
                    }
                    Err(e) => {
                        bc.append_failed();
                        return Err(e.into());
                    }
                },
                Step::Grow(rec, segment) => match self.catalog.append_segment(&rec, &segment).await {
                    Ok(()) => bc.appended(rec),
                    Err(e) => {
                        bc.append_failed();
                        return Err(e.into());
                    }
                },
                Step::End => {
                    self.end(bc, "EXT-X-ENDLIST").await?;
                    return Ok(());
                }
            }
        }
    }

    /// Ends a broadcast: stores the finished file's head (for fast first bytes; a failure only
    /// costs that), marks the recording as ended, forgets the broadcast.
    async fn end(&self, bc: &mut Broadcast, why: &str) -> Result<(), IngestError> {
        let cam = bc.camera.id;
        if let Some((builder, mut rec)) = bc.end() {
            match cpu(move || builder.layout()).await? {
                Ok(layout) => {
                    let key = keys::head(bc.camera.user_id, &rec.etag);
                    if let Err(e) = self.store.put(&key, Bytes::from(layout.head)).await {
                        tracing::warn!(recording = %rec.id, "head of the ended broadcast not stored: {e}");
                    }
                }
                Err(e) => tracing::warn!(recording = %rec.id, "ended broadcast has no layout: {e}"),
            }
            self.catalog.end_live(&mut rec).await?;
            tracing::info!(recording = %rec.id, "broadcast ended ({why})");
        }
        self.broadcasts.lock().unwrap_or_else(PoisonError::into_inner).remove(&cam);
        Ok(())
    }

    /// Ends broadcasts that saw no upload for `idle_timeout`, forever (spawn it once per node).
    /// Each turn also ends live recordings left idle by any node (e.g. across a restart).
    pub async fn sweep_idle(self: Arc<Self>) {
        let timeout = self.idle_timeout;
        let tick = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            match self.catalog.end_idle_live(now_ms() - timeout.as_millis() as i64).await {
                Ok(n) if n > 0 => tracing::info!("ended {n} idle live recording(s)"),
                Ok(_) => {}
                Err(e) => tracing::warn!("idle sweep: {e}"),
            }
            let all: Vec<Arc<tokio::sync::Mutex<Broadcast>>> =
                self.broadcasts.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
            for bc in all {
                let mut bc = bc.lock().await;
                if !bc.ended()
                    && bc.idle_for(Instant::now()) >= timeout
                    && let Err(e) = self.end(&mut bc, "idle").await
                {
                    tracing::warn!("ending idle broadcast: {e}");
                }
            }
            tokio::time::sleep(tick).await;
        }
    }
}
