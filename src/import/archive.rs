//! Index in place: an HLS media playlist in a bucket → a recording whose segments stay where
//! they lie. Nothing is copied; the catalog records per segment its URL (`s3://BUCKET/KEY`),
//! size and the object's ETag, and every later read is a ranged GET with `If-Match` on it.
//! Only jitmux's own small objects (the file's head, thumbnails) go to the node's store.
//!
//! All or nothing, like [`super::import_playlist`]: the recording appears (or replaces the one
//! indexed from the same playlist before) in one catalog transaction, after every segment was
//! read and indexed.
//!
//! A growing playlist (no `#EXT-X-ENDLIST`, not `VOD`) indexed with `follow_live` is a live
//! recording: each later call indexes only the segments added since and appends them, so the
//! live tail of every node follows it, and `#EXT-X-ENDLIST` ends it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Fetched, ImportError, Placement, Prepared, input, prepare};
use crate::catalog::{Catalog, Recording, Segment, User};
use crate::format::mp4::FORMAT_VERSION;
use crate::model::{day_and_name, keys, now_ms};
use crate::store::{ArchiveUrl, ObjectStore, S3, StoreError};

/// What indexing a playlist in place did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new recording.
    Imported(Recording),
    /// The playlist changed since it was indexed: its recording was replaced.
    Replaced(Recording),
    /// The playlist is unchanged (same ETag): nothing done.
    Unchanged(Recording),
    /// A growing playlist: its live recording gained `appended` segments (0 when it only
    /// started), and `ended` when `#EXT-X-ENDLIST` came.
    Live { recording: Recording, appended: usize, ended: bool },
}

impl Outcome {
    /// The recording concerned.
    pub fn recording(&self) -> &Recording {
        match self {
            Outcome::Imported(r) | Outcome::Replaced(r) | Outcome::Unchanged(r) => r,
            Outcome::Live { recording, .. } => recording,
        }
    }
}

/// How to index.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    /// Wall-clock start override, unix ms (default: `#EXT-X-PROGRAM-DATE-TIME`, else now).
    pub start_ms: Option<i64>,
    /// File name override (default: the start time, `HH-MM-SS`).
    pub name: Option<String>,
    /// Treat a playlist without `#EXT-X-ENDLIST` as a live recording to follow.
    pub follow_live: bool,
}

/// Whether `user` may read `url`: under one of their grants. Errors with the reason as an input
/// error (exit code 65).
pub async fn check_granted(catalog: &Catalog, user: &User, url: &ArchiveUrl) -> Result<(), ImportError> {
    let grants = catalog.grants(user.id).await?;
    if grants.iter().filter_map(|g| ArchiveUrl::parse(g).ok()).any(|g| url.is_under(&g)) {
        return Ok(());
    }
    Err(input(format!(
        "{url} is not granted to user {}: grant it first (jitmux user grant {} s3://BUCKET/PREFIX/)",
        user.name, user.name
    )))
}

/// A store failure on an archive object, as an import error: a missing or refused object is the
/// caller's input; the store being unavailable is environmental.
fn archive_error(e: StoreError) -> ImportError {
    match e {
        StoreError::NotFound(k) => input(format!("{k}: no such object")),
        StoreError::Denied { key, reason } => input(format!("{key}: refused by the store: {reason}")),
        StoreError::Changed(k) => input(format!("{k}: changed while being indexed; try again")),
        e => ImportError::Store(e),
    }
}

