//! Export jobs: many files of a user's tree (clips by time, recordings) copied to a destination:
//! objects under an `s3://BUCKET/PREFIX/` (multipart uploads), a local directory (`jitmux
//! export`), or nothing but their CRC-32s (a job whose result is one ZIP, made just in time
//! when downloaded).
//!
//! A job is rows in the catalog ([`crate::catalog::ExportJob`]), run by whichever node claims it
//! ([`Runner`]). The node holds a lease it renews every third of [`Runner::lease`]; the renewal
//! carries the progress of the item being written and learns of a cancellation. A node that
//! dies stops renewing: once the lease has run out another node claims the job, aborts the
//! multipart upload the dead node left, and goes on from the first item not done. A draining
//! node gives its job up at once ([`crate::catalog::Catalog::release_export`]).
//!
//! Items are written one at a time, each as it is made ([`Items`]): an item's bytes are never
//! all in memory (S3 parts are [`PART_BYTES`]). Items are deterministic (the same spec gives
//! the same bytes, see the ETag recorded per item), so an item redone after a failover is the
//! same object again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError, ExportJob, ExportState, ItemOutcome, ItemState, Lease};
use crate::model::{UserId, parse_rfc3339_ms, rfc3339};
use crate::store::{ArchiveUrl, S3};

/// One item of an export: exactly one of `clip` and `path`, and optionally the object name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExportItem {
    /// A clip by wall-clock time (as `GET /v1/clips/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<ClipItem>,
    /// A recording of the tree: `CAMERA/DAY/NAME.mp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "front/2026-03-01/14-00-00.mp4")]
    pub path: Option<String>,
    /// Object name under the destination (slash-separated); default `CAMERA/START_END.mp4` for a
    /// clip, the path for a recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A clip item: a camera's timeline from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClipItem {
    pub camera: String,
    /// RFC 3339.
    #[schema(example = "2026-03-01T14:02:00Z")]
    pub start: String,
    /// RFC 3339.
    #[schema(example = "2026-03-01T14:04:00.500Z")]
    pub end: String,
    /// `frame` (default) or `keyframe`, as on `/v1/clips`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<String>,
    /// `keep` (default), `collapse` or `refuse` (the item fails if the range has gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaps: Option<String>,
}

/// Where a job's items go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// `s3://BUCKET/PREFIX/`: each item becomes the object PREFIX + name (a multipart upload when
    /// larger than one part). The user needs a grant covering it (`jitmux user grant`).
    S3(String),
    /// One ZIP of the items, downloaded from `/v1/exports/{id}.zip` once the job succeeded. The
    /// job makes each item once to learn its CRC-32; the ZIP is then made just in time.
    Zip(ZipDestination),
}

/// The ZIP destination has no options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ZipDestination {}

impl ExportItem {
    /// Checks the item's shape and gives its object name. Errors are one-line reasons.
    pub fn check(&self) -> Result<String, String> {
        let name = match (&self.clip, &self.path) {
            (Some(c), None) => {
                let time = |t: &str| parse_rfc3339_ms(t).ok_or_else(|| format!("bad time {t:?}: use RFC 3339"));
                let (start, end) = (time(&c.start)?, time(&c.end)?);
                if end <= start {
                    return Err(format!("clip {}..{} ends before it starts", c.start, c.end));
                }
                if !matches!(c.accuracy.as_deref(), None | Some("frame" | "keyframe")) {
                    return Err("accuracy must be 'frame' or 'keyframe'".into());
                }
                if !matches!(c.gaps.as_deref(), None | Some("keep" | "collapse" | "refuse")) {
                    return Err("gaps must be 'keep', 'collapse' or 'refuse'".into());
                }
                format!("{}/{}_{}.mp4", c.camera, rfc3339(start), rfc3339(end))
            }
            (None, Some(p)) => {
                let p = p.trim_start_matches('/');
                if p.split('/').count() != 3 || !p.ends_with(".mp4") {
                    return Err(format!("path {p:?} is not CAMERA/DAY/NAME.mp4"));
                }
                p.to_string()
            }
            _ => return Err("an item has exactly one of 'clip' and 'path'".into()),
        };
        let name = self.name.clone().unwrap_or(name);
        check_object_name(&name)?;
        Ok(name)
    }
}

/// Checks an object name: 1–512 bytes of slash-separated segments, none empty, `.` or `..`,
/// without backslashes or control characters.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(|c| c == '\\' || c.is_control()));
    if ok { Ok(()) } else { Err(format!("object name {name:?} is not a plain relative path")) }
}

