//! Import: an HLS media playlist on disk → segments stored unchanged in the object store and a
//! recording with per-segment sample indexes in the catalog.
//!
//! All or nothing: every segment is read, parsed and indexed, and the whole recording laid out,
//! before anything is stored (on the blocking pool: it is file reads and CPU); objects are
//! written before the catalog rows (one transaction), and objects this import wrote are removed
//! again if a later step fails. A recording is therefore either complete in the tree or absent.
//!
//! [`archive`] indexes a playlist in a bucket in place instead, and [`scan`] every playlist
//! under a bucket prefix.

pub mod archive;
pub mod scan;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::{Catalog, NewRecording, Recording, Segment};
use crate::format::index::{ParamCarry, SegmentIndex};
use crate::format::mp4::{FORMAT_VERSION, Layout, SegmentInput};
use crate::format::{fmp4, m3u8, ts};
use crate::model::{EtagHasher, UserId, day_and_name, keys, now_ms, parse_rfc3339_ms, sha256_hex};
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
    /// The blocking task that reads and indexes failed.
    #[error("import task failed: {0}")]
    Task(String),
}

fn input(msg: impl Into<String>) -> ImportError {
    ImportError::Input(msg.into())
}

/// A segment read and indexed, not yet stored.
struct Parsed {
    source_name: String,
    /// Where its bytes are: a file path, or an archive URL (`s3://…`).
    location: String,
    /// The archive object's ETag when read from an archive.
    object_etag: Option<String>,
    sha256: String,
    len_bytes: u64,
    extinf_ms: i64,
    join_before: bool,
    encoded_index: Vec<u8>,
    /// Hex SHA-256 and location of its init segment.
    init: Option<(String, String)>,
    ext: &'static str,
}

/// Everything learnt from a playlist and its segments before anything is stored.
struct Prepared {
    segments: Vec<Parsed>,
    /// Init segments: hex SHA-256 → location and archive ETag.
    inits: HashMap<String, (String, Option<String>)>,
    layout: Layout,
    etag: String,
    skipped: Vec<String>,
    /// The first `#EXT-X-PROGRAM-DATE-TIME`, unix ms.
    program_date_ms: Option<i64>,
    /// The playlist may still grow: no `#EXT-X-ENDLIST`, not `VOD`.
    open: bool,
}

/// Where a recording's segment bytes are: copied into the user's objects (content-addressed
/// keys), or left in place in an archive (their URLs, with the ETags they had when read).
#[derive(Clone, Copy)]
enum Placement {
    Copied(UserId),
    InPlace,
}

impl Prepared {
    /// Duration of the laid-out file, ms.
    fn duration_ms(&self) -> i64 {
        (self.layout.duration_s() * 1000.0).round() as i64
    }

    /// The catalog rows of the segments, stored as `placement` says.
    fn segment_rows(&self, placement: Placement) -> Vec<Segment> {
        self.segments
            .iter()
            .enumerate()
            .map(|(seq, s)| {
                let (object_key, object_etag, init_key, init_etag) = match placement {
                    Placement::Copied(user) => (
                        keys::segment(user, &s.sha256, s.ext),
                        None,
                        s.init.as_ref().map(|(sha, _)| keys::segment(user, sha, "mp4")),
                        None,
                    ),
                    Placement::InPlace => (
                        s.location.clone(),
                        s.object_etag.clone(),
                        s.init.as_ref().map(|(_, loc)| loc.clone()),
                        s.init.as_ref().and_then(|(sha, _)| self.inits.get(sha)).and_then(|(_, e)| e.clone()),
                    ),
                };
                Segment {
                    seq: seq as i64,
                    source_name: s.source_name.clone(),
                    object_key,
                    init_key,
                    object_etag,
                    init_etag,
                    sha256: s.sha256.clone(),
                    len_bytes: s.len_bytes as i64,
                    extinf_ms: s.extinf_ms,
                    join_before: s.join_before,
                    sample_index: s.encoded_index.clone(),
                }
            })
            .collect()
    }