/// Indexes the media playlist at `url` in place as a recording of `user`'s camera `camera`
/// (created if missing); `store` is the node's store (for the file's head). See the module docs
/// for what happens to a playlist indexed before. Errors: [`ImportError::Input`] for a playlist
/// or segment that is missing, malformed or not granted; store and catalog failures otherwise.
pub async fn import_archive(
    catalog: &Catalog,
    store: &dyn ObjectStore,
    s3: &Arc<S3>,
    user: &User,
    camera: &str,
    url: &ArchiveUrl,
    opts: &ArchiveOptions,
) -> Result<Outcome, ImportError> {
    crate::model::check_name(camera).map_err(|e| input(format!("camera name {camera:?}: {e}")))?;
    if let Some(n) = &opts.name {
        crate::model::check_name(n).map_err(|e| input(format!("recording name {n:?}: {e}")))?;
    }
    check_granted(catalog, user, url).await?;
    let source = url.to_string();
    let (text, playlist_etag) = s3.get_all(&url.bucket, &url.key).await.map_err(archive_error)?;
    let existing = catalog.recording_by_source(user.id, &source).await?;
    if let Some((rec, etag)) = &existing
        && etag.is_some()
        && *etag == playlist_etag
    {
        return Ok(Outcome::Unchanged(rec.clone()));
    }
    // A live recording of this playlist: index only what was added.
    let old_segments = match &existing {
        Some((rec, _)) if rec.live => catalog.segments(rec.id).await?,
        _ => Vec::new(),
    };
    let known: HashMap<String, Segment> = old_segments.iter().map(|s| (s.source_name.clone(), s.clone())).collect();
    let (s3b, urlb, label) = (s3.clone(), url.clone(), source.clone());
    let handle = tokio::runtime::Handle::current();
    let p = tokio::task::spawn_blocking(move || {
        prepare(&text, &label, &known, &mut |uri, what| {
            let at = urlb.sibling(uri).map_err(|e| input(format!("{what} {uri}: {e}")))?;
            let (data, etag) = handle.block_on(s3b.get_all(&at.bucket, &at.key)).map_err(archive_error)?;
            Ok(Fetched { data, location: at.to_string(), etag })
        })
    })
    .await
    .map_err(|e| ImportError::Task(e.to_string()))??;
    let growing = opts.follow_live && p.open;
    let rows = p.segment_rows(Placement::InPlace);

    if let Some((rec, _)) = &existing
        && rec.live
        && rows.len() >= old_segments.len()
        && rows[..old_segments.len()] == old_segments[..]
    {
        return grow(catalog, store, user, rec.clone(), &p, &rows[old_segments.len()..], playlist_etag, growing).await;
    }

    // A replaced recording keeps its start and name unless the playlist or the caller says
    // otherwise: its path stays the same.
    let old = existing.as_ref().map(|(r, _)| r);
    let start_ms = opts.start_ms.or(p.program_date_ms).or(old.map(|r| r.start_ms)).unwrap_or_else(now_ms);
    let name = opts.name.clone().unwrap_or_else(|| match old.filter(|r| r.start_ms == start_ms) {
        Some(r) => r.name.clone(),
        None => day_and_name(start_ms).1,
    });
    if !growing {
        store.put(&keys::head(user.id, &p.etag), Bytes::copy_from_slice(&p.layout.head)).await?;
    }
    let cam = catalog.camera_get_or_create(user.id, camera).await?;
    let new = p.new_recording(cam.id, start_ms, name, growing, Some((source, playlist_etag)), rows);
    Ok(match existing {
        Some((old, _)) => {
            let rec = catalog.replace_recording(old.id, &new).await?;
            if growing { Outcome::Live { recording: rec, appended: 0, ended: false } } else { Outcome::Replaced(rec) }
        }
        None => {
            let rec = catalog.insert_recording(&new).await?;
            if growing { Outcome::Live { recording: rec, appended: 0, ended: false } } else { Outcome::Imported(rec) }
        }
    })
}

/// Appends `added` to the live recording `rec` (the whole file is now `p`), and ends it when the
/// playlist is no longer growing.
#[allow(clippy::too_many_arguments)]
async fn grow(
    catalog: &Catalog,
    store: &dyn ObjectStore,
    user: &User,
    mut rec: Recording,
    p: &Prepared,
    added: &[Segment],
    playlist_etag: Option<String>,
    growing: bool,
) -> Result<Outcome, ImportError> {
    if !added.is_empty() {
        let now = now_ms();
        rec.duration_ms = p.duration_ms();
        rec.len_bytes = p.layout.len_bytes as i64;
        rec.head_len_bytes = p.layout.head.len() as i64;
        rec.etag = p.etag.clone();
        rec.format_version = FORMAT_VERSION as i64;
        rec.updated_ms = now;
        rec.modified_ms = now;
        rec.codecs = p.layout.codecs();
        rec.skipped = p.skipped.join("\n");
        catalog.append_segments(&rec, added).await?;
    }
    catalog.set_source_etag(rec.id, playlist_etag.as_deref()).await?;
    if !growing {
        store.put(&keys::head(user.id, &p.etag), Bytes::copy_from_slice(&p.layout.head)).await?;
        catalog.end_live(&mut rec).await?;
    }
    Ok(Outcome::Live { recording: rec, appended: added.len(), ended: !growing })
}
