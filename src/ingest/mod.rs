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
//! store, rows into the catalog (which announces each append to every node's live viewers). A
//! broadcast is a recording marked live from its first segment; it ends on `#EXT-X-ENDLIST` or
//! after `idle_timeout` without uploads, and is then an ordinary archived recording whose head
//! is stored for fast first bytes.
//!
//! Any node takes any upload (a load balancer spreads an encoder's PUTs over all nodes, and a
//! node may die between two of them). Each upload runs in two phases:
//! 1. without any lock: parse, index and hash the upload (blocking pool) and store its object
//!    (content-addressed, so doing it twice is harmless);
//! 2. under the camera's lock in the catalog ([`Catalog::lock_broadcast`], one transaction): take
//!    up the broadcast's stored state ([`broadcast::Saved`]; this node's copy is reused when it
//!    is current and caught up with what other nodes appended otherwise), apply the upload,
//!    append what it makes ready, store the new state, commit. A failure rolls the whole
//!    transaction back, and the node forgets its copy.
//!
//! So two nodes appending at once are ordered by the lock and never interleave, duplicate or
//! drop a segment, and a node killed mid-upload leaves the broadcast as it was before that
//! upload.

pub mod broadcast;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use broadcast::Broadcast;
use broadcast::Step;

use crate::catalog::{Camera, Catalog, CatalogError, LockedBroadcast};
use crate::format::FormatError;
use crate::format::fmp4::InitSegment;
use crate::format::index::{Codec, SegmentIndex, TrackKind};
use crate::format::mp4::LayoutError;
use crate::format::{fmp4, m3u8};
use crate::model::{CameraId, keys, now_ms, sha256_hex};
use crate::store::{ObjectStore, StoreError};
use broadcast::Saved;

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

/// The live ingest of this node. It holds no state a broadcast needs: per camera a copy of the
/// broadcast as this node last saw it (reused when still current), and parsed init segments.
pub struct Ingest {
    catalog: Catalog,
    store: Arc<dyn ObjectStore>,
    copies: Mutex<HashMap<CameraId, LocalCopy>>,
    /// Parsed fMP4 init segments by object key, the most recently used.
    inits: Mutex<lru::LruCache<String, Arc<InitSegment>>>,
    /// Uploads being processed (see [`Ingest::wait_idle`]).
    in_flight: AtomicUsize,
    idle_tx: tokio::sync::watch::Sender<()>,
    /// A broadcast with no upload for this long ends.
    pub idle_timeout: Duration,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
}

/// Parsed init segments a node keeps (one per fMP4 broadcast in progress, a few KB each).
const INITS_CACHED: std::num::NonZeroUsize = std::num::NonZeroUsize::new(4096).unwrap();

/// This node's copy of one camera's broadcast (a cache: dropped when unused for the idle timeout,
/// rebuilt from the catalog when needed again), and when it was last used.
struct LocalCopy {
    bc: Arc<tokio::sync::Mutex<Option<Broadcast>>>,
    used: Instant,
}

/// Runs CPU work (parsing, hashing, layout) on the blocking pool.
async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| IngestError::Task(e.to_string()))
}

/// One upload, prepared (phase 1) and waiting to be applied under the camera's lock.
enum Op {
    Playlist(m3u8::MediaPlaylist),
    Init {
        file: String,
        key: String,
        init: Arc<InitSegment>,
    },
    Segment {
        file: String,
        indexed: broadcast::Indexed,
    },
    /// An fMP4 segment stored before any init segment.
    AwaitInit {
        file: String,
        key: String,
    },
    /// An upload that was refused: its playlist entry becomes a gap.
    Reject(String),
}

/// Counts an upload in flight for as long as it lives.
struct InFlight<'a>(&'a Ingest);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_tx.send_replace(());
        }
    }
}

impl Ingest {
    /// Ingest over `catalog` and `store`; broadcasts end after `idle_timeout` without uploads.
    pub fn new(catalog: Catalog, store: Arc<dyn ObjectStore>, idle_timeout: Duration) -> Self {
        Ingest {
            catalog,
            store,
            copies: Mutex::new(HashMap::new()),
            inits: Mutex::new(lru::LruCache::new(INITS_CACHED)),
            in_flight: AtomicUsize::new(0),
            idle_tx: tokio::sync::watch::channel(()).0,
            idle_timeout,
            max_upload_bytes: 256 << 20,
        }
    }

