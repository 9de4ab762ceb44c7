//! `GET|HEAD /v1/files/…`: each user's virtual file tree. Directories are listings; every
//! recording is a progressive MP4 served by `http-serve` (RFC 9110 ranges and conditionals)
//! from [`crate::media::body`], or with `mode=stream` the quasi-stream
//! ([`crate::media::fragments`]).

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::auth::{reader, split_path, url_pairs};
use super::error::ok;
use super::instance::{Kind, Slot};
use super::listing::{Entry, listing};
use super::{ApiError, AppState};
use crate::catalog::{Catalog, Recording};
use crate::media::{File, UserMedia};
use crate::model::{Mode, TreePath, UserId};

/// The caller's virtual file tree: directories (JSON or HTML listings) and recordings as MP4.
#[utoipa::path(
    get,
    path = "/v1/files/{path}",
    tag = "files",
    params(
        ("path" = String, Path, description = "Tree path: '', CAMERA, CAMERA/DAY, CAMERA/DAY/NAME.mp4 or CAMERA/live.mp4"),
        ("mode" = Option<String>, Query, description = "'file' (default) or 'stream' (fragmented MP4, sent as made)"),
        ("start" = Option<f64>, Query, description = "With mode=stream: start at the sync sample at or before this time, seconds"),
        ("download" = Option<String>, Query, description = "'1': Content-Disposition: attachment (default inline)"),
        ("sig" = Option<String>, Query, description = "Signed URL signature (with u, exp, modes, kid): no Authorization needed"),
    ),
    responses(
        (status = 200, description = "A listing (application/json with Accept: application/json, else text/html) or the MP4 (video/mp4)", body = super::listing::Listing),
        (status = 206, description = "A byte range of the MP4 (RFC 9110 §14)"),
        (status = 304, description = "Not modified (If-None-Match / If-Modified-Since)"),
        (status = 308, description = "A directory without its trailing slash: redirect to it"),
        (status = 400, description = "Bad path or query", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 403, description = "Signed URL refused", body = String, content_type = "text/plain"),
        (status = 404, description = "No such file or directory", body = String, content_type = "text/plain"),
        (status = 412, description = "Precondition failed (If-Match / If-Unmodified-Since)"),
        (status = 416, description = "Range not satisfiable"),
        (status = 429, description = "Too many concurrent streams or downloads for this user; see Retry-After", body = String, content_type = "text/plain"),
        (status = 503, description = "Catalog or object store unavailable", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []), ())
)]
pub async fn files(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    // Only the head matters; dropping the body keeps the future Send across awaits.
    let req = http::Request::from_parts(req.into_parts().0, ());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let (segs, trailing_slash) = split_path(req.uri().path(), "/v1/files")?;
    // A directory plus `.zip`: the directory as one ZIP.
    if !trailing_slash && (1..=2).contains(&segs.len()) && segs.last().is_some_and(|s| s.ends_with(".zip")) {
        let q = FileQuery::parse(req.uri().query())?;
        let user = reader(&state, &req, &format!("/{}", segs.join("/")), q.mode()).await?;
        let last = segs.last().map(|s| s.trim_end_matches(".zip").to_string()).unwrap_or_default();
        return match segs.as_slice() {
            [_] => super::zips::serve_zip(&state, &user, &last, None, req).await,
            [camera, _] => super::zips::serve_zip(&state, &user, camera, Some(&last), req).await,
            _ => Err(ApiError::NotFound),
        };
    }
    let path = TreePath::from_segments(&segs).ok_or(ApiError::NotFound)?;
    let q = FileQuery::parse(req.uri().query())?;
    let user = reader(&state, &req, &path.to_string(), q.mode()).await?;
    let json =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    let cat = &state.catalog;
    // A directory's relative links resolve against its URL, so it must end in '/': an existing
    // directory asked for without it is a permanent redirect to it.
    let redirect = || {
        let q = req.uri().query().map_or(String::new(), |q| format!("?{q}"));
        Ok(ok::permanent_redirect(&format!("{}/{q}", req.uri().path())))
    };
    match &path {
        TreePath::Root => {
            if !trailing_slash {
                return redirect();
            }
            let cams = cat.list_cameras(user.id).await?;
            Ok(listing("/", json, cams.into_iter().map(Entry::dir).collect()))
        }
        TreePath::Camera { camera } => {
            let cam = cat.camera(user.id, camera).await?.ok_or(ApiError::NotFound)?;
            if !trailing_slash {
                return redirect();
            }
            let days = cat.list_days(cam.id).await?;
            Ok(listing(&path.to_string(), json, days.into_iter().map(Entry::dir).collect()))
        }
        TreePath::Day { camera, day } => {
            let cam = cat.camera(user.id, camera).await?.ok_or(ApiError::NotFound)?;
            let recs = cat.list_recordings(cam.id, day).await?;
            if recs.is_empty() {
                return Err(ApiError::NotFound);
            }
            if !trailing_slash {
                return redirect();
            }
            Ok(listing(&path.to_string(), json, recs.iter().map(Entry::file).collect()))
        }
        TreePath::File { .. } | TreePath::Live { .. } => {
            let rec = resolve_file(cat, user.id, &path).await?;
            serve_file(&state, &user, rec, &path, &q, req).await
        }
    }
}

