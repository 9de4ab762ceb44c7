//! The HTTP service: each user's virtual file tree under `/v1/files/`, and every recording in it
//! as a progressive MP4 computed just in time.
//!
//! ```text
//! GET /v1/files/                              cameras          (JSON with Accept: application/json, else HTML)
//! GET /v1/files/{camera}/                     days
//! GET /v1/files/{camera}/{YYYY-MM-DD}/        recordings, as NAME.mp4
//! GET|HEAD /v1/files/{camera}/{day}/{NAME}.mp4   the MP4 (RFC 9110 ranges and conditionals via http-serve)
//! ```
//! Every request carries `Authorization: Bearer TOKEN` and sees only its user's tree. Errors
//! are a status with a one-line `text/plain` reason.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::catalog::{Catalog, DirSummary, Recording, User};
use crate::format::mp4::FORMAT_VERSION;
use crate::ingest::Ingest;
use crate::instance::{Instances, Kind, Limits};
use crate::store::{CountingStore, ObjectStore};
use crate::vfile::Mp4File;

/// Shared state of the service; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub store: Arc<dyn ObjectStore>,
    /// Read counters of `store`.
    pub store_stats: Arc<CountingStore<Arc<dyn ObjectStore>>>,
    /// Per-user program instances (caches, limits, scoped storage).
    pub instances: Arc<Instances>,
    pub ingest: Arc<Ingest>,
}

impl AppState {
    /// State over `catalog` and `store`; live broadcasts end after `idle_timeout` without
    /// uploads; user instances have `limits` and are evicted after `instance_idle`.
    pub fn new(
        catalog: Catalog,
        store: Arc<dyn ObjectStore>,
        idle_timeout: std::time::Duration,
        limits: Limits,
        instance_idle: std::time::Duration,
    ) -> Self {
        let stats = Arc::new(CountingStore::new(store));
        let store: Arc<dyn ObjectStore> = stats.clone();
        AppState {
            catalog,
            store: store.clone(),
            store_stats: stats,
            instances: Arc::new(Instances::new(store, limits, instance_idle)),
            ingest: Arc::new(Ingest::new(idle_timeout)),
        }
    }
}

/// An error answered as a status and a one-line reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError { status, reason: reason.into() }
    }
    pub(crate) fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "no such file or directory")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, format!("{}\n", self.reason)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jitmux\""));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        tracing::error!("{e}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "catalog unavailable")
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/files", get(files))
        .route("/v1/files/", get(files))
        .route("/v1/files/{*path}", get(files))
        .route("/v1/ingest/{camera}/{file}", axum::routing::put(crate::ingest::put).post(crate::ingest::put))
        .route("/v1/share", axum::routing::post(share))
        .route("/v1/me", get(me))
        .route("/v1/thumbnails/{*path}", get(thumbnail))
        .route("/v1/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        .with_state(state)
}

/// Prometheus text exposition of the node's counters.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let body = format!(
        "# HELP jitmux_store_reads_total Object store range reads.\n# TYPE jitmux_store_reads_total counter\n\
         jitmux_store_reads_total {}\n# HELP jitmux_store_read_bytes_total Bytes read from the object store.\n\
         # TYPE jitmux_store_read_bytes_total counter\njitmux_store_read_bytes_total {}\n\
         # HELP jitmux_instances_alive User program instances alive.\n# TYPE jitmux_instances_alive gauge\n\
         jitmux_instances_alive {}\n# HELP jitmux_instances_created_total User program instances created.\n\
         # TYPE jitmux_instances_created_total counter\njitmux_instances_created_total {}\n\
         # HELP jitmux_instances_evicted_total User program instances evicted when idle.\n\
         # TYPE jitmux_instances_evicted_total counter\njitmux_instances_evicted_total {}\n",
        state.store_stats.reads.load(Relaxed),
        state.store_stats.read_bytes.load(Relaxed),
        state.instances.alive(),
        state.instances.created.load(Relaxed),
        state.instances.evicted.load(Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Checks a name used as one path segment of the tree (camera): 1–64 bytes of
/// `[A-Za-z0-9._-]`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if name.starts_with('.') {
        return Err("must not start with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err("may contain only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The token of an `Authorization: Bearer TOKEN` header (RFC 6750 §2.1); 401 when absent or
/// malformed. `what` names the credential in the reason ("token", "ingest key").
pub fn bearer<'a>(headers: &'a HeaderMap, what: &str) -> Result<&'a str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, format!("missing Authorization: Bearer {what}")))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, format!("Authorization must be 'Bearer {what}'")))
}

/// The caller: by `Authorization: Bearer TOKEN`, or else by the web page's session cookie
/// ([`crate::web`]). A request that changes state (`unsafe_method`, RFC 9110 §9.2.1) on a session
/// must also carry the session's CSRF token in `X-CSRF-Token`. 401 when neither is valid, 403 on a
/// missing or wrong CSRF token.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, unsafe_method: bool) -> Result<User, ApiError> {
    if headers.get(header::AUTHORIZATION).is_none()
        && let Some((user, csrf)) = crate::web::session(state, headers).await?
    {
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if unsafe_method && !sent.is_some_and(|s| crate::web::same_secret(s, &csrf)) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token for this session"));
        }
        return Ok(user);
    }
    let token = bearer(headers, "token")?;
    state.catalog.user_by_token(token).await?.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "invalid token"))
}