    /// Waits until no upload is being processed (a draining node lets them finish).
    pub async fn wait_idle(&self) {
        let mut rx = self.idle_tx.subscribe();
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Takes one complete upload `file` (`index.m3u8`, `init.mp4`, `NAME.ts`, `NAME.m4s`) for
    /// camera `cam` and appends whatever it makes ready. A refused segment becomes a gap; the
    /// broadcast goes on.
    pub async fn upload(&self, cam: &Camera, file: &str, data: Bytes) -> Result<(), IngestError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _counted = InFlight(self);
        crate::model::check_name(file).map_err(|_| IngestError::BadName(file.to_string()))?;
        let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if !matches!(ext, "m3u8" | "mp4" | "ts" | "m4s") {
            return Err(IngestError::UnsupportedKind(file.to_string()));
        }
        let prepared = match ext {
            "m3u8" => {
                let name = file.to_string();
                let pl = cpu(move || m3u8::parse(&data)).await?;
                Ok(Op::Playlist(pl.map_err(|source| IngestError::Unparsable { file: name, source })?))
            }
            "mp4" => self.prepare_init(cam, file, data).await,
            _ => self.prepare_segment(cam, file, ext == "m4s", data).await,
        };
        match prepared {
            Ok(op) => self.apply(cam, op).await,
            Err(e) if ext == "ts" || ext == "m4s" => {
                // The refusal is recorded, so that the playlist's entry becomes a gap.
                if let Err(e2) = self.apply(cam, Op::Reject(file.to_string())).await {
                    tracing::warn!(camera = cam.name, file, "recording the refusal: {e2}");
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn prepare_init(&self, cam: &Camera, file: &str, data: Bytes) -> Result<Op, IngestError> {
        let parsed = {
            let data = data.clone();
            cpu(move || fmp4::parse_init(&data)).await?
        };
        let init = Arc::new(parsed.map_err(|source| IngestError::Unparsable { file: file.to_string(), source })?);
        let key = keys::segment(cam.user_id, &sha256_hex(&data), "mp4");
        self.store.put(&key, data).await?;
        self.inits.lock().unwrap_or_else(PoisonError::into_inner).put(key.clone(), init.clone());
        Ok(Op::Init { file: file.to_string(), key, init })
    }

    /// Indexes and stores one segment against the broadcast's last committed state (its init
    /// segment, or the parameter sets carried so far).
    async fn prepare_segment(&self, cam: &Camera, file: &str, fmp4: bool, data: Bytes) -> Result<Op, IngestError> {
        let mut bc = Broadcast::new(cam.clone());
        if let Some(state) = self.catalog.broadcast_state(cam.id).await? {
            let saved = Saved::decode(&state)?;
            self.load_inits(&saved).await?;
            // Only the stored part is needed here: the layout is not caught up.
            bc.restore(saved, |k| self.init(k))?;
        }
        let Some(job) = bc.segment_job(fmp4) else {
            let key = keys::segment(cam.user_id, &sha256_hex(&data), "m4s");
            self.store.put(&key, data).await?;
            return Ok(Op::AwaitInit { file: file.to_string(), key });
        };
        let (name, bytes) = (file.to_string(), data.clone());
        let indexed = cpu(move || broadcast::index_segment(&name, job, &bytes)).await??;
        self.store.put(&indexed.pending.object_key, data).await?;
        Ok(Op::Segment { file: file.to_string(), indexed })
    }

    /// This node's copy of camera `cam`'s broadcast, marked used now.
    fn copy(&self, cam: CameraId) -> Arc<tokio::sync::Mutex<Option<Broadcast>>> {
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        let c = copies.entry(cam).or_insert_with(|| LocalCopy { bc: Default::default(), used: Instant::now() });
        c.used = Instant::now();
        c.bc.clone()
    }

    /// Drops the copies unused for `idle` (another node took the broadcast's uploads, or it
    /// ended), so that a node's memory follows the broadcasts it serves.
    fn prune_copies(&self, idle: Duration) {
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        copies.retain(|_, c| c.used.elapsed() < idle || Arc::strong_count(&c.bc) > 1);
    }

    fn init(&self, key: &str) -> Option<Arc<InitSegment>> {
        self.inits.lock().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Parses (once per node) the init segments a stored state names.
    async fn load_inits(&self, saved: &Saved) -> Result<(), IngestError> {
        for key in saved.init_keys() {
            if self.init(key).is_some() {
                continue;
            }
            let b = self.store.get(key).await?;
            let file = key.to_string();
            let init = cpu(move || fmp4::parse_init(&b)).await?;
            let init = Arc::new(init.map_err(|source| IngestError::Unparsable { file, source })?);
            self.inits.lock().unwrap_or_else(PoisonError::into_inner).put(key.to_string(), init);
        }
        Ok(())
    }

    /// Phase 2: applies `op` to the camera's broadcast under its catalog lock, appends what is
    /// ready and stores the new state, in one transaction. Returns the upload's own refusal
    /// (a codec change) after recording it as a gap.
    async fn apply(&self, cam: &Camera, op: Op) -> Result<(), IngestError> {
        let copy = self.copy(cam.id);
        let mut copy = copy.lock().await;
        let mut locked = self.catalog.lock_broadcast(cam.id).await?;
        // Taken out: on any error below the copy is dropped, and the next upload starts from
        // the catalog.
        let mut bc = copy.take().unwrap_or_else(|| Broadcast::new(cam.clone()));
        bc.camera = cam.clone();
        self.sync(&mut bc, locked.state.as_deref()).await?;
        let refusal = match op {
            Op::Playlist(pl) => {
                bc.set_playlist(pl);
                None
            }
            Op::Init { file, key, init } => {
                for (name, seg_key) in bc.add_init(file, init, key) {
                    if let Err(e) = self.index_stored(&mut bc, &name, &seg_key).await {
                        tracing::warn!(camera = cam.name, file = name, "upload rejected: {e}");
                        bc.reject(name);
                    }
                }
                None
            }
            Op::Segment { file, indexed } => match bc.accept(&file, indexed) {
                Ok(p) => {
                    bc.add_pending(file, p);
                    None
                }
                Err(e) => {
                    bc.reject(file);
                    Some(e)
                }
            },
            // An init segment arrived meanwhile.
            Op::AwaitInit { file, key } if bc.segment_job(true).is_some() => {
                match self.index_stored(&mut bc, &file, &key).await {
                    Ok(()) => None,
                    Err(e) => {
                        bc.reject(file);
                        Some(e)
                    }
                }
            }
            Op::AwaitInit { file, key } => {
                bc.await_init(file, key);
                None
            }
            Op::Reject(file) => {
                bc.reject(file);
                None
            }
        };
        self.advance(&mut bc, &mut locked).await?;
        self.finish(bc, locked, &mut copy, refusal).await
    }

    /// Stores the broadcast's new state (or forgets it, ended), commits, keeps the copy.
    async fn finish(
        &self,
        bc: Broadcast,
        mut locked: LockedBroadcast,
        copy: &mut Option<Broadcast>,
        refusal: Option<IngestError>,
    ) -> Result<(), IngestError> {
        if bc.ended() {
            locked.clear().await?;
        } else {
            locked.save(&bc.save().encode(), now_ms()).await?;
        }
        locked.commit().await?;
        if !bc.ended() {
            *copy = Some(bc);
        }
        refusal.map_or(Ok(()), Err)
    }

    /// Brings `bc` up to the stored state `state` (`None`: no broadcast in progress): the stored
    /// part taken up, the segments other nodes appended pushed.
    async fn sync(&self, bc: &mut Broadcast, state: Option<&[u8]>) -> Result<(), IngestError> {
        let saved = match state {
            Some(b) => Saved::decode(b)?,
            None => Saved::default(),
        };
        self.load_inits(&saved).await?;
        let Some((id, from)) = bc.restore(saved, |k| self.init(k))? else { return Ok(()) };
        let rec = self
            .catalog
            .recording_by_id(id)
            .await?
            .ok_or_else(|| IngestError::Resume(format!("recording {id} is gone")))?;
        let segs = self.catalog.segments_from(id, from).await?;
        let n = segs.len();
        let decoded = cpu(move || {
            segs.into_iter()
                .map(|s| {
                    let index = SegmentIndex::decode(&s.sample_index)
                        .map_err(|e| IngestError::Resume(format!("segment {}: {e}", s.seq)))?;
                    Ok((s, index))
                })
                .collect::<Result<Vec<_>, IngestError>>()
        })
        .await??;
        bc.catch_up(rec, decoded)?;
        tracing::debug!(recording = %id, from, segments = n, "caught up with the catalog");
        Ok(())
    }

    /// Indexes an fMP4 segment stored before its init segment arrived.
    async fn index_stored(&self, bc: &mut Broadcast, file: &str, key: &str) -> Result<(), IngestError> {
        let Some(job) = bc.segment_job(true) else { return Ok(()) };
        let data = self.store.get(key).await?;
        let name = file.to_string();
        let indexed = cpu(move || broadcast::index_segment(&name, job, &data)).await??;
        let pending = bc.accept(file, indexed)?;
        bc.add_pending(file.to_string(), pending);
        Ok(())
    }

    /// Carries out the broadcast's steps until it waits: appends in playlist order, then its
    /// end after `#EXT-X-ENDLIST`, all in `locked`'s transaction.
    async fn advance(&self, bc: &mut Broadcast, locked: &mut LockedBroadcast) -> Result<(), IngestError> {
        loop {
            match bc.next_step(now_ms()) {
                Step::Wait => return Ok(()),
                Step::Start(new) => {
                    let rec = locked.insert_recording(&new).await?;
                    tracing::info!(recording = %rec.id, camera = bc.camera.name, "broadcast started");
                    bc.appended(rec);
                }
                Step::Grow(rec, segment) => {
                    locked.append_segment(&rec, &segment).await?;
                    bc.appended(rec);
                }
                Step::End => {
                    self.end(bc, locked, "EXT-X-ENDLIST").await?;
                    return Ok(());
                }
            }
        }
    }

    /// Ends a broadcast: stores the finished file's head (for fast first bytes; a failure only
    /// costs that) and marks the recording as ended, in `locked`'s transaction.
    async fn end(&self, bc: &mut Broadcast, locked: &mut LockedBroadcast, why: &str) -> Result<(), IngestError> {
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
            locked.end_live(&mut rec).await?;
            tracing::info!(recording = %rec.id, "broadcast ended ({why})");
        }
        Ok(())
    }

    /// Ends broadcasts that saw no upload for `idle_timeout`, whichever node took their
    /// uploads, forever (spawn it once per node; nodes racing for one broadcast are ordered by
    /// its lock, and the later finds it ended). Each turn also ends live recordings of no
    /// broadcast left idle (a growing playlist no longer scanned).
    pub async fn sweep_idle(self: Arc<Self>) {
        let timeout = self.idle_timeout;
        let tick = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let cutoff = now_ms() - timeout.as_millis() as i64;
            match self.catalog.end_idle_live(cutoff).await {
                Ok(n) if n > 0 => tracing::info!("ended {n} idle live recording(s)"),
                Ok(_) => {}
                Err(e) => tracing::warn!("idle sweep: {e}"),
            }
            match self.catalog.idle_broadcasts(cutoff).await {
                Ok(cams) => {
                    for cam in cams {
                        if let Err(e) = self.end_idle(cam, cutoff).await {
                            tracing::warn!(camera = %cam, "ending idle broadcast: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("idle sweep: {e}"),
            }
            self.prune_copies(timeout);
            tokio::time::sleep(tick).await;
        }
    }

    async fn end_idle(&self, cam: CameraId, cutoff: i64) -> Result<(), IngestError> {
        let Some(camera) = self.catalog.camera_by_id(cam).await? else { return Ok(()) };
        let copy = self.copy(cam);
        let mut copy = copy.lock().await;
        let mut locked = self.catalog.lock_broadcast(cam).await?;
        if locked.state.is_none() || !locked.idle_since(cutoff) {
            return Ok(());
        }
        let mut bc = copy.take().unwrap_or_else(|| Broadcast::new(camera.clone()));
        self.sync(&mut bc, locked.state.as_deref()).await?;
        self.end(&mut bc, &mut locked, "idle").await?;
        locked.clear().await?;
        locked.commit().await?;
        Ok(())
    }
}
