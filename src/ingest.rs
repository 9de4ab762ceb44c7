//! Live ingest from real encoders: ffmpeg's HLS muxer with `-method PUT` as it is.
//!
//! ```text
//! ffmpeg -re -i SRC -c copy -f hls -method PUT -headers "Authorization: Bearer KEY" \
//!        -hls_segment_type mpegts|fmp4 http://HOST/v1/ingest/CAMERA/index.m3u8
//! ```
//! ffmpeg PUTs `init.mp4` (fMP4), each segment when complete, and the playlist after each
//! segment, over concurrent connections, so a playlist can name a segment still uploading.
//!
//! Per camera one [`Broadcast`] collects uploads: a segment is parsed and indexed when its PUT
//! completes (a cut connection stores nothing) and waits until a playlist names it; then it is
//! *appended*: the segment object and the new file head are stored first, then one catalog
//! transaction adds the segment row and the grown recording's length and ETag. A broadcast is a
//! recording marked live from its first segment; it ends on `#EXT-X-ENDLIST` or after
//! `idle_timeout` without uploads, and is then an ordinary archived recording. Viewers of the
//! live tail are woken through the [`LiveHub`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use crate::catalog::{Camera, NewRecording, Recording, Segment, now_ms};
use crate::format::index::{ParamCarry, SegmentIndex};
use crate::format::mp4::{FORMAT_VERSION, Layout, SegmentInput};
use crate::format::{fmp4, m3u8, ts};
use crate::import::{day_and_name, full_file_etag, sha256_hex};
use crate::service::{ApiError, AppState};

/// Notifies viewers on this node that a live recording changed (a segment was appended or the
/// broadcast ended). Viewers also poll the catalog, so ingest on another node reaches them too.
#[derive(Default)]
pub struct LiveHub {
    senders: Mutex<HashMap<i64, tokio::sync::watch::Sender<Option<Recording>>>>,
}