/// Splits the raw (still percent-encoded) path after `/v1/files` into decoded segments.
/// Rejects `.`/`..` segments, encoded slashes or backslashes, NUL and invalid UTF-8: the tree is
/// virtual, so these can never name a file, and refusing them outright keeps traversal tricks
/// from ever reaching a lookup.
pub(crate) fn split_path(raw: &str) -> Result<(Vec<String>, bool), ApiError> {
    let rest = raw.strip_prefix("/v1/files").unwrap_or(raw);
    let trailing_slash = rest.ends_with('/');
    let mut out = Vec::new();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let dec = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "path is not valid UTF-8"))?;
        if dec == "." || dec == ".." || dec.contains(['/', '\\', '\0']) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "path segments may not be '.', '..' or contain slashes",
            ));
        }
        out.push(dec.into_owned());
    }
    Ok((out, trailing_slash))
}

/// The caller's virtual file tree: directories (JSON or HTML listings) and recordings as MP4.
#[utoipa::path(
    get,
    path = "/v1/files/{path}",
    tag = "files",
    params(
        ("path" = String, Path, description = "Tree path: '', CAMERA, CAMERA/DAY, CAMERA/DAY/NAME.mp4 or CAMERA/live.mp4"),
        ("mode" = Option<String>, Query, description = "'file' (default) or 'stream' (fragmented MP4, sent as made)"),
        ("start" = Option<f64>, Query, description = "With mode=stream: start at the sync sample at or before this time, seconds"),
        ("sig" = Option<String>, Query, description = "Signed URL signature (with u, exp, modes, kid): no Authorization needed"),
    ),
    responses(
        (status = 200, description = "A listing (application/json with Accept: application/json, else text/html) or the MP4 (video/mp4)", body = Listing),
        (status = 206, description = "A byte range of the MP4 (RFC 9110 §14)"),
        (status = 304, description = "Not modified (If-None-Match / If-Modified-Since)"),
        (status = 400, description = "Bad path or query", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 403, description = "Signed URL refused", body = String, content_type = "text/plain"),
        (status = 404, description = "No such file or directory", body = String, content_type = "text/plain"),
        (status = 416, description = "Range not satisfiable"),
        (status = 429, description = "Too many concurrent streams or downloads for this user; see Retry-After", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []), ())
)]
async fn files(State(state): State<AppState>, req: Request) -> Response {
    match files_inner(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn files_inner(state: &AppState, req: Request) -> Result<Response, ApiError> {
    // Only the head matters; dropping the body keeps the future Send across awaits.
    let req = http::Request::from_parts(req.into_parts().0, ());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD"));
    }
    let (segs, trailing_slash) = split_path(req.uri().path())?;
    let query: Vec<(String, String)> = url_pairs(req.uri().query().unwrap_or("")).collect();
    let user = if query.iter().any(|(k, _)| k == "sig") {
        signed_user(state, &segs, &query).await?
    } else {
        authenticate(state, req.headers(), false).await?
    };
    let json =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    let cat = &state.catalog;
    // A directory's relative links resolve against its URL, so it must end in '/': an existing
    // directory asked for without it is a permanent redirect to it.
    let redirect = || {
        let q = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
        let to = format!("{}/{q}", req.uri().path());
        Ok((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, to)]).into_response())
    };
    match segs.as_slice() {
        [] => {
            if !trailing_slash {
                return redirect();
            }
            let cams = cat.list_cameras(user.id).await?;
            Ok(listing("/", json, cams.into_iter().map(Entry::dir).collect()))
        }
        [camera] => {
            let cam = cat.camera(user.id, camera).await?.ok_or_else(ApiError::not_found)?;
            if !trailing_slash {
                return redirect();
            }
            let days = cat.list_days(cam.id).await?;
            Ok(listing(&format!("/{camera}/"), json, days.into_iter().map(Entry::dir).collect()))
        }
        [camera, day] if day != "live.mp4" => {
            let cam = cat.camera(user.id, camera).await?.ok_or_else(ApiError::not_found)?;
            let recs = cat.list_recordings(cam.id, day).await?;
            if recs.is_empty() {
                return Err(ApiError::not_found());
            }
            if !trailing_slash {
                return redirect();
            }
            Ok(listing(&format!("/{camera}/{day}/"), json, recs.iter().map(Entry::file).collect()))
        }
        _ => {
            let rec = resolve_file(cat, user.id, &segs).await?;
            let file_name = segs.last().expect("a file path has segments").clone();
            serve_mp4(state, &user, rec, &file_name, req).await
        }
    }
}