/// Checks that `user` may export to `dest`: an S3 prefix must parse and lie under one of the
/// user's grants. Errors are one-line reasons.
pub async fn check_destination(catalog: &Catalog, user: UserId, dest: &Destination) -> Result<(), String> {
    let Destination::S3(url) = dest else { return Ok(()) };
    let url = prefix_url(url)?;
    let grants = catalog.grants(user).await.map_err(|e| e.to_string())?;
    if grants.iter().filter_map(|g| ArchiveUrl::parse(g).ok()).any(|g| url.is_under(&g)) {
        Ok(())
    } else {
        Err(format!("{url} is not granted to this user (jitmux user grant)"))
    }
}

/// `s3://BUCKET/PREFIX` parsed, its key made a prefix (ending in `/`, or empty).
fn prefix_url(url: &str) -> Result<ArchiveUrl, String> {
    let mut u = ArchiveUrl::parse(url)?;
    if !u.key.is_empty() && !u.key.ends_with('/') {
        u.key.push('/');
    }
    Ok(u)
}

/// An item resolved: its length and ETag, and how to make its bytes.
pub struct Resolved {
    pub len_bytes: u64,
    /// Strong ETag of its bytes.
    pub etag: String,
    /// Makes the bytes, in order, all of them.
    pub source: Box<dyn Source>,
}

/// A file's bytes, made in order into the buffers of whoever writes them (so that a writer with
/// buffers of its own, aligned for direct I/O or sized as S3 parts, gets the bytes without a
/// copy through a buffer of the maker's).
#[async_trait]
pub trait Source: Send {
    /// Appends the next bytes to `buf` until it holds `upto` bytes (at most its capacity; `buf`
    /// is never reallocated), fewer only at the end, and gives it back; nothing appended: the
    /// end. Errors: the item's one-line failure (a segment unreadable, the recording changed).
    async fn fill(&mut self, buf: Vec<u8>, upto: usize) -> Result<Vec<u8>, String>;
    /// Does what comes before the first byte (a file's layout), so that a writer can have the
    /// next item ready while it writes the current one. Errors as [`Self::fill`].
    async fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// What jobs know of files: an item of a user's tree resolved to bytes (the media layer,
/// provided by the layer above).
#[async_trait]
pub trait Items: Send + Sync + 'static {
    /// Resolves `item` of `user`. Errors are the item's one-line failure (no media in the range,
    /// no such file, still recording, …).
    async fn resolve(&self, user: UserId, item: &ExportItem) -> Result<Resolved, String>;
}

/// Bytes per S3 part (S3 wants at least 5 MiB for every part but the last); an item up to this
/// size is one PUT.
pub const PART_BYTES: usize = 8 << 20;

/// Where items are written.
#[derive(Clone)]
pub enum Target {
    /// Objects PREFIX + name.
    S3 { s3: Arc<S3>, prefix: ArchiveUrl },
    /// Files DIR/name (directories made as needed; each written to `NAME.part`, then renamed).
    Dir {
        dir: PathBuf,
        /// Each file made durable before it is named (direct writes, `fdatasync`); `false`:
        /// written through the page cache, its writeback left to the kernel, as `cp` and
        /// ffmpeg do ([`FileWriter`]).
        sync: bool,
    },
    /// Nowhere: items are made for their CRC-32 only (the ZIP destination).
    Checksum,
}

impl Target {
    /// The target of a posted destination (S3 through the process's shared client).
    pub async fn of(dest: &Destination) -> Result<Target, String> {
        Ok(match dest {
            Destination::S3(url) => Target::S3 { s3: S3::shared().await, prefix: prefix_url(url)? },
            Destination::Zip(_) => Target::Checksum,
        })
    }

    /// Where `name` goes, for messages: `s3://…`, a path, or the name.
    pub fn location(&self, name: &str) -> String {
        match self {
            Target::S3 { prefix, .. } => format!("s3://{}/{}{name}", prefix.bucket, prefix.key),
            Target::Dir { dir, .. } => dir.join(name).display().to_string(),
            Target::Checksum => name.to_string(),
        }
    }

    /// The length of what is already at `name`, if anything.
    pub async fn existing_len(&self, name: &str) -> Result<Option<u64>, String> {
        match self {
            Target::S3 { s3, prefix } => Ok(s3
                .stat(&prefix.bucket, &format!("{}{name}", prefix.key))
                .await
                .map_err(|e| e.to_string())?
                .map(|m| m.len_bytes)),
            Target::Dir { dir, .. } => Ok(tokio::fs::metadata(dir.join(name)).await.ok().map(|m| m.len())),
            Target::Checksum => Ok(None),
        }
    }

    /// Abandons a multipart upload `upload_id` of `name` left by a node that died.
    pub async fn abort_upload(&self, name: &str, upload_id: &str) {
        if let Target::S3 { s3, prefix } = self {
            let key = format!("{}{name}", prefix.key);
            if let Err(e) = s3.abort_multipart(&prefix.bucket, &key, upload_id).await {
                tracing::warn!("export: aborting upload {upload_id} of {key}: {e}");
            }
        }
    }
}

