//! The one place where errors become HTTP statuses.
//!
//! Handlers return [`ApiError`]: either a refusal the HTTP layer itself decides (no credentials,
//! a bad query, a limit) or a typed error of a lower layer, carried as it is. [`IntoResponse`]
//! maps each to a status and a one-line `text/plain` reason, and logs server-side failures once,
//! here, with their whole cause (the client gets a short reason without internals). A path the
//! caller cannot see is always the same 404, whether it belongs to another user or to nobody.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::catalog::CatalogError;
use crate::ingest::IngestError;
use crate::media::thumb::ThumbError;
use crate::media::{ClipError, MediaError};
use crate::share::ShareError;
use crate::store::StoreError;

/// A request refused or failed, with what to tell the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a malformed path, query or body.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid credential (with `WWW-Authenticate: Bearer`, RFC 6750 §3).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid credential that may not do this (a key for another camera, no CSRF token).
    #[error("{0}")]
    Forbidden(String),
    /// 404 "no such file or directory": never says more, so that another user's tree gives no hint.
    #[error("no such file or directory")]
    NotFound,
    /// 404 about something of the caller's own (a camera that is not broadcasting).
    #[error("{0}")]
    Absent(String),
    /// 405: only GET and HEAD.
    #[error("only GET and HEAD")]
    MethodNotAllowed,
    /// 409: the request conflicts with what is stored (a clip's range has gaps and the caller
    /// refused them; a job that cannot be cancelled any more).
    #[error("{0}")]
    Conflict(String),
    /// 413: an upload over the limit (bytes).
    #[error("upload larger than {0} bytes")]
    TooLarge(usize),
    /// 429: a per-user limit (with `Retry-After`).
    #[error("too many concurrent {what} for this user (limit {limit})")]
    TooMany { what: &'static str, limit: usize },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Thumb(#[from] ThumbError),
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The first bytes of a body could not be made (a store or media failure found before the
    /// response head was sent): status and reason as for that failure.
    #[error("{1}")]
    BodyFailed(StatusCode, String),
}

impl ApiError {
    /// The error for a body whose first bytes failed with `e` (`None`: not a media error).
    pub fn body_failed(e: Option<&MediaError>) -> ApiError {
        let (status, reason) = match e {
            Some(e) => media(e),
            None => (StatusCode::INTERNAL_SERVER_ERROR, "the file could not be made".into()),
        };
        ApiError::BodyFailed(status, reason)
    }
}

impl ApiError {
    /// The status and the one-line reason the client gets.
    fn status_and_reason(&self) -> (StatusCode, String) {
        use StatusCode as S;
        let unavailable = |what: &str| (S::SERVICE_UNAVAILABLE, format!("{what} unavailable, try again"));
        match self {
            ApiError::BadRequest(m) => (S::BAD_REQUEST, m.clone()),
            ApiError::Unauthorized(m) => (S::UNAUTHORIZED, m.clone()),
            ApiError::Forbidden(m) => (S::FORBIDDEN, m.clone()),
            ApiError::NotFound => (S::NOT_FOUND, self.to_string()),
            ApiError::Absent(m) => (S::NOT_FOUND, m.clone()),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, self.to_string()),
            ApiError::Conflict(m) => (S::CONFLICT, m.clone()),
            ApiError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, self.to_string()),
            ApiError::TooMany { .. } => (S::TOO_MANY_REQUESTS, self.to_string()),
            ApiError::Share(e) => (S::FORBIDDEN, e.to_string()),
            ApiError::BodyFailed(status, reason) => (*status, reason.clone()),
            ApiError::Catalog(CatalogError::Conflict(m)) => (S::CONFLICT, m.clone()),
            ApiError::Catalog(CatalogError::Corrupt(_)) => {
                (S::INTERNAL_SERVER_ERROR, "catalog holds a corrupt value".into())
            }
            ApiError::Catalog(_) => unavailable("catalog"),
            ApiError::Store(e) => store(e),
            ApiError::Media(e) => media(e),
            ApiError::Thumb(ThumbError::Media(e)) => media(e),
            ApiError::Thumb(e) => (S::NOT_FOUND, e.to_string()),
            ApiError::Ingest(e) => match e {
                IngestError::BadName(_) => (S::BAD_REQUEST, e.to_string()),
                IngestError::UnsupportedKind(_) => (S::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
                IngestError::Unparsable { .. }
                | IngestError::NoSamples(_)
                | IngestError::CodecChange { .. }
                | IngestError::Layout(..) => (S::UNPROCESSABLE_ENTITY, e.to_string()),
                IngestError::Catalog(_) => unavailable("catalog"),
                IngestError::Store(e) => store(e),
                IngestError::Resume(_) | IngestError::Task(_) => {
                    (S::INTERNAL_SERVER_ERROR, "the broadcast cannot go on".into())
                }
            },
        }
    }
}