/// The recording a file path of the tree names: `[camera, day, NAME.mp4]`, or
/// `[camera, live.mp4]` for the camera's current broadcast.
pub async fn resolve_file(cat: &Catalog, user_id: i64, segs: &[String]) -> Result<Recording, ApiError> {
    match segs {
        [camera, live] if live == "live.mp4" => {
            let cam = cat.camera(user_id, camera).await?.ok_or_else(ApiError::not_found)?;
            cat.live_recording(cam.id)
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "camera is not broadcasting"))
        }
        [camera, day, file] => {
            let name = file.strip_suffix(".mp4").ok_or_else(ApiError::not_found)?;
            let cam = cat.camera(user_id, camera).await?.ok_or_else(ApiError::not_found)?;
            cat.recording(cam.id, day, name).await?.ok_or_else(ApiError::not_found)
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The user a signed URL acts for, after checking its signature, expiry and mode
/// ([`crate::share`]). Refusals are 403 with the reason.
async fn signed_user(state: &AppState, segs: &[String], query: &[(String, String)]) -> Result<User, ApiError> {
    use crate::share::{Grant, ShareError, verify};
    let forbid = |e: ShareError| ApiError::new(StatusCode::FORBIDDEN, e.to_string());
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let (Some(user), Some(exp), Some(modes), Some(kid), Some(sig)) =
        (get("u"), get("exp"), get("modes"), get("kid"), get("sig"))
    else {
        return Err(forbid(ShareError::Incomplete));
    };
    let exp: i64 = exp.parse().map_err(|_| forbid(ShareError::BadSignature))?;
    let secret = state.catalog.signing_key(kid).await?.ok_or_else(|| forbid(ShareError::UnknownKey))?;
    let grant = Grant { user: user.to_string(), path: format!("/{}", segs.join("/")), exp, modes: modes.to_string() };
    let mode = if get("mode") == Some("stream") { "stream" } else { "file" };
    verify(&secret, &grant, sig, crate::catalog::now_ms() / 1000, mode).map_err(forbid)?;
    state.catalog.user_by_name(user).await?.ok_or_else(|| forbid(ShareError::BadSignature))
}

/// A signed URL's path and query for `user`'s file at tree path `path`, valid for `expires_s`
/// seconds in `modes`; checks that the file exists.
pub async fn signed_link(
    cat: &Catalog,
    user: &User,
    path: &str,
    expires_s: i64,
    modes: &str,
) -> Result<(String, i64), ApiError> {
    let (segs, _) = split_path(&format!("/v1/files/{}", path.trim_start_matches('/')))?;
    resolve_file(cat, user.id, &segs).await?;
    let modes = crate::share::canonical_modes(modes)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "modes must be 'file', 'stream' or both"))?;
    if !(1..=30 * 86400).contains(&expires_s) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "expiry must be between 1 s and 30 days"));
    }
    let exp = crate::catalog::now_ms() / 1000 + expires_s;
    let tree_path = format!("/{}", segs.join("/"));
    let grant = crate::share::Grant { user: user.name.clone(), path: tree_path.clone(), exp, modes };
    let (kid, secret) = cat.current_signing_key().await?;
    let enc: Vec<String> =
        segs.iter().map(|s| percent_encoding::utf8_percent_encode(s, crate::web::SEGMENT).to_string()).collect();
    Ok((format!("/v1/files/{}?{}", enc.join("/"), crate::share::sign(&kid, &secret, &grant)), exp))
}

