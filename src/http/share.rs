//! `POST /v1/share`: signed URLs for the caller's files ([`crate::share`]).

use axum::extract::State;
use axum::http::{HeaderMap, header};

use super::auth::{Caller, split_path};
use super::{ApiError, AppState};
use crate::catalog::{Catalog, User};
use crate::model::{ShareModes, TreePath, now_ms, rfc3339};
use crate::share::{Grant, sign};

/// Longest lifetime of a signed URL, seconds (30 days).
pub const MAX_EXPIRY_S: i64 = 30 * 86400;

/// A signed URL's path and query for `user`'s file at tree path `path` (`/CAM/DAY/NAME.mp4`,
/// `/CAM/live.mp4`) or clip path (`/v1/clips/CAM/START_END.mp4`: the camera must exist; the
/// range is checked when the link is used), valid for `expires_s` seconds in `modes`; checks that the file exists.
/// Returns the link and its expiry (unix seconds).
pub async fn signed_link(
    cat: &Catalog,
    user: &User,
    path: &str,
    expires_s: i64,
    modes: ShareModes,
) -> Result<(String, i64), ApiError> {
    if path.starts_with("/v1/clips/") {
        // A clip: signed over its URL path; its camera must be the user's.
        let clip = super::clips::ClipPath::parse(path)?;
        cat.camera(user.id, &clip.camera).await?.ok_or(ApiError::NotFound)?;
        let exp = expiry(expires_s)?;
        let grant = Grant { user: user.name.clone(), path: clip.signed_path(), exp, modes };
        let (kid, secret) = cat.current_signing_key().await?;
        let enc = [clip.camera.as_str(), clip.name.as_str()]
            .map(|s| percent_encoding::utf8_percent_encode(s, super::ui::SEGMENT).to_string());
        return Ok((format!("/v1/clips/{}?{}", enc.join("/"), sign(&kid, &secret, &grant)?), exp));
    }
    let (segs, _) = split_path(&format!("/v1/files/{}", path.trim_start_matches('/')), "/v1/files")?;
    let tree = TreePath::from_segments(&segs).filter(|p| !p.is_dir()).ok_or(ApiError::NotFound)?;
    super::files::resolve_file(cat, user.id, &tree).await?;
    let exp = expiry(expires_s)?;
    let grant = Grant { user: user.name.clone(), path: tree.to_string(), exp, modes };
    let (kid, secret) = cat.current_signing_key().await?;
    let enc: Vec<String> =
        segs.iter().map(|s| percent_encoding::utf8_percent_encode(s, super::ui::SEGMENT).to_string()).collect();
    Ok((format!("/v1/files/{}?{}", enc.join("/"), sign(&kid, &secret, &grant)?), exp))
}

/// The expiry (unix seconds) of a link valid for `expires_s` seconds; 400 beyond the limits.
fn expiry(expires_s: i64) -> Result<i64, ApiError> {
    if !(1..=MAX_EXPIRY_S).contains(&expires_s) {
        return Err(ApiError::BadRequest("expiry must be between 1 s and 30 days".into()));
    }
    Ok(now_ms() / 1000 + expires_s)
}

/// `POST /v1/share` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ShareRequest {
    /// Tree path of the file, `/CAM/DAY/NAME.mp4` or `/CAM/live.mp4`, or a clip's URL path,
    /// `/v1/clips/CAM/START_END.mp4`.
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
        (status = 403, description = "A session without its CSRF token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such file", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn share(
    State(state): State<AppState>,
    Caller(user): Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::Json<ShareResponse>, ApiError> {
    let req: ShareRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body must be JSON {{path, expires_s, modes}}: {e}")))?;
    let modes = match req.modes {
        Some(m) => ShareModes::parse(&m.join(","))
            .ok_or_else(|| ApiError::BadRequest("modes must be 'file', 'stream' or both".into()))?,
        None => ShareModes::ALL,
    };
    let (link, exp) = signed_link(&state.catalog, &user, &req.path, req.expires_s.unwrap_or(3600), modes).await?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    Ok(axum::Json(ShareResponse { url: format!("http://{host}{link}"), path: link, expires: rfc3339(exp * 1000) }))
}