impl LiveHub {
    /// Announces the new state of a recording (grown, or ended) to its viewers on this node.
    pub fn notify(&self, rec: &Recording) {
        let mut m = self.senders.lock().unwrap();
        if let Some(tx) = m.get(&rec.id) {
            tx.send_replace(Some(rec.clone()));
        }
        m.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// A receiver holding the latest announced state of recording `id`.
    pub fn subscribe(&self, id: i64) -> tokio::sync::watch::Receiver<Option<Recording>> {
        self.senders.lock().unwrap().entry(id).or_insert_with(|| tokio::sync::watch::channel(None).0).subscribe()
    }
}

/// Live ingest state of this node.
pub struct Ingest {
    broadcasts: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Broadcast>>>>,
    /// A broadcast with no upload for this long ends.
    pub idle_timeout: Duration,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
    pub hub: LiveHub,
}

impl Ingest {
    pub fn new(idle_timeout: Duration) -> Self {
        Ingest {
            broadcasts: Mutex::new(HashMap::new()),
            idle_timeout,
            max_upload_bytes: 256 << 20,
            hub: LiveHub::default(),
        }
    }
}

/// A segment uploaded and indexed, waiting for a playlist to name it.
struct Pending {
    index: Arc<SegmentIndex>,
    encoded: Vec<u8>,
    object_key: String,
    sha256: String,
    len_bytes: u64,
    init_key: Option<String>,
}

/// One camera's broadcast in progress.
struct Broadcast {
    camera: Camera,
    /// The live recording, from the first appended segment on.
    rec: Option<Recording>,
    /// Init segments by upload name: parsed, and their object key.
    inits: HashMap<String, (Arc<fmp4::InitSegment>, String)>,
    latest_init: Option<String>,
    pending: HashMap<String, Pending>,
    /// fMP4 segments uploaded before the init segment they need (ffmpeg finishes `init.mp4`
    /// after the first media segment): indexed when an init arrives.
    awaiting_init: Vec<(String, Bytes)>,
    /// Uploads that were refused; the playlist's entries for them become gaps.
    rejected: HashSet<String>,
    /// Video parameter sets carried between MPEG-TS segments (encoders that send them only at
    /// the start of a stream).
    carry: ParamCarry,
    /// Source streams not carried, in first-seen order.
    skipped: Vec<String>,
    appended: HashSet<String>,
    /// What the recording is made of so far (layout inputs, ETag inputs).
    inputs: Vec<SegmentInput>,
    etag_parts: Vec<(String, Vec<u8>, bool)>,
    playlist: Option<m3u8::MediaPlaylist>,
    last_upload: Instant,
    ended: bool,
}

impl Broadcast {
    fn new(camera: Camera) -> Self {
        Broadcast {
            camera,
            rec: None,
            inits: HashMap::new(),
            latest_init: None,
            pending: HashMap::new(),
            awaiting_init: Vec::new(),
            rejected: HashSet::new(),
            carry: ParamCarry::default(),
            skipped: Vec::new(),
            appended: HashSet::new(),
            inputs: Vec::new(),
            etag_parts: Vec::new(),
            playlist: None,
            last_upload: Instant::now(),
            ended: false,
        }
    }
}

fn err(status: StatusCode, reason: impl Into<String>) -> ApiError {
    ApiError::new(status, reason)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("ingest: {e}");
    err(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
}

/// `PUT /v1/ingest/{camera}/{file}`: one upload of ffmpeg's HLS muxer.
#[utoipa::path(
    put,
    path = "/v1/ingest/{camera}/{file}",
    tag = "ingest",
    params(
        ("camera" = String, Path, description = "Camera name; the ingest key must be this camera's"),
        ("file" = String, Path, description = "index.m3u8 (playlist), init.mp4 (fMP4 init), NAME.ts or NAME.m4s (segment)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file, possibly chunked"),
    responses(
        (status = 201, description = "Accepted"),
        (status = 400, description = "Bad file name or interrupted upload", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid ingest key", body = String, content_type = "text/plain"),
        (status = 403, description = "The key writes to another camera", body = String, content_type = "text/plain"),
        (status = 413, description = "Upload too large", body = String, content_type = "text/plain"),
        (status = 415, description = "Not a playlist, init or segment", body = String, content_type = "text/plain"),
        (status = 422, description = "Unparsable, or a codec change mid-broadcast", body = String, content_type = "text/plain"),
    ),
    security(("ingest_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    Path((camera, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let key = crate::service::bearer(&headers, "ingest key")?;
    let cam = state
        .catalog
        .camera_by_ingest_key(key)
        .await?
        .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "invalid ingest key"))?;
    if cam.name != camera {
        return Err(err(StatusCode::FORBIDDEN, "this ingest key writes to another camera"));
    }
    if crate::service::check_name(&file).is_err() {
        return Err(err(StatusCode::BAD_REQUEST, "file name may contain only letters, digits, '.', '_' and '-'"));
    }
    let ingest = state.ingest.clone();
    // The whole body first: a cut connection or an oversize upload stores nothing.
    let data = {
        use http_body_util::BodyExt;
        let limited = http_body_util::Limited::new(body, ingest.max_upload_bytes);
        match limited.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("upload larger than {} bytes", ingest.max_upload_bytes),
                ));
            }
            Err(_) => return Err(err(StatusCode::BAD_REQUEST, "upload interrupted")),
        }
    };
    // ffmpeg closes the connection right after the last chunk without reading the response,
    // which drops this handler: the upload, complete now, is processed in a task of its own.
    tokio::spawn(async move {
        let r = process(&state, &cam, file.clone(), data).await;
        if let Err(e) = &r {
            // The encoder may never read the answer: say it here too.
            tracing::warn!(camera = cam.name, file, status = %e.status, "upload rejected: {}", e.reason);
        }
        r
    })
    .await
    .map_err(internal)?
}