/// `POST /v1/share` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ShareRequest {
    /// Tree path of the file, `/CAM/DAY/NAME.mp4` or `/CAM/live.mp4`.
    path: String,
    /// Lifetime in seconds (default 3600, at most 30 days).
    expires_s: Option<i64>,
    /// Allowed modes (default both).
    modes: Option<Vec<String>>,
}

/// A signed URL.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ShareResponse {
    /// Absolute URL (host from the request's Host header).
    pub url: String,
    /// Path and query of the URL.
    pub path: String,
    /// Expiry, RFC 3339.
    pub expires: String,
}

/// `POST /v1/share`: a signed URL for one of the caller's files.
#[utoipa::path(
    post,
    path = "/v1/share",
    tag = "share",
    request_body = ShareRequest,
    responses(
        (status = 200, description = "The signed URL", body = ShareResponse),
        (status = 400, description = "Bad body, path, modes or expiry", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such file", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
async fn share(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let user = authenticate(&state, &headers, true).await?;
    let req: ShareRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("body must be JSON {{path, expires_s, modes}}: {e}"))
    })?;
    let modes = req.modes.map(|m| m.join(",")).unwrap_or_else(|| "file,stream".into());
    let (link, exp) = signed_link(&state.catalog, &user, &req.path, req.expires_s.unwrap_or(3600), &modes).await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    Ok(axum::Json(
        serde_json::to_value(ShareResponse {
            url: format!("http://{host}{link}"),
            path: link,
            expires: rfc3339(exp * 1000),
        })
        .expect("serializable"),
    ))
}

async fn serve_mp4(
    state: &AppState,
    user: &User,
    mut rec: Recording,
    file_name: &str,
    mut req: http::Request<()>,
) -> Result<Response, ApiError> {
    let q = FileQuery::parse(req.uri().query())?;
    let inst = state.instances.get(user);
    if rec.format_version != FORMAT_VERSION as i64 {
        // Laid out by an older version of this code: recompute size, head and ETag once.
        let loaded = inst.layouts.get_or_build(&state.catalog, &rec).await.map_err(internal)?;
        rec.etag = loaded.etag.clone();
        rec.len_bytes = loaded.layout.len_bytes as i64;
        rec.head_len_bytes = loaded.head.len() as i64;
        rec.format_version = FORMAT_VERSION as i64;
        let key = crate::vfile::head_key(user.id, &rec.etag);
        inst.store.put(&key, loaded.head.clone()).await.map_err(internal)?;
        state.catalog.set_layout(rec.id, rec.len_bytes, rec.head_len_bytes, &rec.etag, rec.format_version).await?;
    }
    let busy = |what: &str, n: usize| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, format!("too many concurrent {what} for this user (limit {n})"))
    };
    let disposition = content_disposition(if q.download { "attachment" } else { "inline" }, file_name);
    if q.stream {
        let slot = inst.try_slot(Kind::Stream).ok_or_else(|| busy("streams", inst.limits.max_streams))?;
        let body = crate::vfile::stream_body(state.clone(), inst, slot, rec, q.start_s);
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_DISPOSITION, disposition),
        ];
        return Ok((headers, body).into_response());
    }
    let slot = inst.try_slot(Kind::Download).ok_or_else(|| busy("downloads", inst.limits.max_downloads))?;
    let entity = Mp4File::new(state.clone(), inst, slot, rec, disposition);
    let last_modified = http_serve::Entity::last_modified(&entity);
    // A finished recording's bytes never change: its modification time is a strong validator.
    let strong_date = !entity.live();
    crate::ranges::normalize(req.headers_mut(), http_serve::Entity::len(&entity), last_modified, strong_date);
    let mut resp = http_serve::serve(entity, &req);
    // Private (bearer or signed), and revalidated before reuse: a 304 is cheap, and a link that
    // expired or bytes laid out anew are never served from a cache.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp.map(Body::new))
}

/// `Content-Disposition` (RFC 6266 §4) of a served file: `inline` or `attachment` with its
/// name as `filename`, plus `filename*` (RFC 8187, UTF-8) when the name is not plain ASCII.
pub fn content_disposition(kind: &str, name: &str) -> HeaderValue {
    let plain = name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'%');
    let value = if plain {
        format!("{kind}; filename=\"{name}\"")
    } else {
        let ascii: String =
            name.chars().map(|c| if c.is_ascii_graphic() && !"\"\\%".contains(c) { c } else { '_' }).collect();
        /// RFC 8187 §3.2.1 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~".
        const ATTR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'!')
            .remove(b'#')
            .remove(b'$')
            .remove(b'&')
            .remove(b'+')
            .remove(b'-')
            .remove(b'.')
            .remove(b'^')
            .remove(b'_')
            .remove(b'`')
            .remove(b'|')
            .remove(b'~');
        let enc = percent_encoding::utf8_percent_encode(name, ATTR);
        format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{enc}")
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("inline"))
}

