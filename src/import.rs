//! Import: an HLS media playlist on disk → segments stored unchanged in the object store and a
//! recording with per-segment sample indexes in the catalog.
//!
//! All or nothing: every segment is read, parsed and indexed, and the whole recording laid out,
//! before anything is stored; objects are written before the catalog rows (one transaction), and
//! objects this import wrote are removed again if a later step fails. A recording is therefore
//! either complete in the tree or absent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, NewRecording, Recording, Segment, now_ms};
use crate::format::index::{Container, ParamCarry, SegmentIndex};
use crate::format::mp4::{FORMAT_VERSION, Layout, SegmentInput};
use crate::format::{fmp4, m3u8, ts};
use crate::store::ObjectStore;

/// Why an import failed. `Input` errors are the caller's data (exit code 65); the rest are
/// environmental.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Bad input: unreadable or malformed playlist or segment, unknown user, nothing to import.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn input(msg: impl Into<String>) -> ImportError {
    ImportError::Input(msg.into())
}

/// A segment read and indexed, not yet stored.
struct Parsed {
    source_name: String,
    path: PathBuf,
    sha256: String,
    len_bytes: u64,
    extinf_ms: i64,
    join_before: bool,
    index: Arc<SegmentIndex>,
    encoded_index: Vec<u8>,
    /// (object key, path) of its init segment.
    init: Option<(String, PathBuf)>,
    ext: &'static str,
}

/// Hex SHA-256.
pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Strong ETag value of a full MP4: a hash of [`FORMAT_VERSION`] and, per segment, its content
/// hash, its encoded sample index and whether the timeline joins before it — everything the
/// output bytes depend on.
pub fn full_file_etag<'a>(segments: impl IntoIterator<Item = (&'a str, &'a [u8], bool)>) -> String {
    let mut h = Sha256::new();
    h.update(b"jitmux full mp4\0");
    h.update(FORMAT_VERSION.to_be_bytes());
    for (sha, index, join) in segments {
        h.update(sha.as_bytes());
        h.update([join as u8]);
        h.update(Sha256::digest(index));
    }
    format!("v{FORMAT_VERSION}-{}", &hex::encode(h.finalize())[..32])
}

/// Object key of content-addressed segment bytes of a user.
fn object_key(user_id: i64, sha256: &str, ext: &str) -> String {
    format!("users/{user_id}/segments/{sha256}.{ext}")
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|e| input(format!("{what} {}: {e}", path.display())))
}