/// One item being written to a [`Target`].
pub enum Writer {
    S3 {
        s3: Arc<S3>,
        bucket: String,
        key: String,
        /// `None`: one PUT at the end (items up to [`PART_BYTES`]).
        upload_id: Option<String>,
        parts: Vec<(i32, String)>,
        /// The single PUT's body, once made.
        body: Option<Vec<u8>>,
        len_bytes: u64,
    },
    File(FileWriter),
    /// Writes nothing; the buffer is kept for the next fill.
    Checksum(Option<Vec<u8>>),
}

/// Bytes of each direct write of a file writer (the buffer a [`Source`] fills at once).
const FILE_BATCH_BYTES: usize = 8 << 20;

/// Alignment of direct I/O buffers, offsets and lengths, bytes (the largest logical block size
/// in use; Linux `open(2)`, O_DIRECT).
const DIRECT_ALIGN: usize = 4096;

/// An item written to `NAME.part`, then renamed to `NAME`.
///
/// The item's bytes are made into [`FILE_BATCH_BYTES`] buffers ([`Writer::buffer`]), each
/// written by one blocking task while the next one fills (two buffers, taking turns). On Linux
/// the file is opened with `O_DIRECT`: the buffers go to the disk without a copy into the page
/// cache and without the writeback that would follow, so a large export costs little CPU and
/// does not push a serving node's hot segments out of memory. The last buffer is padded to
/// [`DIRECT_ALIGN`] and the file cut back to its length. A file system that refuses direct I/O
/// gets ordinary writes. The data is made durable (`fdatasync`) before the rename: a file under
/// its final name is whole on disk, which is what a resumed export relies on.
///
/// Unsynced (`sync: false`), the file is written through the page cache and its writeback left
/// to the kernel, as `cp` and ffmpeg leave theirs. It is whole under its name for every reader,
/// and on disk some seconds later; a power loss before then can leave it named but short or
/// holed.
pub struct FileWriter {
    /// The file, or the batch being written (which gives the file and its buffer back).
    slot: FileSlot,
    /// Buffers free to fill (two in all: one filling while the other is written).
    spare: Vec<Vec<u8>>,
    /// Bytes handed to the blocking pool so far (the file offset of the next batch).
    written: u64,
    /// A batch shorter than [`FILE_BATCH_BYTES`] was written: it was the last.
    ended: bool,
    /// Durable before the rename (direct writes, `fdatasync`), or left to the page cache.
    sync: bool,
    tmp: PathBuf,
    path: PathBuf,
}

enum FileSlot {
    Idle(std::fs::File),
    Writing(tokio::task::JoinHandle<std::io::Result<(std::fs::File, Vec<u8>)>>),
    /// An earlier write failed (or is being swapped).
    Gone,
}

/// Batch buffers of finished file writers, kept for the next: a fresh buffer's pages are
/// faulted in anew on first use.
static BATCH_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// An empty buffer with room for [`FILE_BATCH_BYTES`] from a [`DIRECT_ALIGN`]ed offset on.
fn batch_buffer() -> Vec<u8> {
    let kept = BATCH_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
    kept.unwrap_or_else(|| Vec::with_capacity(FILE_BATCH_BYTES + DIRECT_ALIGN))
}

fn recycle(buffers: impl IntoIterator<Item = Vec<u8>>) {
    let mut kept = BATCH_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for b in buffers {
        if kept.len() < 8 {
            kept.push(b);
        }
    }
}

/// Offset of the first [`DIRECT_ALIGN`]ed byte of `buf`'s allocation.
fn align_offset(buf: &[u8]) -> usize {
    buf.as_ptr().align_offset(DIRECT_ALIGN)
}