/// `GET /v1/thumbnails/{path}`: the JPEG thumbnail of a recording ([`crate::thumb`]).
#[utoipa::path(
    get,
    path = "/v1/thumbnails/{path}",
    tag = "files",
    params(("path" = String, Path, description = "CAMERA/DAY/NAME.jpg for CAMERA/DAY/NAME.mp4, or CAMERA/live.jpg")),
    responses(
        (status = 200, description = "JPEG of the recording's first video key frame, at most 320 pixels wide", content_type = "image/jpeg"),
        (status = 400, description = "Bad path", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such recording, or no thumbnail for it (no video, not H.264, interlaced, or undecodable)", body = String, content_type = "text/plain"),
        (status = 503, description = "Catalog or object store unavailable", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
async fn thumbnail(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    use crate::thumb::ThumbError;
    let user = authenticate(&state, req.headers(), false).await?;
    let raw = req.uri().path().strip_prefix("/v1/thumbnails").unwrap_or_default();
    let (mut segs, _) = split_path(raw)?;
    let last = segs.last_mut().ok_or_else(ApiError::not_found)?;
    *last = last.strip_suffix(".jpg").map(|stem| format!("{stem}.mp4")).ok_or_else(ApiError::not_found)?;
    let rec = resolve_file(&state.catalog, user.id, &segs).await?;
    let inst = state.instances.get(&user);
    match crate::thumb::thumbnail(&state.catalog, &inst, &rec).await {
        Ok(jpeg) => {
            Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=86400")], jpeg)
                .into_response())
        }
        Err(e @ (ThumbError::NoVideo | ThumbError::Unsupported(_) | ThumbError::Undecodable(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => {
            tracing::warn!(recording = rec.id, "thumbnail: {e}");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "thumbnail cannot be made now"))
        }
    }
}

/// `GET /v1/me` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: String,
    pub limits: MeLimits,
    pub active: MeActive,
    pub instance: MeInstance,
}

/// Per-user limits.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeLimits {
    pub max_streams: usize,
    pub max_downloads: usize,
    pub max_workers: usize,
}

/// Bodies being sent now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeActive {
    pub streams: usize,
    pub downloads: usize,
}

/// The user's program instance on this node.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MeInstance {
    /// Creation time, RFC 3339.
    pub created: String,
}

/// `GET /v1/me`: the caller's instance: limits and what is in flight.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "me",
    responses(
        (status = 200, description = "The caller's instance", body = Me),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
async fn me(State(state): State<AppState>, headers: HeaderMap) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let user = authenticate(&state, &headers, false).await?;
    let inst = state.instances.get(&user);
    let me = Me {
        user: user.name,
        limits: MeLimits {
            max_streams: inst.limits.max_streams,
            max_downloads: inst.limits.max_downloads,
            max_workers: inst.limits.max_workers,
        },
        active: MeActive { streams: inst.active(Kind::Stream), downloads: inst.active(Kind::Download) },
        instance: MeInstance { created: rfc3339(inst.created_ms) },
    };
    Ok(axum::Json(serde_json::to_value(me).expect("serializable")))
}

/// What the query of a file request asks for.
#[derive(Debug, Default, PartialEq)]
struct FileQuery {
    /// `mode=stream`: the quasi-stream rather than the full file (`mode=file`, default).
    stream: bool,
    /// `start=SECONDS` (with `mode=stream`): start at the sync sample at or before.
    start_s: Option<f64>,
    /// `download=1`: `Content-Disposition: attachment` rather than `inline`.
    download: bool,
}