/// Imports the playlist at `playlist` as a new recording of `user`'s camera `camera` (created if
/// missing). `start_ms` overrides the wall-clock start (default: the first
/// `#EXT-X-PROGRAM-DATE-TIME`, else now). `name` overrides the file name (default: the start
/// time `HH-MM-SS`); a name already taken that day gets `-2`, `-3`, … appended.
pub async fn import_playlist(
    catalog: &Catalog,
    store: &dyn ObjectStore,
    user: &str,
    camera: &str,
    playlist: &Path,
    start_ms: Option<i64>,
    name: Option<&str>,
) -> Result<Recording, ImportError> {
    let user = catalog.user_by_name(user).await?.ok_or_else(|| input(format!("unknown user {user:?}")))?;
    crate::service::check_name(camera).map_err(|e| input(format!("camera name {camera:?}: {e}")))?;
    if let Some(n) = name {
        crate::service::check_name(n).map_err(|e| input(format!("recording name {n:?}: {e}")))?;
    }
    let text = read(playlist, "playlist")?;
    let pl = m3u8::parse(&text).map_err(|e| input(format!("playlist {}: {e}", playlist.display())))?;
    let dir = playlist.parent().unwrap_or(Path::new("."));

    // 1. Read, hash and index every segment; nothing is stored yet.
    let mut inits: HashMap<String, (Arc<fmp4::InitSegment>, String, PathBuf)> = HashMap::new();
    let mut parsed: Vec<Parsed> = Vec::new();
    let mut join_next = false;
    // Parameter sets carried from segment to segment (encoders that send them only at the start).
    let mut carry = ParamCarry::default();
    // Streams not carried, in first-seen order.
    let mut skipped: Vec<String> = Vec::new();
    let mut skip = |list: &[String]| {
        for s in list {
            if !skipped.contains(s) {
                skipped.push(s.clone());
            }
        }
    };
    for seg in &pl.segments {
        if seg.gap {
            join_next = true;
            continue;
        }
        if !m3u8::is_safe_relative(&seg.uri) {
            return Err(input(format!("segment URI {:?}: only relative paths inside the playlist's folder", seg.uri)));
        }
        let path = dir.join(&seg.uri);
        let data = read(&path, &format!("segment {}:", seg.uri))?;
        let (index, init, ext) = match &seg.map_uri {
            Some(map) => {
                if !m3u8::is_safe_relative(map) {
                    return Err(input(format!(
                        "EXT-X-MAP URI {map:?}: only relative paths inside the playlist's folder"
                    )));
                }
                if !inits.contains_key(map) {
                    let ipath = dir.join(map);
                    let ib = read(&ipath, "init segment")?;
                    let init = fmp4::parse_init(&ib).map_err(|e| input(format!("init segment {map}: {e}")))?;
                    skip(&init.skipped);
                    let key = object_key(user.id, &sha256_hex(&ib), "mp4");
                    inits.insert(map.clone(), (Arc::new(init), key, ipath));
                }
                let (init, key, ipath) = &inits[map];
                let idx = fmp4::index_segment(init, &data).map_err(|e| input(format!("segment {}: {e}", seg.uri)))?;
                (idx, Some((key.clone(), ipath.clone())), "m4s")
            }
            None => {
                let ts = ts::index_segment_with(&data, &mut carry)
                    .map_err(|e| input(format!("segment {}: {e}", seg.uri)))?;
                skip(&ts.skipped);
                (ts.index, None, "ts")
            }
        };
        debug_assert!(index.container == if init.is_some() { Container::Fmp4 } else { Container::Ts });
        if index.tracks.iter().all(|t| t.samples.is_empty()) {
            return Err(input(format!("segment {}: no audio or video samples", seg.uri)));
        }
        parsed.push(Parsed {
            source_name: seg.uri.clone(),
            path,
            sha256: sha256_hex(&data),
            len_bytes: data.len() as u64,
            extinf_ms: (seg.duration_s * 1000.0).round() as i64,
            join_before: join_next || seg.discontinuity,
            encoded_index: index.encode(),
            index: Arc::new(index),
            init,
            ext,
        });
        join_next = false;
    }
    if parsed.is_empty() {
        return Err(input(format!("playlist {}: no segments to import", playlist.display())));
    }
    let inputs: Vec<SegmentInput> =
        parsed.iter().map(|p| SegmentInput { index: p.index.clone(), join_before: p.join_before }).collect();
    let layout = Layout::build(&inputs).map_err(|e| input(format!("playlist {}: {e}", playlist.display())))?;
    let etag = full_file_etag(parsed.iter().map(|p| (p.sha256.as_str(), p.encoded_index.as_slice(), p.join_before)));

    let start_ms = start_ms
        .or_else(|| pl.segments.first().and_then(|s| s.program_date_time.as_deref()).and_then(parse_rfc3339_ms))
        .unwrap_or_else(now_ms);
    let (day, default_name) = day_and_name(start_ms);
    let name = name.map_or(default_name, str::to_string);
    let duration_ms = (layout.duration_s() * 1000.0).round() as i64;

    // 2. Store objects (content-addressed, so re-imports share them), then the catalog rows.
    let mut written: Vec<String> = Vec::new();
    let result = async {
        let mut objects: Vec<(String, PathBuf)> = Vec::new();
        for (_, (_, key, path)) in inits.iter() {
            objects.push((key.clone(), path.clone()));
        }
        for p in &parsed {
            objects.push((object_key(user.id, &p.sha256, p.ext), p.path.clone()));
        }
        objects.sort();
        objects.dedup();
        let head_key = crate::vfile::head_key(user.id, &etag);
        if store.head(&head_key).await?.is_none() {
            store.put(&head_key, Bytes::copy_from_slice(&layout.head)).await?;
            written.push(head_key);
        }
        for (key, path) in objects {
            if store.head(&key).await?.is_some() {
                continue;
            }
            let data = read(&path, "segment")?;
            store.put(&key, Bytes::from(data)).await?;
            written.push(key);
        }
        let cam = catalog.camera_get_or_create(user.id, camera).await?;
        let rec = NewRecording {
            camera_id: cam.id,
            day,
            name,
            start_ms,
            duration_ms,
            len_bytes: layout.len_bytes as i64,
            head_len_bytes: layout.head.len() as i64,
            etag: etag.clone(),
            format_version: FORMAT_VERSION as i64,
            updated_ms: now_ms(),
            live: false,
            codecs: layout.codecs(),
            // The file's modification time is the recording's wall-clock end.
            modified_ms: start_ms + duration_ms,
            skipped: skipped.join("\n"),
            segments: parsed
                .iter()
                .enumerate()
                .map(|(i, p)| Segment {
                    seq: i as i64,
                    source_name: p.source_name.clone(),
                    object_key: object_key(user.id, &p.sha256, p.ext),
                    init_key: p.init.as_ref().map(|(k, _)| k.clone()),
                    sha256: p.sha256.clone(),
                    len_bytes: p.len_bytes as i64,
                    extinf_ms: p.extinf_ms,
                    join_before: p.join_before,
                    sample_index: p.encoded_index.clone(),
                })
                .collect(),
        };
        Ok::<_, ImportError>(catalog.insert_recording(&rec).await?)
    }
    .await;
    if result.is_err() {
        for key in &written {
            let _ = store.delete(key).await;
        }
    }
    result
}

/// `YYYY-MM-DD` directory and `HH-MM-SS` file stem (UTC) for a start time in unix ms.
pub fn day_and_name(start_ms: i64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (
        format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day()),
        format!("{:02}-{:02}-{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// Parses an RFC 3339 date-time into unix ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}
