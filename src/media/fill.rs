//! A file's whole full MP4 made in order into buffers the caller owns: what an export writes.
//!
//! [`super::body`] hands out pieces of the node's cached chunks, which suits many viewers of the
//! same bytes and any Range. An export reads every byte once, in order, and writes it into
//! buffers of its own (a direct-I/O batch, an S3 part). [`Filler`] makes those bytes straight
//! into such a buffer: each segment is read once (ahead of the one being made), transmuxed into
//! the buffer and dropped. That saves a copy of every byte, the cache's bookkeeping and a task
//! hop per piece, and a batch export does not push the segments viewers are watching out of
//! the node's cache.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::cache::LoadedFile;
use super::{File, MediaError, UserMedia};
use crate::catalog::Catalog;
use crate::format::index::Container;
use crate::store::ObjectStore as _;

/// Source bytes read ahead of the chunks being made (at least one segment), bytes.
const READ_AHEAD_BYTES: u64 = 16 << 20;

/// A segment's source bytes being read.
type Read = tokio::task::JoinHandle<Result<Bytes, MediaError>>;

/// One segment's source bytes, as read for the output chunks that use it.
struct Source {
    /// Index into the layout's segments.
    segment: u32,
    /// Offset of `bytes` in the stored segment.
    lo: u64,
    bytes: SourceBytes,
}

enum SourceBytes {
    /// Read ahead through the store's async reads.
    Read(Bytes),
    /// Read on the blocking thread, into a buffer reused from segment to segment.
    Local(Vec<u8>),
}

impl std::ops::Deref for SourceBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            SourceBytes::Read(b) => b,
            SourceBytes::Local(v) => v,
        }
    }
}

/// What a batch's blocking task takes and gives back.
struct Work {
    buf: Vec<u8>,
    ready: Vec<Source>,
    spare: Vec<Vec<u8>>,
    carry: Vec<u8>,
}

/// A file's full MP4 (`ftyp`, `moov`, `mdat`) from its first byte to its last, made into the
/// caller's buffers by [`Filler::fill`]; the same bytes as [`super::body`] over the whole file.
pub struct Filler {
    catalog: Catalog,
    media: Arc<UserMedia>,
    file: File,
    loaded: Option<Arc<LoadedFile>>,
    /// Output bytes made so far.
    pos: u64,
    /// Next output chunk (index into the layout's chunks) to make.
    ci: usize,
    /// A made chunk that did not fit the last buffer; its bytes `carry.1` are still to go out.
    carry: (Vec<u8>, Range<usize>),
    /// Segments being read, in the chunks' order: segment, source bytes `lo..hi`, the read.
    reads: VecDeque<(u32, u64, u64, Read)>,
    /// Segments read, kept while chunks from `ci` on use them.
    ready: Vec<Source>,
    /// Buffers of local reads no chunk uses any more.
    spare: Vec<Vec<u8>>,
    /// Next output chunk whose segment is not being read yet.
    read_ci: usize,
    /// Every segment is read locally ([`crate::store::ObjectStore::reads_locally`]): on the
    /// blocking thread that transmuxes it, just before, into a reused buffer.
    local: bool,
}

/// A [`Filler`] of `file`'s full MP4 (nothing is read before the first [`Filler::fill`]).
pub fn filler(catalog: Catalog, media: Arc<UserMedia>, file: File) -> Filler {
    metrics::counter!("jitmux_media_bodies_total", "kind" => "fill").increment(1);
    Filler {
        catalog,
        media,
        file,
        loaded: None,
        pos: 0,
        ci: 0,
        carry: (Vec::new(), 0..0),
        reads: VecDeque::new(),
        ready: Vec::new(),
        spare: Vec::new(),
        read_ci: 0,
        local: false,
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        for (_, _, _, read) in &self.reads {
            read.abort();
        }
    }
}