impl FileWriter {
    async fn create(path: PathBuf, sync: bool) -> Result<FileWriter, String> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let tmp = path.with_extension("mp4.part");
        let open = tmp.clone();
        let file = tokio::task::spawn_blocking(move || {
            let create = |flags| {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(flags).open(&open)
            };
            #[cfg(target_os = "linux")]
            if sync && let Ok(f) = create(libc::O_DIRECT) {
                return Ok(f);
            }
            create(0)
        })
        .await
        .map_err(|e| format!("{}: {e}", tmp.display()))?
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(FileWriter {
            slot: FileSlot::Idle(file),
            spare: vec![batch_buffer(), batch_buffer()],
            written: 0,
            ended: false,
            sync,
            tmp,
            path,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> String {
        format!("{}: {e}", self.tmp.display())
    }

    /// The file, once no batch is being written (the batch's buffer goes back to `spare`).
    async fn file(&mut self) -> Result<std::fs::File, String> {
        match std::mem::replace(&mut self.slot, FileSlot::Gone) {
            FileSlot::Idle(file) => Ok(file),
            FileSlot::Writing(task) => {
                let (file, buf) = task.await.map_err(|e| self.err(e))?.map_err(|e| self.err(e))?;
                self.spare.push(buf);
                Ok(file)
            }
            FileSlot::Gone => Err(self.err("an earlier write failed")),
        }
    }

    /// A buffer to fill, positioned at its aligned offset, and the length to fill it to.
    async fn buffer(&mut self) -> Result<(Vec<u8>, usize), String> {
        let mut buf = match self.spare.pop() {
            Some(b) => b,
            None => {
                let file = self.file().await?;
                self.slot = FileSlot::Idle(file);
                self.spare.pop().ok_or_else(|| self.err("no buffer to fill"))?
            }
        };
        buf.clear();
        let at = align_offset(&buf);
        buf.resize(at, 0);
        Ok((buf, at + FILE_BATCH_BYTES))
    }

    /// Waits for the batch being written, then starts writing `buf` (filled from its aligned
    /// offset on; the last block zero-padded, [`write_batch`]).
    async fn put(&mut self, buf: Vec<u8>) -> Result<(), String> {
        let n = buf.len().checked_sub(align_offset(&buf)).ok_or_else(|| self.err("a buffer not from buffer()"))?;
        if self.ended {
            return Err(self.err("bytes after a short batch"));
        }
        self.ended = n < FILE_BATCH_BYTES;
        let file = self.file().await?;
        let at = self.written;
        self.written += n as u64;
        self.slot = FileSlot::Writing(tokio::task::spawn_blocking(move || {
            let mut buf = buf;
            write_batch(&file, &mut buf, at)?;
            Ok((file, buf))
        }));
        Ok(())
    }

    async fn finish(mut self) -> Result<(), String> {
        let file = self.file().await?;
        recycle(std::mem::take(&mut self.spare));
        let (len, sync, tmp, path) = (self.written, self.sync, self.tmp.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            // The padding of the last direct write cut off.
            file.set_len(len)?;
            if sync {
                file.sync_data()?;
            }
            drop(file);
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|e| self.err(e))?
        .map_err(|e| self.err(e))
    }

    async fn abort(mut self) {
        let _ = self.file().await;
        recycle(std::mem::take(&mut self.spare));
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

/// Writes the bytes of `buf` from its aligned offset on at file offset `at` (a multiple of
/// [`DIRECT_ALIGN`]): whole blocks, the last one zero-padded, for a direct write. A file
/// system that refuses the direct write (EINVAL) gets the file switched to ordinary writes.
fn write_batch(file: &std::fs::File, buf: &mut Vec<u8>, at: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let from = align_offset(buf);
    let padded = (buf.len() - from).next_multiple_of(DIRECT_ALIGN);
    // Within the capacity: a batch is at most FILE_BATCH_BYTES, a multiple of DIRECT_ALIGN.
    buf.resize(from + padded, 0);
    let data = &buf[from..];
    match file.write_all_at(data, at) {
        #[cfg(target_os = "linux")]
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            use std::os::fd::AsRawFd;
            // SAFETY: F_GETFL/F_SETFL on an open descriptor change only its status flags.
            unsafe {
                let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
                if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_DIRECT) < 0 {
                    return Err(e);
                }
            }
            file.write_all_at(data, at)
        }
        r => r,
    }
}

impl Writer {
    /// Starts writing `name` (`len_bytes` long) to `target`.
    pub async fn open(target: &Target, name: &str, len_bytes: u64) -> Result<Writer, String> {
        match target {
            Target::S3 { s3, prefix } => {
                let key = format!("{}{name}", prefix.key);
                let upload_id = if len_bytes > PART_BYTES as u64 {
                    Some(s3.create_multipart(&prefix.bucket, &key).await.map_err(|e| e.to_string())?)
                } else {
                    None
                };
                Ok(Writer::S3 {
                    s3: s3.clone(),
                    bucket: prefix.bucket.clone(),
                    key,
                    upload_id,
                    parts: Vec::new(),
                    body: None,
                    len_bytes,
                })
            }
            Target::Dir { dir, sync } => Ok(Writer::File(FileWriter::create(dir.join(name), *sync).await?)),
            Target::Checksum => Ok(Writer::Checksum(None)),
        }
    }

    /// The S3 multipart upload it writes through, if any (recorded so that whoever resumes a
    /// job after this node aborts it).
    pub fn upload_id(&self) -> Option<&str> {
        match self {
            Writer::S3 { upload_id, .. } => upload_id.as_deref(),
            _ => None,
        }
    }

    /// A buffer for the next bytes (to be appended to it, from its length on) and the length
    /// to fill it to: a direct-I/O batch, an S3 part (or the whole object of a single PUT).
    pub async fn buffer(&mut self) -> Result<(Vec<u8>, usize), String> {
        match self {
            Writer::S3 { len_bytes, .. } => {
                let n = (*len_bytes).min(PART_BYTES as u64) as usize;
                Ok((Vec::with_capacity(n), n))
            }
            Writer::File(f) => f.buffer().await,
            Writer::Checksum(spare) => {
                let mut buf = spare.take().unwrap_or_else(|| Vec::with_capacity(PART_BYTES));
                buf.clear();
                let n = buf.capacity();
                Ok((buf, n))
            }
        }
    }

    /// Writes a buffer from [`Self::buffer`], filled; each but the last to the length given.
    pub async fn put(&mut self, buf: Vec<u8>) -> Result<(), String> {
        match self {
            Writer::S3 { s3, bucket, key, upload_id: Some(id), parts, .. } => {
                let number = parts.len() as i32 + 1;
                let etag =
                    s3.upload_part(bucket, key, id, number, Bytes::from(buf)).await.map_err(|e| e.to_string())?;
                parts.push((number, etag));
                Ok(())
            }
            Writer::S3 { body, .. } => match body {
                Some(_) => Err("more bytes than the item's length".into()),
                None => {
                    *body = Some(buf);
                    Ok(())
                }
            },
            Writer::File(f) => f.put(buf).await,
            Writer::Checksum(spare) => {
                *spare = Some(buf);
                Ok(())
            }
        }
    }

    /// Makes what was written the object or file (S3: the completion, or the one PUT; a file:
    /// flushed, synced and renamed into place).
    pub async fn finish(self) -> Result<(), String> {
        match self {
            Writer::S3 { s3, bucket, key, upload_id: Some(id), mut parts, len_bytes, .. } => {
                if parts.is_empty() {
                    let etag = s3.upload_part(&bucket, &key, &id, 1, Bytes::new()).await.map_err(|e| e.to_string())?;
                    parts.push((1, etag));
                }
                s3.complete_multipart(&bucket, &key, &id, &parts, len_bytes).await.map_err(|e| e.to_string())
            }
            Writer::S3 { s3, bucket, key, upload_id: None, body, .. } => {
                s3.put(&bucket, &key, Bytes::from(body.unwrap_or_default())).await.map_err(|e| e.to_string())
            }
            Writer::File(f) => f.finish().await,
            Writer::Checksum(_) => Ok(()),
        }
    }

    /// Abandons what was written (S3: the multipart upload; a file: its `.part`).
    pub async fn abort(self) {
        match self {
            Writer::S3 { s3, bucket, key, upload_id: Some(id), .. } => {
                if let Err(e) = s3.abort_multipart(&bucket, &key, &id).await {
                    tracing::warn!("export: aborting upload {id} of {key}: {e}");
                }
            }
            Writer::File(f) => f.abort().await,
            _ => {}
        }
    }
}

/// Why writing stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The user cancelled the job.
    Cancelled,
    /// Another node holds the job now.
    Lost,
    /// This node is shutting down.
    Drain,
}

/// What a job's writer shares with its lease renewal and with progress displays: the item being
/// written, its bytes so far, and whether to stop.
#[derive(Debug, Default)]
pub struct Progress {
    /// Position of the item being written (-1: none).
    pub seq: AtomicI64,
    /// Bytes of it written so far.
    pub bytes: AtomicU64,
    /// 0, or 1 + the [`Stop`] reason.
    stop: AtomicU8,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { seq: AtomicI64::new(-1), ..Default::default() }
    }