    /// The recording of this file at `start_ms` under `name`, with `segments` (from
    /// [`Self::segment_rows`]). A finished file is modified at its wall-clock end, a live one
    /// now.
    fn new_recording(
        &self,
        camera_id: crate::model::CameraId,
        start_ms: i64,
        name: String,
        live: bool,
        source: Option<(String, Option<String>)>,
        segments: Vec<Segment>,
    ) -> NewRecording {
        let now = now_ms();
        let duration_ms = self.duration_ms();
        NewRecording {
            camera_id,
            day: day_and_name(start_ms).0,
            name,
            start_ms,
            duration_ms,
            len_bytes: self.layout.len_bytes as i64,
            head_len_bytes: self.layout.head.len() as i64,
            etag: self.etag.clone(),
            format_version: FORMAT_VERSION as i64,
            updated_ms: now,
            live,
            codecs: self.layout.codecs(),
            modified_ms: if live { now } else { start_ms + duration_ms },
            skipped: self.skipped.join("\n"),
            source,
            segments,
        }
    }
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
    crate::model::check_name(camera).map_err(|e| input(format!("camera name {camera:?}: {e}")))?;
    if let Some(n) = name {
        crate::model::check_name(n).map_err(|e| input(format!("recording name {n:?}: {e}")))?;
    }
    let path = playlist.to_path_buf();
    let p = tokio::task::spawn_blocking(move || {
        let text = read(&path, "playlist")?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        prepare(&text, &path.display().to_string(), &HashMap::new(), &mut |uri, what| {
            let p = dir.join(uri);
            Ok(Fetched { data: Bytes::from(read(&p, what)?), location: p.display().to_string(), etag: None })
        })
    })
    .await
    .map_err(|e| ImportError::Task(e.to_string()))??;

    let start_ms = start_ms.or(p.program_date_ms).unwrap_or_else(now_ms);
    let name = name.map_or_else(|| day_and_name(start_ms).1, str::to_string);