impl Filler {
    /// Appends the file's next bytes to `buf` until it holds `upto` bytes (clamped to its
    /// capacity: `buf` is never reallocated, so a buffer aligned for direct I/O stays so), fewer
    /// only at the file's end, and gives `buf` back. Nothing appended: the file is done.
    ///
    /// Errors: the layout (catalog, indexes), the store, a segment that no longer matches its
    /// index ([`MediaError::Transmux`]), a recording that changed since `file` was resolved
    /// ([`MediaError::Changed`]). After an error the filler is spent.
    pub async fn fill(&mut self, mut buf: Vec<u8>, upto: usize) -> Result<Vec<u8>, MediaError> {
        let upto = upto.min(buf.capacity());
        let loaded = self.load().await?;
        let head = &loaded.head;
        if self.pos < head.len() as u64 && buf.len() < upto {
            let from = self.pos as usize;
            let n = (head.len() - from).min(upto - buf.len());
            buf.extend_from_slice(&head[from..from + n]);
            self.pos += n as u64;
        }
        self.take_carry(&mut buf, upto);
        let chunks = &loaded.layout.chunks;
        while buf.len() < upto && self.ci < chunks.len() {
            // The chunks that start in this buffer (the last may not end in it).
            let room = (upto - buf.len()) as u64;
            let (mut cj, mut acc) = (self.ci, 0);
            while cj < chunks.len() && acc < room {
                acc += chunks[cj].len_bytes;
                cj += 1;
            }
            if !self.local {
                self.start_reads(&loaded, cj);
                let last = chunks[cj - 1].segment;
                while self.ready.last().is_none_or(|s| s.segment < last) {
                    let Some((segment, lo, _, read)) = self.reads.pop_front() else {
                        return Err(MediaError::Task("export read-ahead fell behind".into()));
                    };
                    let bytes = read.await.map_err(|e| MediaError::Task(e.to_string()))??;
                    self.ready.push(Source { segment, lo, bytes: SourceBytes::Read(bytes) });
                }
            }
            let mut work = Work {
                buf,
                ready: std::mem::take(&mut self.ready),
                spare: std::mem::take(&mut self.spare),
                carry: std::mem::take(&mut self.carry.0),
            };
            let (l, media, range, local) = (loaded.clone(), self.media.clone(), self.ci..cj, self.local);
            let before = work.buf.len();
            let _worker = self.media.worker().await?;
            let (w, rest) = tokio::task::spawn_blocking(move || {
                let r = make_batch(&l, &media, local, range, &mut work, upto);
                (work, r)
            })
            .await
            .map_err(|e| MediaError::Task(e.to_string()))?;
            (buf, self.ready, self.spare) = (w.buf, w.ready, w.spare);
            self.carry = (w.carry, rest?);
            self.pos += (buf.len() - before) as u64;
            self.ci = cj;
        }
        Ok(buf)
    }

    /// The file's layout (built, or taken from the user's cache, on the first call; no segment
    /// is read). Errors: as [`Self::fill`].
    pub async fn load(&mut self) -> Result<Arc<LoadedFile>, MediaError> {
        if let Some(l) = &self.loaded {
            return Ok(l.clone());
        }
        let l = self.media.load(&self.catalog, &self.file).await?;
        if l.layout.len_bytes != self.file.len_bytes() || l.etag != self.file.etag() {
            return Err(MediaError::Changed(self.file.recording().id));
        }
        self.local = l.objects.iter().all(|(key, _)| self.media.store.reads_locally(key));
        self.loaded = Some(l.clone());
        Ok(l)
    }

    /// Moves what fits of the carried chunk into `buf`.
    fn take_carry(&mut self, buf: &mut Vec<u8>, upto: usize) {
        let (bytes, rest) = &mut self.carry;
        let n = rest.len().min(upto.saturating_sub(buf.len()));
        buf.extend_from_slice(&bytes[rest.start..rest.start + n]);
        rest.start += n;
        self.pos += n as u64;
    }

    /// Starts reading the segments of the chunks up to `until` (exclusive) and those after them
    /// within [`READ_AHEAD_BYTES`], each once.
    fn start_reads(&mut self, loaded: &Arc<LoadedFile>, until: usize) {
        let chunks = &loaded.layout.chunks;
        let mut in_flight: u64 = self.reads.iter().map(|(_, lo, hi, _)| hi - lo).sum();
        while self.read_ci < chunks.len() && (self.read_ci < until || in_flight < READ_AHEAD_BYTES) {
            let segment = chunks[self.read_ci].segment;
            while self.read_ci < chunks.len() && chunks[self.read_ci].segment == segment {
                self.read_ci += 1;
            }
            let (lo, hi) = source_range(loaded, segment, chunks);
            in_flight += hi - lo;
            let (media, object) = (self.media.clone(), loaded.objects[segment as usize].clone());
            // The scoped store checks that the key is within the user's reach.
            let read = tokio::spawn(async move {
                let (key, etag) = &object;
                Ok(media.store.get_range_if(key, lo..hi, etag.as_deref()).await?)
            });
            self.reads.push_back((segment, lo, hi, read));
        }
    }
}

/// The bytes of stored segment `segment` that its output chunks come from.
fn source_range(loaded: &LoadedFile, segment: u32, chunks: &[crate::format::mp4::OutChunk]) -> (u64, u64) {
    let seg = &loaded.layout.segments[segment as usize];
    let from = chunks.partition_point(|c| c.segment < segment);
    let used = chunks[from..].iter().take_while(|c| c.segment == segment);
    used.fold((u64::MAX, 0), |(lo, hi), c| {
        let sc = &seg.tracks[c.track as usize].chunks[c.chunk as usize];
        (lo.min(sc.src_start), hi.max(sc.src_end))
    })
}