impl FileQuery {
    /// Parses `mode`, `start` and `download`; other parameters (a signed URL's) are left alone.
    fn parse(query: Option<&str>) -> Result<FileQuery, ApiError> {
        let mut q = FileQuery::default();
        let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, m);
        for (k, v) in url_pairs(query.unwrap_or("")) {
            match k.as_str() {
                "mode" if v == "stream" => q.stream = true,
                "mode" if v == "file" => q.stream = false,
                "mode" => return Err(bad("mode must be 'stream' or 'file'")),
                "start" => match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.0 => q.start_s = Some(s),
                    _ => return Err(bad("start must be a number of seconds >= 0")),
                },
                "download" => match v.as_str() {
                    "1" | "true" => q.download = true,
                    "0" | "false" => q.download = false,
                    _ => return Err(bad("download must be 1 or 0")),
                },
                _ => {}
            }
        }
        if q.start_s.is_some() && !q.stream {
            return Err(bad("start= needs mode=stream"));
        }
        Ok(q)
    }
}

fn url_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        (dec(k), dec(v))
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("{e}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "recording cannot be laid out")
}

/// A directory listing (JSON form).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Listing {
    /// The directory's tree path.
    pub path: String,
    pub entries: Vec<Entry>,
}

/// A directory entry of a listing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// Bytes: the file's length, or the sum of the files under a directory.
    size: i64,
    /// RFC 3339.
    modified: String,
    duration_s: f64,
    /// A live broadcast still growing (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<bool>,
    /// RFC 6381 codecs of the file's tracks, for `canPlayType` (files only; absent when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    codecs: Option<String>,
    /// Source streams the file does not carry (data, subtitles, codecs an MP4 cannot hold), e.g.
    /// `PID 0x0102: SCTE-35 splice information (stream_type 0x86)` (files only; absent when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<Vec<String>>,
}

impl Entry {
    fn dir(d: DirSummary) -> Entry {
        Entry {
            name: d.name,
            kind: "dir",
            size: d.len_bytes,
            modified: rfc3339(d.modified_ms.div_euclid(1000) * 1000),
            duration_s: d.duration_ms as f64 / 1000.0,
            live: None,
            codecs: None,
            skipped: None,
        }
    }
    fn file(r: &Recording) -> Entry {
        Entry {
            name: format!("{}.mp4", r.name),
            kind: "file",
            size: r.len_bytes,
            // Whole seconds, as in Last-Modified (RFC 9110 §5.6.7), so both agree.
            modified: rfc3339(r.modified_ms.div_euclid(1000) * 1000),
            duration_s: r.duration_ms as f64 / 1000.0,
            live: Some(r.live),
            codecs: Some(r.codecs.clone()).filter(|c| !c.is_empty()),
            skipped: Some(r.skipped.lines().map(str::to_string).collect()).filter(|v: &Vec<String>| !v.is_empty()),
        }
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A directory listing as JSON or HTML (by `Accept`), never stored by shared caches and
/// revalidated by private ones (RFC 9111 §5.2.2).
fn listing(path: &str, json: bool, entries: Vec<Entry>) -> Response {
    let mut r = listing_body(path, json, entries);
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

fn listing_body(path: &str, json: bool, entries: Vec<Entry>) -> Response {
    if json {
        return axum::Json(Listing { path: path.to_string(), entries }).into_response();
    }
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>{p}</title><h1>{p}</h1><table>\
         <tr><th>name</th><th>size</th><th>duration</th><th>modified</th></tr>",
        p = esc(path)
    );
    if path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td></tr>");
    }
    for e in &entries {
        let href = percent_encoding::utf8_percent_encode(&e.name, crate::web::SEGMENT).to_string();
        let slash = if e.kind == "dir" { "/" } else { "" };
        html.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{n}{slash}</a></td><td>{}</td><td>{:.1} s</td><td>{}</td></tr>",
            e.size,
            e.duration_s,
            e.modified,
            n = esc(&e.name)
        ));
    }
    html.push_str("</table>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Escapes text for HTML content and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Serves `app` on `listener` forever, one task per connection.
///
/// HTTP/1 connections allow half-closure: ffmpeg's HLS muxer closes its side right after the
/// last chunk of a PUT without waiting for the answer, and the upload must still be processed
/// (hyper would otherwise drop the request at that EOF).
pub async fn serve_on(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_rejects_traversal() {
        assert_eq!(split_path("/v1/files/cam/2026-01-01/a.mp4").unwrap().0, vec!["cam", "2026-01-01", "a.mp4"]);
        assert_eq!(split_path("/v1/files/").unwrap().0, Vec::<String>::new());
        for bad in [
            "/v1/files/..",
            "/v1/files/cam/%2e%2e/x",
            "/v1/files/a%2Fb",
            "/v1/files/a%5cb",
            "/v1/files/a%00",
            "/v1/files/%ff",
        ] {
            assert!(split_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("front-door_1.cam").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