async fn process(state: &AppState, cam: &Camera, file: String, data: Bytes) -> Result<StatusCode, ApiError> {
    let bc = broadcast(state, cam).await?;
    let mut bc = bc.lock().await;
    bc.last_upload = Instant::now();
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "m3u8" => {
            let pl = m3u8::parse(&data)
                .map_err(|e| err(StatusCode::UNPROCESSABLE_ENTITY, format!("playlist {file}: {e}")))?;
            bc.playlist = Some(pl);
        }
        "mp4" => {
            let init = fmp4::parse_init(&data)
                .map_err(|e| err(StatusCode::UNPROCESSABLE_ENTITY, format!("init segment {file}: {e}")))?;
            let key = format!("users/{}/segments/{}.mp4", cam.user_id, sha256_hex(&data));
            state.store.put(&key, data).await.map_err(internal)?;
            bc.inits.insert(file.clone(), (Arc::new(init), key));
            bc.latest_init = Some(file);
            for (name, data) in std::mem::take(&mut bc.awaiting_init) {
                if let Err(e) = accept_segment(state, &mut bc, &name, "m4s", data).await {
                    tracing::warn!(camera = cam.name, file = name, "upload rejected: {}", e.reason);
                    bc.rejected.insert(name);
                }
            }
        }
        "ts" | "m4s" => {
            if ext == "m4s" && bc.latest_init.is_none() {
                bc.awaiting_init.push((file, data));
            } else if let Err(e) = accept_segment(state, &mut bc, &file, ext, data).await {
                bc.rejected.insert(file);
                advance(state, &mut bc).await?;
                return Err(e);
            }
        }
        _ => return Err(err(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected .m3u8, .mp4, .ts or .m4s")),
    }
    advance(state, &mut bc).await?;
    Ok(StatusCode::CREATED)
}

/// The camera's broadcast: the one in progress, one resumed from a live recording this node
/// was serving before a restart, or a new one.
async fn broadcast(state: &AppState, cam: &Camera) -> Result<Arc<tokio::sync::Mutex<Broadcast>>, ApiError> {
    if let Some(b) = state.ingest.broadcasts.lock().unwrap().get(&cam.id) {
        return Ok(b.clone());
    }
    let mut bc = Broadcast::new(cam.clone());
    let cutoff = now_ms() - state.ingest.idle_timeout.as_millis() as i64;
    if let Some(rec) = state.catalog.live_recording(cam.id).await?.filter(|r| r.updated_ms >= cutoff) {
        // Resume: the recording so far, and the init segment its fMP4 segments use.
        let segs = state.catalog.segments(rec.id).await?;
        for s in &segs {
            let index = SegmentIndex::decode(&s.sample_index).map_err(internal)?;
            bc.carry.remember(&index);
            bc.inputs.push(SegmentInput { index: Arc::new(index), join_before: s.join_before });
            bc.etag_parts.push((s.sha256.clone(), s.sample_index.clone(), s.join_before));
            bc.appended.insert(s.source_name.clone());
        }
        if let Some(key) = segs.last().and_then(|s| s.init_key.clone()) {
            let len = state.store.head(&key).await.map_err(internal)?.unwrap_or(0);
            let b = state.store.get_range(&key, 0..len).await.map_err(internal)?;
            let init = fmp4::parse_init(&b).map_err(internal)?;
            bc.inits.insert("(resumed)".into(), (Arc::new(init), key));
            bc.latest_init = Some("(resumed)".into());
        }
        bc.skipped = rec.skipped.lines().map(str::to_string).collect();
        tracing::info!(recording = rec.id, segments = segs.len(), "resuming live broadcast");
        bc.rec = Some(rec);
    }
    let bc = Arc::new(tokio::sync::Mutex::new(bc));
    Ok(state.ingest.broadcasts.lock().unwrap().entry(cam.id).or_insert(bc).clone())
}

async fn accept_segment(
    state: &AppState,
    bc: &mut Broadcast,
    file: &str,
    ext: &str,
    data: Bytes,
) -> Result<(), ApiError> {
    let bad = |e: crate::format::FormatError| err(StatusCode::UNPROCESSABLE_ENTITY, format!("segment {file}: {e}"));
    let (index, init_key, skipped) = if ext == "m4s" {
        let name = bc.latest_init.clone().expect("callers wait for an init");
        let (init, key) = &bc.inits[&name];
        (fmp4::index_segment(init, &data).map_err(bad)?, Some(key.clone()), init.skipped.clone())
    } else {
        // A trial copy of the carried parameter sets: a refused segment must not change them.
        let mut carry = bc.carry.clone();
        let ts = ts::index_segment_with(&data, &mut carry).map_err(bad)?;
        bc.carry = carry;
        (ts.index, None, ts.skipped)
    };
    if index.tracks.iter().all(|t| t.samples.is_empty()) {
        return Err(err(StatusCode::UNPROCESSABLE_ENTITY, format!("segment {file}: no audio or video samples")));
    }
    // The broadcast's codecs are fixed by its first segment, track by track.
    if let Some(first) = bc.inputs.first() {
        for (key, t) in index.keyed_tracks() {
            let same = first.index.keyed_tracks().find(|(k, _)| *k == key).map(|(_, f)| f);
            if let Some(f) = same.filter(|f| f.config.codec != t.config.codec) {
                return Err(err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "segment {file}: {:?} codec changes from {:?} to {:?}",
                        t.kind(),
                        f.config.codec,
                        t.config.codec
                    ),
                ));
            }
        }
    }
    for s in skipped {
        if !bc.skipped.contains(&s) {
            bc.skipped.push(s);
        }
    }
    let sha256 = sha256_hex(&data);
    let object_key = format!("users/{}/segments/{sha256}.{ext}", bc.camera.user_id);
    let len_bytes = data.len() as u64;
    state.store.put(&object_key, data).await.map_err(internal)?;
    let encoded = index.encode();
    bc.pending
        .insert(file.to_string(), Pending { index: Arc::new(index), encoded, object_key, sha256, len_bytes, init_key });
    Ok(())
}