/// One batch on the blocking pool: the chunks `range` made ([`make_chunks`]), and the sources
/// no later chunk uses given up (local buffers kept for the next reads). When `local`, each
/// segment is read (into a reused buffer) just before its chunks are made, so it is still in
/// the CPU's cache while they are, and a batch holds one segment's bytes at a time.
fn make_batch(
    loaded: &LoadedFile,
    media: &UserMedia,
    local: bool,
    range: Range<usize>,
    work: &mut Work,
    upto: usize,
) -> Result<Range<usize>, MediaError> {
    let chunks = &loaded.layout.chunks;
    let mut at = range.start;
    while at < range.end {
        // Chunks are in segment order: `at..to` are the batch's chunks of one segment.
        let segment = chunks[at].segment;
        let to = at + chunks[at..range.end].partition_point(|c| c.segment == segment);
        give_up(&mut work.ready, &mut work.spare, segment);
        if local && work.ready.last().is_none_or(|s| s.segment < segment) {
            let (lo, hi) = source_range(loaded, segment, chunks);
            let (key, etag) = &loaded.objects[segment as usize];
            let mut bytes = work.spare.pop().unwrap_or_default();
            media.store.read_blocking(key, lo..hi, etag.as_deref(), &mut bytes)?;
            work.ready.push(Source { segment, lo, bytes: SourceBytes::Local(bytes) });
        }
        let rest = make_chunks(loaded, &work.ready, at..to, &mut work.buf, upto, &mut work.carry)?;
        if !rest.is_empty() {
            // Only the batch's last chunk overflows.
            return Ok(rest);
        }
        at = to;
    }
    if let Some(next) = chunks.get(range.end) {
        give_up(&mut work.ready, &mut work.spare, next.segment);
    }
    Ok(0..0)
}

/// Drops the sources of segments before `segment` (no later chunk uses them), keeping the
/// buffers of local reads in `spare`.
fn give_up(ready: &mut Vec<Source>, spare: &mut Vec<Vec<u8>>, segment: u32) {
    let n = ready.partition_point(|s| s.segment < segment);
    for s in ready.drain(..n) {
        if let SourceBytes::Local(v) = s.bytes {
            spare.push(v);
        }
    }
}

/// Makes output chunks `range` of `loaded` from their segments' `sources`, appending to `buf`
/// up to `upto`; a chunk that does not fit (the last) is made into `carry` and the range of it
/// still to go out is returned (empty when everything fit). Chunks are transmuxed (MPEG-TS) or
/// copied (fMP4) straight into `buf` where whole and fitting.
fn make_chunks(
    loaded: &LoadedFile,
    sources: &[Source],
    range: Range<usize>,
    buf: &mut Vec<u8>,
    upto: usize,
    carry: &mut Vec<u8>,
) -> Result<Range<usize>, MediaError> {
    let layout = &loaded.layout;
    for c in &layout.chunks[range] {
        let seg = &layout.segments[c.segment as usize];
        let key = || loaded.objects[c.segment as usize].0.clone();
        let Some(source) = sources.iter().find(|s| s.segment == c.segment) else {
            return Err(MediaError::Task(format!("segment {} not read", c.segment)));
        };
        let track = &seg.tracks[c.track as usize];
        let sc = &track.chunks[c.chunk as usize];
        let Some(src) = source.bytes.get((sc.src_start - source.lo) as usize..(sc.src_end - source.lo) as usize) else {
            return Err(MediaError::Task(format!("segment {} read short", c.segment)));
        };
        let (off, len) = (c.src_off as usize, c.len_bytes as usize);
        let room = upto - buf.len();
        let made: &[u8] = match seg.container {
            Container::Fmp4 => src.get(off..off + len).ok_or_else(|| MediaError::Transmux {
                key: key(),
                source: crate::format::FormatError::new(0, "chunk shorter than its index says"),
            })?,
            _ if off == 0 && len as u64 == sc.len_bytes && len <= room => {
                crate::format::ts::transmux_chunk(track, sc, src, buf)
                    .map_err(|source| MediaError::Transmux { key: key(), source })?;
                continue;
            }
            _ => {
                carry.clear();
                crate::format::ts::transmux_chunk(track, sc, src, carry)
                    .map_err(|source| MediaError::Transmux { key: key(), source })?;
                carry.get(off..off + len).ok_or_else(|| MediaError::Transmux {
                    key: key(),
                    source: crate::format::FormatError::new(0, "cut past the chunk's end"),
                })?
            }
        };
        let n = len.min(room);
        buf.extend_from_slice(&made[..n]);
        if n < len {
            // Only the last chunk can overflow; what is left of it waits in `carry`.
            if seg.container == Container::Fmp4 {
                *carry = made[n..].to_vec();
                return Ok(0..carry.len());
            }
            return Ok(off + n..off + len);
        }
    }
    Ok(0..0)
}
