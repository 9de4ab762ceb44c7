//! Any byte range of a file's full MP4, made as it is read.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::cache::{LoadedFile, segment_chunk};
use super::{File, MediaError, UserMedia};
use crate::catalog::Catalog;
use crate::format::mp4::Layout;
use crate::store::ObjectStore as _;

/// Largest piece of body made at once, bytes.
pub const PIECE_BYTES: u64 = 1 << 20;
/// Pieces queued between a producer and its reader.
pub(super) const CHANNEL_PIECES: usize = 2;
/// Pieces fetched concurrently ahead of the one being sent.
const LOOKAHEAD: usize = 3;

/// The bytes of a body, in order; an error ends it.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, MediaError>> + Send>>;

pub(super) type Tx = tokio::sync::mpsc::Sender<Result<Bytes, MediaError>>;

/// Runs `produce` in a task of its own that sends into a channel of [`CHANNEL_PIECES`], and
/// returns the receiving end: the next pieces are made while the reader writes the current one,
/// memory stays bounded, and dropping the stream stops the producer at its next send.
pub(super) fn spawn_producer<F>(what: &'static str, produce: impl FnOnce(Tx) -> F + Send + 'static) -> BodyStream
where
    F: std::future::Future<Output = Result<(), MediaError>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_PIECES);
    tokio::spawn(async move {
        if let Err(e) = produce(tx.clone()).await {
            tracing::warn!("{what} production failed: {e}");
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Bytes `range` (`start..end`, end exclusive, within `file.len_bytes()`) of `file`'s full MP4.
///
/// Bytes of the head come from the stored head object (constant time, whatever the file's
/// length; through the node's cache) unless the layout is already cached; the layout, needed
/// for `mdat` bytes, is built meanwhile. `mdat` bytes are output chunks from the node's cache
/// (one read, and for MPEG-TS one transmux, per segment). Errors end the stream; a file
/// whose recording grew or changed since `file` was resolved ends with [`MediaError::Changed`].
pub fn body(catalog: Catalog, media: Arc<UserMedia>, file: File, range: Range<u64>) -> BodyStream {
    metrics::counter!("jitmux_media_bodies_total", "kind" => "file").increment(1);
    spawn_producer("body", move |tx| async move { produce(&catalog, &media, &file, range, &tx).await })
}

async fn produce(
    catalog: &Catalog,
    media: &Arc<UserMedia>,
    file: &File,
    range: Range<u64>,
    tx: &Tx,
) -> Result<(), MediaError> {
    let head_len = file.head_len_bytes();
    let mut pos = range.start;
    if pos < head_len && file.head_stored() && !media.cache.has_layout(file) {
        // The stored head, through the node's cache (a popular file's head is read once).
        let key = crate::model::keys::head(media.user, file.etag());
        let head = super::chunks::node_cache()
            .get_or_make(&key, None, || async {
                Ok(Arc::new(vec![vec![media.store.get_range(&key, 0..head_len).await?]]))
            })
            .await;
        // Built while the head is sent when the range goes past it.
        let build = (range.end > head_len).then(|| {
            let (catalog, media, file) = (catalog.clone(), media.clone(), file.clone());
            tokio::spawn(async move { media.load(&catalog, &file).await })
        });
        match head {
            Ok(head) => {
                let end = range.end.min(head_len);
                let head = head[0][0].slice(pos as usize..end as usize);
                for off in (0..head.len()).step_by(PIECE_BYTES as usize) {
                    let piece = head.slice(off..head.len().min(off + PIECE_BYTES as usize));
                    if tx.send(Ok(piece)).await.is_err() {
                        return Ok(());
                    }
                }
                pos = end;
            }
            // No stored head (a live recording): served from the layout below.
            Err(MediaError::Store(crate::store::StoreError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
        if let Some(build) = build {
            build.await.map_err(|e| MediaError::Task(e.to_string()))??;
        }
        if pos >= range.end {
            return Ok(());
        }
    }
    let loaded = media.load(catalog, file).await?;
    if loaded.layout.len_bytes != file.len_bytes() || loaded.etag != file.etag() {
        return Err(MediaError::Changed(file.recording().id));
    }
    let mut pieces = Vec::new();
    if pos < loaded.head.len() as u64 {
        let end = range.end.min(loaded.head.len() as u64);
        pieces.push(Piece::Static(loaded.head.slice(pos as usize..end as usize)));
        pos = end;
    }
    file_pieces(&loaded.layout, pos..range.end, &mut pieces);
    send_pieces(media, &loaded, futures::stream::iter(pieces), range.end, tx).await.map(|_| ())
}

/// A part of a body.
pub(super) enum Piece {
    /// Bytes already made (head, `moof`).
    Static(Bytes),
    /// `n` bytes at offset `off` of output chunk `ci`.
    Chunk { ci: usize, off: u64, n: u64 },
    /// The body cannot go on here.
    Fail(MediaError),
}

/// Appends the pieces of `range` (inside the `mdat` payload) of the full file: at most
/// [`PIECE_BYTES`] each, never crossing a chunk.
pub(super) fn file_pieces(layout: &Layout, range: Range<u64>, pieces: &mut Vec<Piece>) {
    let mut pos = range.start;
    while pos < range.end {
        let ci = layout.chunk_at(pos);
        let Some(c) = layout.chunks.get(ci) else { return };
        let off = pos - c.out_start;
        let n = (range.end - pos).min(c.len_bytes - off).min(PIECE_BYTES);
        pieces.push(Piece::Chunk { ci, off, n });
        pos += n;
    }
}

/// Fetches pieces (up to [`LOOKAHEAD`] concurrently, so the next chunk is read and transmuxed
/// while the current one is written) and sends them in order. Chunks come whole segments at a
/// time through the node's cache (one store read per segment for all concurrent viewers); on
/// entering a segment, the next one is read ahead ([`READ_AHEAD`]) when the body reaches it
/// (`until`: the body's end offset). Ok(false) when the receiver is gone.
pub(super) async fn send_pieces(
    media: &Arc<UserMedia>,
    loaded: &Arc<LoadedFile>,
    pieces: impl Stream<Item = Piece>,
    until: u64,
    tx: &Tx,
) -> Result<bool, MediaError> {
    let mut stream = std::pin::pin!(pieces.map(|p| fetch_piece(media, loaded, p, until)).buffered(LOOKAHEAD));
    while let Some(piece) = stream.next().await {
        if tx.send(Ok(piece?)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Segments read ahead of the one a sequential body is in.
const READ_AHEAD: usize = 2;

async fn fetch_piece(
    media: &Arc<UserMedia>,
    loaded: &Arc<LoadedFile>,
    piece: Piece,
    until: u64,
) -> Result<Bytes, MediaError> {
    let (ci, off, n) = match piece {
        Piece::Static(b) => return Ok(b),
        Piece::Fail(e) => return Err(e),
        Piece::Chunk { ci, off, n } => (ci, off, n),
    };
    let chunks = &loaded.layout.chunks;
    let c = chunks[ci];
    if off == 0 && (ci == 0 || chunks[ci - 1].segment != c.segment) {
        read_ahead(media, loaded, ci, until);
    }
    let seg = &loaded.layout.segments[c.segment as usize];
    let object = &loaded.objects[c.segment as usize];
    let bytes = segment_chunk(media, object, seg, c.track, c.chunk).await?;
    let from = c.src_off + off;
    Ok(bytes.slice(from as usize..(from + n) as usize))
}

/// Starts reading the [`READ_AHEAD`] segments after the one of output chunk `ci` into the
/// node's cache, those the body reaches before `until` and not cached yet.
fn read_ahead(media: &Arc<UserMedia>, loaded: &Arc<LoadedFile>, ci: usize, until: u64) {
    let chunks = &loaded.layout.chunks;
    let mut seg = chunks[ci].segment;
    let mut j = ci;
    for _ in 0..READ_AHEAD {
        while j < chunks.len() && chunks[j].segment == seg {
            j += 1;
        }
        let Some(next) = chunks.get(j) else { return };
        if next.out_start >= until {
            return;
        }
        seg = next.segment;
        let object = &loaded.objects[seg as usize];
        if super::chunks::node_cache().contains(&object.0, object.1.as_deref()) {
            continue;
        }
        let (media, loaded) = (media.clone(), loaded.clone());
        tokio::spawn(async move {
            let s = seg as usize;
            if let Err(e) = super::cache::segment_chunks(&media, &loaded.objects[s], &loaded.layout.segments[s]).await {
                tracing::debug!("read-ahead of segment {s}: {e}");
            }
        });
    }
}