/// The recording a file path of the tree names (a camera's live broadcast for `live.mp4`);
/// 404 for anything else.
pub async fn resolve_file(cat: &Catalog, user: UserId, path: &TreePath) -> Result<Recording, ApiError> {
    match path {
        TreePath::Live { camera } => {
            let cam = cat.camera(user, camera).await?.ok_or(ApiError::NotFound)?;
            cat.live_recording(cam.id).await?.ok_or_else(|| ApiError::Absent("camera is not broadcasting".into()))
        }
        TreePath::File { camera, day, name } => {
            let cam = cat.camera(user, camera).await?.ok_or(ApiError::NotFound)?;
            cat.recording(cam.id, day, name).await?.ok_or(ApiError::NotFound)
        }
        _ => Err(ApiError::NotFound),
    }
}

/// What the query of a file request asks for.
#[derive(Debug, Default, PartialEq)]
pub struct FileQuery {
    /// `mode=stream`: the quasi-stream rather than the full file (`mode=file`, default).
    pub stream: bool,
    /// `start=SECONDS` (with `mode=stream`): start at the sync sample at or before.
    pub start_s: Option<f64>,
    /// `download=1`: `Content-Disposition: attachment` rather than `inline`.
    pub download: bool,
}

impl FileQuery {
    /// Parses `mode`, `start` and `download`; other parameters (a signed URL's) are left alone.
    pub fn parse(query: Option<&str>) -> Result<FileQuery, ApiError> {
        let mut q = FileQuery::default();
        let bad = |m: &str| ApiError::BadRequest(m.into());
        for (k, v) in url_pairs(query.unwrap_or("")) {
            match k.as_str() {
                "mode" => match Mode::parse(&v) {
                    Some(m) => q.stream = m == Mode::Stream,
                    None => return Err(bad("mode must be 'stream' or 'file'")),
                },
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

    /// The mode asked for.
    pub fn mode(&self) -> Mode {
        if self.stream { Mode::Stream } else { Mode::File }
    }
}

async fn serve_file(
    state: &AppState,
    user: &crate::catalog::User,
    rec: Recording,
    path: &TreePath,
    q: &FileQuery,
    req: http::Request<()>,
) -> Result<Response, ApiError> {
    let inst = state.instances.get(user);
    let rec = crate::media::current(&state.catalog, &inst.media, rec).await?;
    let name = path.file_name().unwrap_or_default();
    serve_media(state, user, File::whole(rec), &name, q, req).await
}

/// Serves `file` (a recording or a clip) as the full MP4 with ranges and conditionals, or with
/// `mode=stream` as the quasi-stream; `name` is the file name `Content-Disposition` gives.
pub async fn serve_media(
    state: &AppState,
    user: &crate::catalog::User,
    file: File,
    name: &str,
    q: &FileQuery,
    mut req: http::Request<()>,
) -> Result<Response, ApiError> {
    let inst = state.instances.get(user);
    let disposition = content_disposition(if q.download { "attachment" } else { "inline" }, name);
    if q.stream {
        let slot =
            inst.try_slot(Kind::Stream).ok_or(ApiError::TooMany { what: "streams", limit: inst.limits.max_streams })?;
        let body =
            crate::media::fragments(state.catalog.clone(), inst.media.clone(), file, q.start_s, state.drain.closing());
        let body = Body::from_stream(Holding { inner: body, _slot: slot });
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_DISPOSITION, disposition),
        ];
        return Ok((headers, body).into_response());
    }
    let slot = inst
        .try_slot(Kind::Download)
        .ok_or(ApiError::TooMany { what: "downloads", limit: inst.limits.max_downloads })?;
    let entity = Mp4Entity {
        catalog: state.catalog.clone(),
        media: inst.media.clone(),
        file,
        slot: Arc::new(slot),
        disposition,
    };
    let last_modified = http_serve::Entity::last_modified(&entity);
    // A finished recording's bytes never change: its modification time is a strong validator.
    let strong_date = !entity.file.live();
    super::ranges::normalize(req.headers_mut(), http_serve::Entity::len(&entity), last_modified, strong_date);
    let resp = first_frame_first(http_serve::serve(entity, &req)).await?;
    let mut resp = resp;
    // Private (bearer or signed), and revalidated before reuse: a 304 is cheap, and a link that
    // expired or bytes laid out anew are never served from a cache.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp)
}

/// Waits for the first bytes of a successful response's body before its head is sent, so a
/// failure there (the object store unavailable, an archive segment replaced or no longer
/// granted) is a status with a reason rather than a connection cut after a 200 or 206. The
/// first bytes are usually the stored head (one cached read), so this costs next to nothing.
async fn first_frame_first<B>(resp: http::Response<B>) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
{
    use http_body_util::BodyExt;
    if !resp.status().is_success() {
        return Ok(resp.map(Body::new));
    }
    let (parts, mut body) = resp.into_parts();
    let first = match body.frame().await {
        None => return Ok(http::Response::from_parts(parts, Body::empty())),
        Some(Err(e)) => return Err(ApiError::body_failed(e.downcast_ref::<crate::media::MediaError>())),
        Some(Ok(f)) => f,
    };
    let rest = http_body_util::BodyStream::new(body);
    let stream = futures::stream::once(async move { Ok::<_, BoxError>(first) }).chain(rest);
    Ok(http::Response::from_parts(parts, Body::new(http_body_util::StreamBody::new(stream))))
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

/// A body stream that holds the user's slot until the body is done or the client goes away.
struct Holding {
    inner: crate::media::BodyStream,
    _slot: Slot,
}

impl Stream for Holding {
    type Item = Result<Bytes, crate::media::MediaError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// Boxed error type of `http-serve` bodies.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A file served as an [`http_serve::Entity`]: length, ETag and modification time from the
/// catalog row, bytes of any range from [`crate::media::body`].
struct Mp4Entity {
    catalog: Catalog,
    media: Arc<UserMedia>,
    file: File,
    /// The user's download slot, held until every body made from this entity is done.
    slot: Arc<Slot>,
    /// `Content-Disposition` sent with it.
    disposition: HeaderValue,
}

impl http_serve::Entity for Mp4Entity {
    type Data = Bytes;
    type Error = BoxError;

    fn len(&self) -> u64 {
        self.file.len_bytes()
    }

    fn get_range(&self, range: Range<u64>) -> Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + Sync>> {
        let body = crate::media::body(self.catalog.clone(), self.media.clone(), self.file.clone(), range);
        let slot = self.slot.clone();
        let body = body.map(move |r| {
            let _held = &slot;
            r.map_err(|e| -> BoxError { Box::new(e) })
        });
        Box::pin(sync_wrapper::SyncStream::new(body))
    }

    fn add_headers(&self, h: &mut HeaderMap) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
        h.insert(header::CONTENT_DISPOSITION, self.disposition.clone());
    }

    fn etag(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("\"{}\"", self.file.etag())).ok()
    }

    /// The file's modification time in whole seconds (HTTP dates have no more, RFC 9110
    /// §5.6.7, so `If-Modified-Since: <this Last-Modified>` compares equal).
    fn last_modified(&self) -> Option<SystemTime> {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(self.file.modified_ms().max(0) as u64);
        Some(super::ranges::whole_seconds(t))
    }
}