fn store(e: &StoreError) -> (StatusCode, String) {
    match e {
        // A stored object that is missing or shorter than the catalog says: the data is damaged.
        StoreError::NotFound(_) | StoreError::BadRange { .. } | StoreError::BadKey(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "stored media is missing or damaged".into())
        }
        StoreError::Io { .. } | StoreError::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "object store unavailable, try again".into())
        }
        // An archive object replaced or removed behind jitmux's back: never serve other bytes.
        StoreError::Changed(_) => {
            (StatusCode::BAD_GATEWAY, "an archive segment changed since it was indexed; re-import the recording".into())
        }
        StoreError::Denied { .. } => (StatusCode::BAD_GATEWAY, "the object store refused to read the media".into()),
        StoreError::NotGranted(_) => {
            (StatusCode::FORBIDDEN, "this recording's archive is no longer granted to you".into())
        }
    }
}

fn media(e: &MediaError) -> (StatusCode, String) {
    match e {
        MediaError::Catalog(CatalogError::Conflict(m)) => (StatusCode::CONFLICT, m.clone()),
        MediaError::Catalog(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog unavailable, try again".into()),
        MediaError::Store(e) => store(e),
        MediaError::Changed(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "the file changed while being served, try again".into())
        }
        MediaError::Gone(_) => (StatusCode::NOT_FOUND, "no such file or directory".into()),
        MediaError::Clip(ClipError::NoMedia) => (StatusCode::NOT_FOUND, "no media in the range".into()),
        MediaError::Clip(ClipError::Empty) => (StatusCode::BAD_REQUEST, "the range ends before it starts".into()),
        MediaError::Clip(ClipError::Layout(e)) => {
            (StatusCode::CONFLICT, format!("the recordings in the range cannot share one file: {e}"))
        }
        MediaError::Index { .. } | MediaError::Layout(..) | MediaError::Transmux { .. } | MediaError::Task(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "recording cannot be laid out".into())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, reason) = self.status_and_reason();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), "{self}");
        }
        let mut r = (status, format!("{reason}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jitmux\""));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Responses that are not errors but still choose a status: kept here so that this is the only
/// module that names one.
pub mod ok {
    use super::*;

    /// 201: an upload accepted.
    pub fn created() -> Response {
        StatusCode::CREATED.into_response()
    }

    /// 204: nothing to say (a favicon we do not have).
    pub fn no_content() -> Response {
        StatusCode::NO_CONTENT.into_response()
    }

    /// 308 to `to`: a directory asked for without its trailing slash (RFC 9110 §15.4.9).
    pub fn permanent_redirect(to: &str) -> Response {
        Redirect::permanent(to).into_response()
    }

    /// 303 to `to`: after a form post (RFC 9110 §15.4.4).
    pub fn see_other(to: &str) -> Response {
        Redirect::to(to).into_response()
    }

    /// An HTML page with a status of its own choosing (the sign-in page's refusals).
    pub fn page(kind: Page, body: String) -> Response {
        let status = match kind {
            Page::Ok => StatusCode::OK,
            Page::BadRequest => StatusCode::BAD_REQUEST,
            Page::Unauthorized => StatusCode::UNAUTHORIZED,
            Page::Forbidden => StatusCode::FORBIDDEN,
        };
        (status, body).into_response()
    }

    /// What an HTML page says about the request.
    #[derive(Debug, Clone, Copy)]
    pub enum Page {
        Ok,
        BadRequest,
        Unauthorized,
        Forbidden,
    }
}