    // Store objects (content-addressed, so re-imports share them), then the catalog rows.
    let mut written: Vec<String> = Vec::new();
    let result = async {
        let mut objects: Vec<(String, String)> = Vec::new();
        for (sha, (path, _)) in &p.inits {
            objects.push((keys::segment(user.id, sha, "mp4"), path.clone()));
        }
        for s in &p.segments {
            objects.push((keys::segment(user.id, &s.sha256, s.ext), s.location.clone()));
        }
        objects.sort();
        objects.dedup();
        let head_key = keys::head(user.id, &p.etag);
        if store.head(&head_key).await?.is_none() {
            store.put(&head_key, Bytes::copy_from_slice(&p.layout.head)).await?;
            written.push(head_key);
        }
        for (key, path) in objects {
            if store.head(&key).await?.is_some() {
                continue;
            }
            let data = tokio::fs::read(&path).await.map_err(|e| input(format!("segment {path}: {e}")))?;
            store.put(&key, Bytes::from(data)).await?;
            written.push(key);
        }
        let cam = catalog.camera_get_or_create(user.id, camera).await?;
        let segments = p.segment_rows(Placement::Copied(user.id));
        let rec = p.new_recording(cam.id, start_ms, name, false, None, segments);
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

/// A segment or init segment as read for indexing.
struct Fetched {
    data: Bytes,
    /// Its file path or archive URL.
    location: String,
    /// The archive object's ETag, when read from an archive.
    etag: Option<String>,
}

/// Reads (with `fetch`: a playlist URI, already checked to be a plain relative path, and what it
/// is for error messages), hashes and indexes every segment of the playlist `text` (named `label`
/// in errors) and lays the recording out. Segments in `known` (by URI: rows indexed before, of a
/// growing playlist) are taken from there, not read again. Blocking: file or store reads and CPU.
fn prepare(
    text: &[u8],
    label: &str,
    known: &HashMap<String, Segment>,
    fetch: &mut dyn FnMut(&str, &str) -> Result<Fetched, ImportError>,
) -> Result<Prepared, ImportError> {
    let pl = m3u8::parse(text).map_err(|e| input(format!("playlist {label}: {e}")))?;
    // Init segments by URI: parsed, with their hash and path.
    let mut by_uri: HashMap<String, (Arc<fmp4::InitSegment>, String, String, Option<String>)> = HashMap::new();
    let mut segments: Vec<Parsed> = Vec::new();
    let mut inputs: Vec<SegmentInput> = Vec::new();
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
        if let Some(k) = known.get(&seg.uri)
            && k.init_key.is_some() == seg.map_uri.is_some()
        {
            let index = SegmentIndex::decode(&k.sample_index)
                .map_err(|e| input(format!("segment {}: stored index: {e}", seg.uri)))?;
            let mut init = None;
            if let Some(map) = &seg.map_uri {
                if !by_uri.contains_key(map) {
                    let f = fetch(map, "init segment")?;
                    let parsed = fmp4::parse_init(&f.data).map_err(|e| input(format!("init segment {map}: {e}")))?;
                    skip(&parsed.skipped);
                    by_uri.insert(map.clone(), (Arc::new(parsed), sha256_hex(&f.data), f.location, f.etag));
                }
                init = by_uri.get(map).map(|(_, sha, loc, _)| (sha.clone(), loc.clone()));
            } else {
                carry.remember(&index);
            }
            let join_before = join_next || seg.discontinuity;
            segments.push(Parsed {
                source_name: seg.uri.clone(),
                location: k.object_key.clone(),
                object_etag: k.object_etag.clone(),
                sha256: k.sha256.clone(),
                len_bytes: k.len_bytes as u64,
                extinf_ms: (seg.duration_s * 1000.0).round() as i64,
                join_before,
                encoded_index: k.sample_index.clone(),
                init,
                ext: if seg.map_uri.is_some() { "m4s" } else { "ts" },
            });
            inputs.push(SegmentInput { index: Arc::new(index), join_before });
            join_next = false;
            continue;
        }
        let Fetched { data, location, etag: object_etag } = fetch(&seg.uri, &format!("segment {}:", seg.uri))?;
        let (index, init, ext): (SegmentIndex, _, _) = match &seg.map_uri {
            Some(map) => {
                if !m3u8::is_safe_relative(map) {
                    return Err(input(format!(
                        "EXT-X-MAP URI {map:?}: only relative paths inside the playlist's folder"
                    )));
                }
                if !by_uri.contains_key(map) {
                    let f = fetch(map, "init segment")?;
                    let init = fmp4::parse_init(&f.data).map_err(|e| input(format!("init segment {map}: {e}")))?;
                    skip(&init.skipped);
                    by_uri.insert(map.clone(), (Arc::new(init), sha256_hex(&f.data), f.location, f.etag));
                }
                let (init, sha, iloc, _) = by_uri.get(map).ok_or_else(|| input(format!("init segment {map}")))?;
                let idx = fmp4::index_segment(init, &data).map_err(|e| input(format!("segment {}: {e}", seg.uri)))?;
                (idx, Some((sha.clone(), iloc.clone())), "m4s")
            }
            None => {
                let ts = ts::index_segment_with(&data, &mut carry)
                    .map_err(|e| input(format!("segment {}: {e}", seg.uri)))?;
                skip(&ts.skipped);
                (ts.index, None, "ts")
            }
        };
        if index.tracks.iter().all(|t| t.samples.is_empty()) {
            return Err(input(format!("segment {}: no audio or video samples", seg.uri)));
        }
        let join_before = join_next || seg.discontinuity;
        segments.push(Parsed {
            source_name: seg.uri.clone(),
            location,
            object_etag,
            sha256: sha256_hex(&data),
            len_bytes: data.len() as u64,
            extinf_ms: (seg.duration_s * 1000.0).round() as i64,
            join_before,
            encoded_index: index.encode(),
            init,
            ext,
        });
        inputs.push(SegmentInput { index: Arc::new(index), join_before });
        join_next = false;
    }
    if segments.is_empty() {
        return Err(input(format!("playlist {label}: no segments to import")));
    }
    let layout = Layout::build(&inputs).map_err(|e| input(format!("playlist {label}: {e}")))?;
    let mut etag = EtagHasher::default();
    for s in &segments {
        etag.push(&s.sha256, &s.encoded_index, s.join_before);
    }
    let program_date_ms = pl.segments.first().and_then(|s| s.program_date_time.as_deref()).and_then(parse_rfc3339_ms);
    let inits = by_uri.into_values().map(|(_, sha, loc, etag)| (sha, (loc, etag))).collect();
    let open = !pl.ended && pl.playlist_type != Some(m3u8::PlaylistType::Vod);
    Ok(Prepared { segments, inits, layout, etag: etag.value(), skipped, program_date_ms, open })
}