    pub fn stop(&self, why: Stop) {
        let v = match why {
            Stop::Cancelled => 1,
            Stop::Lost => 2,
            Stop::Drain => 3,
        };
        let _ = self.stop.compare_exchange(0, v, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            1 => Some(Stop::Cancelled),
            2 => Some(Stop::Lost),
            3 => Some(Stop::Drain),
            _ => None,
        }
    }
}

/// How copying one item went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    Stopped(Stop),
    /// The item failed (making it, or writing it); the reason on one line.
    Failed(String),
}

/// Copies `item` into `writer`, paced to at most `rate` bytes/s when given, counting in
/// `progress` and stopping when it says so; returns the bytes' CRC-32 (ISO 3309, as ZIP uses
/// it) when `crc` asks for it. The writer is finished on success and aborted otherwise.
pub async fn copy(
    item: Resolved,
    mut writer: Writer,
    progress: &Progress,
    rate: Option<u64>,
    crc: bool,
) -> Result<Option<u32>, CopyError> {
    let t0 = Instant::now();
    let mut hasher = crc.then(crc32fast::Hasher::new);
    let mut done = 0u64;
    let mut source = item.source;
    let copied = async {
        loop {
            // Also after the last bytes (paced, they may have waited): a stopped item is not
            // made the object.
            if let Some(why) = progress.stopped() {
                return Err(CopyError::Stopped(why));
            }
            if done == item.len_bytes {
                return Ok(());
            }
            let (buf, upto) = writer.buffer().await.map_err(CopyError::Failed)?;
            let start = buf.len();
            let upto = upto.min(start.saturating_add((item.len_bytes - done).try_into().unwrap_or(usize::MAX)));
            let buf = source.fill(buf, upto).await.map_err(CopyError::Failed)?;
            let n = buf.len() - start;
            if n == 0 {
                return Err(CopyError::Failed(format!("made {done} bytes of {}", item.len_bytes)));
            }
            if let Some(h) = &mut hasher {
                h.update(&buf[start..]);
            }
            writer.put(buf).await.map_err(CopyError::Failed)?;
            done += n as u64;
            progress.bytes.store(done, Ordering::Relaxed);
            metrics::counter!("jitmux_export_bytes_total").increment(n as u64);
            if let Some(rate) = rate.filter(|&r| r > 0) {
                // Paced in short sleeps, so that a stop is seen within 100 ms.
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                while let Some(wait) = due.checked_sub(t0.elapsed()) {
                    if progress.stopped().is_some() {
                        break;
                    }
                    tokio::time::sleep(wait.min(Duration::from_millis(100))).await;
                }
            }
        }
    }
    .await;
    drop(source);
    match copied {
        Ok(()) => match writer.finish().await {
            Ok(()) => Ok(hasher.map(|h| h.finalize())),
            Err(e) => Err(CopyError::Failed(e)),
        },
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

/// Runs export jobs on this node: claims one at a time from the catalog's queue and works it to
/// its end, or until the node drains.
pub struct Runner {
    pub catalog: Catalog,
    pub items: Arc<dyn Items>,
    /// This process's name in the jobs' `node` column: the node name and a random suffix, so a
    /// restarted node never mistakes its predecessor's lease for its own.
    pub node: String,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
    /// Pace of each job, bytes/s (`None`: as fast as it goes).
    pub rate: Option<u64>,
    /// How often an idle node looks for a job.
    pub poll: Duration,
}

/// How a job run ended on this node.
enum Ending {
    Finished,
    Stopped(Stop),
}

impl Runner {
    /// A runner named after `node` (random suffix added) with the default lease (15 s) and poll
    /// interval (1 s).
    pub fn new(catalog: Catalog, items: Arc<dyn Items>, node: &str) -> Runner {
        Runner {
            catalog,
            items,
            node: format!("{node}#{:06x}", rand::random::<u32>() & 0xff_ffff),
            lease: Duration::from_secs(15),
            rate: None,
            poll: Duration::from_secs(1),
        }
    }

    /// Claims and runs jobs until `closing` turns true; a job in progress then is given up for
    /// another node to resume at once.
    pub async fn run(self: Arc<Self>, mut closing: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *closing.borrow() {
                return;
            }
            match self.catalog.claim_export(&self.node, self.lease.as_millis() as i64).await {
                Ok(Some(job)) => self.run_job(job, closing.clone()).await,
                Ok(None) => {}
                Err(e) => tracing::warn!("export queue: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
        }
    }

    async fn run_job(&self, job: ExportJob, closing: tokio::sync::watch::Receiver<bool>) {
        let id = job.id;
        tracing::info!(export = %id, node = %self.node, run = job.runs, "export job claimed");
        metrics::counter!("jitmux_export_runs_total").increment(1);
        let progress = Arc::new(Progress::new());
        let renewal = tokio::spawn(renew(
            self.catalog.clone(),
            job.clone(),
            self.node.clone(),
            self.lease,
            progress.clone(),
            closing,
        ));
        let ended = self.work(&job, &progress).await;
        renewal.abort();
        let cat = &self.catalog;
        let r = match ended {
            Ok(Ending::Finished) => Ok(()),
            Ok(Ending::Stopped(why)) => {
                tracing::info!(export = %id, "export job stopped on this node: {why:?}");
                if why == Stop::Drain { cat.release_export(id, &self.node).await } else { Ok(()) }
            }
            Err(JobError::Job(e)) => {
                tracing::warn!(export = %id, "export job failed: {e}");
                cat.finish_export(id, &self.node, ExportState::Failed, Some(&e)).await.map(drop)
            }
            Err(JobError::Catalog(e)) => {
                // The lease runs out and another node (or this one) resumes the job.
                tracing::warn!(export = %id, "export job: catalog: {e}");
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::warn!(export = %id, "export job: catalog: {e}");
        }
    }

    async fn work(&self, job: &ExportJob, progress: &Progress) -> Result<Ending, JobError> {
        let (cat, node, id) = (&self.catalog, self.node.as_str(), job.id);
        let dest: Destination =
            serde_json::from_str(&job.destination).map_err(|e| JobError::Job(format!("destination: {e}")))?;
        check_destination(cat, job.user_id, &dest).await.map_err(JobError::Job)?;
        let target = Target::of(&dest).await.map_err(JobError::Job)?;
        let items = cat.export_items(id).await?;
        let pending: Vec<_> = items.into_iter().filter(|i| i.state == ItemState::Pending).collect();
        // Every item resolved first, so that the job's total is known from the start.
        let mut todo = Vec::with_capacity(pending.len());
        for it in pending {
            if let Some(why) = progress.stopped() {
                return Ok(Ending::Stopped(why));
            }
            if let Some(up) = &it.upload_id {
                target.abort_upload(&it.name, up).await;
            }
            let resolved = match serde_json::from_str::<ExportItem>(&it.spec) {
                Ok(spec) => self.items.resolve(job.user_id, &spec).await.map(|r| (spec, r)),
                Err(e) => Err(format!("item: {e}")),
            };
            match resolved {
                Ok((spec, r)) => {
                    if !cat.start_export_item(id, node, it.seq, r.len_bytes as i64, None).await? {
                        return Ok(Ending::Stopped(Stop::Lost));
                    }
                    todo.push((it, spec));
                }
                Err(e) => {
                    metrics::counter!("jitmux_export_items_total", "result" => "failed").increment(1);
                    if !cat.finish_export_item(id, node, it.seq, &ItemOutcome::Failed(e)).await? {
                        return Ok(Ending::Stopped(Stop::Lost));
                    }
                }
            }
        }
        // Each item resolved again (its layout from the user's cache, when still there) and
        // prepared in a task of its own, one item ahead of the one being written.
        let mut prepared = futures::stream::iter(todo)
            .map(|(it, spec)| {
                let (items, user) = (self.items.clone(), job.user_id);
                let task = tokio::spawn(async move {
                    let mut r = items.resolve(user, &spec).await?;
                    r.source.prepare().await?;
                    Ok::<_, String>(r)
                });
                // A job that stops (cancel, drain, lost lease) stops its look-ahead too.
                let guard = AbortOnDrop(task.abort_handle());
                async move {
                    let r = task.await.unwrap_or_else(|e| Err(format!("export task: {e}")));
                    drop(guard);
                    (it, r)
                }
            })
            .buffered(2);
        while let Some((it, resolved)) = prepared.next().await {
            progress.seq.store(it.seq, Ordering::SeqCst);
            progress.bytes.store(0, Ordering::SeqCst);
            let outcome = match resolved {
                Err(e) => ItemOutcome::Failed(e),
                Ok(r) => {
                    let (len_bytes, etag) = (r.len_bytes, r.etag.clone());
                    match Writer::open(&target, &it.name, len_bytes).await {
                        Err(e) => ItemOutcome::Failed(e),
                        Ok(w) => {
                            if !cat.start_export_item(id, node, it.seq, len_bytes as i64, w.upload_id()).await? {
                                w.abort().await;
                                return Ok(Ending::Stopped(Stop::Lost));
                            }
                            match copy(r, w, progress, self.rate, true).await {
                                Ok(crc) => {
                                    if let Some(crc) = crc {
                                        cat.set_file_crc(&etag, crc).await?;
                                    }
                                    ItemOutcome::Done { len_bytes: len_bytes as i64, etag }
                                }
                                Err(CopyError::Stopped(why)) => return Ok(Ending::Stopped(why)),
                                Err(CopyError::Failed(e)) => ItemOutcome::Failed(e),
                            }
                        }
                    }
                }
            };
            let result = if matches!(outcome, ItemOutcome::Done { .. }) { "done" } else { "failed" };
            metrics::counter!("jitmux_export_items_total", "result" => result).increment(1);
            if let ItemOutcome::Failed(e) = &outcome {
                tracing::info!(export = %id, item = it.seq, "export item failed: {e}");
            }
            if !cat.finish_export_item(id, node, it.seq, &outcome).await? {
                return Ok(Ending::Stopped(progress.stopped().unwrap_or(Stop::Lost)));
            }
        }
        let totals = cat.export_totals(id).await?;
        let (state, error) = if totals.failed > 0 {
            (ExportState::Failed, Some(format!("{} of {} items failed", totals.failed, totals.items)))
        } else {
            (ExportState::Succeeded, None)
        };
        cat.finish_export(id, node, state, error.as_deref()).await?;
        tracing::info!(export = %id, state = state.as_str(), items = totals.items, bytes = totals.bytes_done, "export job finished");
        Ok(Ending::Finished)
    }
}

/// Aborts a task when dropped (a future that owns it dropped before its end).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A job that cannot go on.
enum JobError {
    /// For good (bad destination, not granted): the job fails with this reason.
    Job(String),
    /// The catalog failed: the job is left for its lease to run out.
    Catalog(CatalogError),
}

impl From<CatalogError> for JobError {
    fn from(e: CatalogError) -> Self {
        JobError::Catalog(e)
    }
}

/// Renews `node`'s lease on `job` every third of `lease`, carrying `progress`, until told to
/// stop: a cancellation or a lost lease stops the writer, and so does the node closing.
async fn renew(
    catalog: Catalog,
    job: ExportJob,
    node: String,
    lease: Duration,
    progress: Arc<Progress>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = closing.wait_for(|c| *c) => {
                progress.stop(Stop::Drain);
                return;
            }
        }
        let seq = progress.seq.load(Ordering::SeqCst);
        let at = (seq >= 0).then(|| (seq, progress.bytes.load(Ordering::Relaxed) as i64));
        match catalog.renew_export(job.id, &node, lease.as_millis() as i64, at).await {
            Ok(Lease::Held) => {}
            Ok(Lease::Cancelled) => return progress.stop(Stop::Cancelled),
            Ok(Lease::Lost) => return progress.stop(Stop::Lost),
            // Tried again at the next beat; the lease may run out meanwhile, and then every
            // write of this node is refused.
            Err(e) => tracing::warn!(export = %job.id, "renewing the export lease: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that appends at most `step` bytes per fill of `data` (a maker whose pieces do
    /// not line up with the writer's buffers) and fills each buffer to `upto` but at the end.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        steps: std::iter::Cycle<std::array::IntoIter<usize, 5>>,
    }

    #[async_trait]
    impl Source for Pieces {
        async fn fill(&mut self, mut buf: Vec<u8>, upto: usize) -> Result<Vec<u8>, String> {
            let cap = buf.capacity();
            while buf.len() < upto.min(cap) && self.at < self.data.len() {
                let n = self.steps.next().unwrap().min(upto - buf.len()).min(self.data.len() - self.at);
                buf.extend_from_slice(&self.data[self.at..self.at + n]);
                self.at += n;
            }
            assert_eq!(buf.capacity(), cap, "a fill never reallocates");
            Ok(buf)
        }
    }

    fn item(data: &[u8]) -> Resolved {
        Resolved {
            len_bytes: data.len() as u64,
            etag: String::new(),
            source: Box::new(Pieces {
                data: data.to_vec(),
                at: 0,
                steps: [1, 4095, 1 << 20, 3, 777_777].into_iter().cycle(),
            }),
        }
    }

    /// Files of several batches with a tail that is no whole block, of exactly one batch, and
    /// of no bytes: each comes out whole under its final name, with no `.part` left, and with
    /// the CRC-32 of its bytes.
    #[tokio::test]
    async fn file_writer_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // Durable (direct writes) and left to the page cache alike.
        for sync in [true, false] {
            let target = Target::Dir { dir: dir.path().join(format!("sync-{sync}")), sync };
            for (name, len) in
                [("a/big.mp4", 2 * FILE_BATCH_BYTES + 12_345), ("exact.mp4", FILE_BATCH_BYTES), ("empty.mp4", 0)]
            {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
                let w = Writer::open(&target, name, len as u64).await.unwrap();
                let crc = copy(item(&data), w, &Progress::new(), None, true).await.unwrap();
                assert_eq!(crc, Some(crc32fast::hash(&data)), "{name}");
                let path = std::path::PathBuf::from(target.location(name));
                assert!(std::fs::read(&path).unwrap() == data, "{name}, sync {sync}");
                assert!(!path.with_extension("mp4.part").exists(), "{name}");
            }
        }
        let target = Target::Dir { dir: dir.path().to_path_buf(), sync: true };
        // A source that ends early fails the item and leaves nothing behind.
        let mut short = item(b"0123456789");
        short.len_bytes = 20;
        let w = Writer::open(&target, "short.mp4", 20).await.unwrap();
        let e = copy(short, w, &Progress::new(), None, false).await.unwrap_err();
        assert_eq!(e, CopyError::Failed("made 10 bytes of 20".into()));
        assert!(!dir.path().join("short.mp4").exists() && !dir.path().join("short.mp4.part").exists());
        // So does a stopped one.
        let progress = Progress::new();
        progress.stop(Stop::Cancelled);
        let w = Writer::open(&target, "gone.mp4", 10).await.unwrap();
        let e = copy(item(b"0123456789"), w, &progress, None, false).await.unwrap_err();
        assert_eq!(e, CopyError::Stopped(Stop::Cancelled));
        assert!(!dir.path().join("gone.mp4").exists() && !dir.path().join("gone.mp4.part").exists());
        // And one stopped while its last bytes wait for the pace (10 bytes at 20 bytes/s).
        let progress = Arc::new(Progress::new());
        let stopper = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stopper.stop(Stop::Drain);
        });
        let w = Writer::open(&target, "paced.mp4", 10).await.unwrap();
        let e = copy(item(b"0123456789"), w, &progress, Some(20), false).await.unwrap_err();
        assert_eq!(e, CopyError::Stopped(Stop::Drain));
        assert!(!dir.path().join("paced.mp4").exists() && !dir.path().join("paced.mp4.part").exists());
    }
}
