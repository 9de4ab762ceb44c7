//! `PUT|POST /v1/ingest/{camera}/{file}`: an encoder's uploads ([`crate::ingest`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::auth::bearer;
use super::error::ok;
use super::{ApiError, AppState};

/// `PUT /v1/ingest/{camera}/{file}`: one upload of a live broadcast (ffmpeg's HLS muxer with
/// `-method PUT`). The key is the camera's ingest key, which can only write.
#[utoipa::path(
    put,
    path = "/v1/ingest/{camera}/{file}",
    tag = "ingest",
    params(
        ("camera" = String, Path, description = "Camera name"),
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
        (status = 503, description = "Catalog or object store unavailable", body = String, content_type = "text/plain"),
    ),
    security(("ingest_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    Path((camera, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = bearer(&headers, "ingest key")?;
    let cam = state
        .catalog
        .camera_by_ingest_key(key)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("invalid ingest key".into()))?;
    if cam.name != camera {
        return Err(ApiError::Forbidden("this ingest key writes to another camera".into()));
    }
    let ingest = state.ingest.clone();
    // The whole body first: a cut connection or an oversize upload stores nothing.
    let data = {
        use http_body_util::BodyExt;
        let limited = http_body_util::Limited::new(body, ingest.max_upload_bytes);
        match limited.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ApiError::TooLarge(ingest.max_upload_bytes));
            }
            Err(_) => return Err(ApiError::BadRequest("upload interrupted".into())),
        }
    };
    // ffmpeg closes the connection right after the last chunk without reading the response,
    // which drops this handler: the upload, complete now, is processed in a task of its own.
    let task = tokio::spawn(async move {
        let r = ingest.upload(&cam, &file, data).await;
        if let Err(e) = &r {
            // The encoder may never read the answer: say it here too.
            tracing::warn!(camera = cam.name, file, "upload rejected: {e}");
        }
        r
    });
    match task.await {
        Ok(r) => r.map(|()| ok::created()).map_err(ApiError::from),
        Err(e) => Err(crate::ingest::IngestError::Task(e.to_string()).into()),
    }
}
