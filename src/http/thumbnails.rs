//! `GET /v1/thumbnails/…`: a recording's thumbnail ([`crate::media::thumb`]).

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::auth::{Caller, split_path};
use super::{ApiError, AppState};
use crate::model::TreePath;

/// `GET /v1/thumbnails/{path}`: the JPEG thumbnail of a recording.
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
pub async fn thumbnail(
    State(state): State<AppState>,
    Caller(user): Caller,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut segs, _) = split_path(req.uri().path(), "/v1/thumbnails")?;
    let last = segs.last_mut().ok_or(ApiError::NotFound)?;
    *last = last.strip_suffix(".jpg").map(|stem| format!("{stem}.mp4")).ok_or(ApiError::NotFound)?;
    let path = TreePath::from_segments(&segs).ok_or(ApiError::NotFound)?;
    let rec = super::files::resolve_file(&state.catalog, user.id, &path).await?;
    let inst = state.instances.get(&user);
    let jpeg = crate::media::thumb::thumbnail(&state.catalog, &inst.media, &rec).await?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=86400")], jpeg)
        .into_response())
}