/// Segments uploaded after a missing one before the missing one is given up (a gap).
const SKIP_MISSING_AFTER: usize = 2;

/// Appends, in playlist order, every uploaded segment the latest playlist names. It waits for a
/// segment still uploading, unless [`SKIP_MISSING_AFTER`] later ones are already in (a cut
/// upload); refused uploads and skipped segments become gaps. Ends the broadcast after
/// `#EXT-X-ENDLIST`.
async fn advance(state: &AppState, bc: &mut Broadcast) -> Result<(), ApiError> {
    let Some(pl) = bc.playlist.take() else { return Ok(()) };
    let mut join_next = false;
    let mut complete = true;
    for (i, entry) in pl.segments.iter().enumerate() {
        if entry.gap || bc.rejected.contains(&entry.uri) {
            join_next = true;
            continue;
        }
        if bc.appended.contains(&entry.uri) {
            join_next = false;
            continue;
        }
        let Some(p) = bc.pending.remove(&entry.uri) else {
            let later = pl.segments[i + 1..].iter().filter(|e| bc.pending.contains_key(&e.uri)).count();
            if later >= SKIP_MISSING_AFTER || (pl.ended && later > 0) {
                tracing::warn!(camera = bc.camera.name, "segment {} never arrived: a gap", entry.uri);
                bc.rejected.insert(entry.uri.clone());
                join_next = true;
                continue;
            }
            complete = false;
            break;
        };
        let join = join_next || entry.discontinuity;
        append(state, bc, &entry.uri, entry.duration_s, p, join).await?;
        join_next = false;
    }
    let ended = pl.ended && complete;
    bc.playlist = Some(pl);
    if ended && !bc.ended {
        bc.ended = true;
        if let Some(rec) = &mut bc.rec {
            state.catalog.end_live(rec.id).await?;
            rec.live = false;
            state.ingest.hub.notify(rec);
            tracing::info!(recording = rec.id, "broadcast ended (EXT-X-ENDLIST)");
        }
        state.ingest.broadcasts.lock().unwrap().remove(&bc.camera.id);
    }
    Ok(())
}

async fn append(
    state: &AppState,
    bc: &mut Broadcast,
    name: &str,
    extinf_s: f64,
    p: Pending,
    join_before: bool,
) -> Result<(), ApiError> {
    bc.inputs.push(SegmentInput { index: p.index.clone(), join_before });
    let layout = match Layout::build(&bc.inputs) {
        Ok(l) => l,
        Err(e) => {
            bc.inputs.pop();
            tracing::warn!(camera = bc.camera.id, "segment {name} rejected: {e}");
            return Ok(());
        }
    };
    bc.etag_parts.push((p.sha256.clone(), p.encoded.clone(), join_before));
    let etag = full_file_etag(bc.etag_parts.iter().map(|(s, i, j)| (s.as_str(), i.as_slice(), *j)));
    // Objects first (the segment is already stored), then the catalog.
    let head_key = crate::vfile::head_key(bc.camera.user_id, &etag);
    state.store.put(&head_key, Bytes::copy_from_slice(&layout.head)).await.map_err(internal)?;
    let segment = Segment {
        seq: bc.inputs.len() as i64 - 1,
        source_name: name.to_string(),
        object_key: p.object_key,
        init_key: p.init_key,
        sha256: p.sha256,
        len_bytes: p.len_bytes as i64,
        extinf_ms: (extinf_s * 1000.0).round() as i64,
        join_before,
        sample_index: p.encoded,
    };
    let duration_ms = (layout.duration_s() * 1000.0).round() as i64;
    let rec = match bc.rec.take() {
        None => {
            let start_ms = now_ms() - duration_ms;
            let (day, rec_name) = day_and_name(start_ms);
            let new = NewRecording {
                camera_id: bc.camera.id,
                day,
                name: rec_name,
                start_ms,
                duration_ms,
                len_bytes: layout.len_bytes as i64,
                head_len_bytes: layout.head.len() as i64,
                etag,
                format_version: FORMAT_VERSION as i64,
                updated_ms: now_ms(),
                live: true,
                codecs: layout.codecs(),
                modified_ms: now_ms(),
                skipped: bc.skipped.join("\n"),
                segments: vec![segment],
            };
            let rec = state.catalog.insert_recording(&new).await?;
            tracing::info!(recording = rec.id, camera = bc.camera.name, "broadcast started");
            rec
        }
        Some(mut rec) => {
            rec.duration_ms = duration_ms;
            rec.len_bytes = layout.len_bytes as i64;
            rec.head_len_bytes = layout.head.len() as i64;
            rec.etag = etag;
            rec.format_version = FORMAT_VERSION as i64;
            // Strictly increasing: it keys cached layouts.
            rec.updated_ms = now_ms().max(rec.updated_ms + 1);
            rec.modified_ms = now_ms();
            rec.codecs = layout.codecs();
            rec.skipped = bc.skipped.join("\n");
            if let Err(e) = state.catalog.append_segment(&rec, &segment).await {
                bc.inputs.pop();
                bc.etag_parts.pop();
                bc.rec = Some(rec);
                return Err(e.into());
            }
            rec
        }
    };
    bc.appended.insert(name.to_string());
    state.ingest.hub.notify(&rec);
    bc.rec = Some(rec);
    Ok(())
}

/// Ends broadcasts that saw no upload for `idle_timeout`, forever (spawn it once per node).
/// At start it also ends live recordings left by a previous process that are already idle.
pub async fn sweep_idle(state: AppState) {
    let timeout = state.ingest.idle_timeout;
    let tick = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        match state.catalog.end_idle_live(now_ms() - timeout.as_millis() as i64).await {
            Ok(n) if n > 0 => tracing::info!("ended {n} idle live recording(s)"),
            Ok(_) => {}
            Err(e) => tracing::warn!("idle sweep: {e}"),
        }
        let idle: Vec<(i64, Arc<tokio::sync::Mutex<Broadcast>>)> =
            state.ingest.broadcasts.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        for (cam, bc) in idle {
            let mut bc = bc.lock().await;
            if bc.last_upload.elapsed() >= timeout {
                if let Some(rec) = &mut bc.rec {
                    if let Err(e) = state.catalog.end_live(rec.id).await {
                        tracing::warn!("ending idle broadcast: {e}");
                        continue;
                    }
                    rec.live = false;
                    state.ingest.hub.notify(rec);
                    tracing::info!(recording = rec.id, "broadcast ended (idle)");
                }
                state.ingest.broadcasts.lock().unwrap().remove(&cam);
            }
        }
        tokio::time::sleep(tick).await;
    }
}
