//! Export jobs over HTTP ([`crate::jobs::export`]):
//!
//! ```text
//! POST   /v1/exports            {items: [{clip: {camera, start, end, accuracy?, gaps?}} | {path}, name?], destination: {s3: URL} | {zip: {}}}
//! GET    /v1/exports            the caller's latest jobs
//! GET    /v1/exports/{id}       one job, with its items
//! DELETE /v1/exports/{id}       cancels it (queued or running)
//! GET|HEAD /v1/exports/{id}.zip a ZIP job's result, made just in time (exact length, ranges)
//! ```
//!
//! [`TreeItems`] resolves an item of a user's tree to bytes through the media layer, for the
//! node's job runner and for `jitmux export`.

use async_trait::async_trait;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::{Caller, authenticate, split_path};
use super::{ApiError, AppState};
use crate::catalog::{ExportItemRow, ExportJob, ExportTotals};
use crate::jobs::export::{Destination, ExportItem, Items, Resolved, Source, Target, check_destination};
use crate::media::{Accuracy, Cut, File, Gaps};
use crate::model::{ExportId, TreePath, UserId, parse_rfc3339_ms, rfc3339};

/// Most items in one job.
pub const MAX_ITEMS: usize = 10_000;

/// Jobs listed by `GET /v1/exports`.
const LIST_LIMIT: i64 = 100;

/// `POST /v1/exports` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ExportRequest {
    /// The files to export, in order (1 to 10,000); object names must differ.
    pub items: Vec<ExportItem>,
    pub destination: Destination,
}

/// A job as `GET /v1/exports/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportStatus {
    pub id: i64,
    /// queued, running, succeeded, failed (some item failed; the others are exported) or
    /// cancelled.
    pub state: String,
    pub destination: Destination,
    /// RFC 3339.
    pub created: String,
    pub updated: String,
    pub finished: Option<String>,
    /// The node running it (or that ran it last).
    pub node: Option<String>,
    /// Times it was started: more than 1 when a node died or left and another resumed it.
    pub runs: i64,
    pub items_total: i64,
    pub items_done: i64,
    pub items_failed: i64,
    /// Sum of the items' lengths, bytes, once every item is resolved (null before).
    pub bytes_total: Option<i64>,
    pub bytes_done: i64,
    /// The ZIP's URL (ZIP destination, once finished with some item done): the items done.
    pub download: Option<String>,
    /// Why the job failed, if it did.
    pub error: Option<String>,
    /// Failed items.
    pub errors: Vec<ItemError>,
    /// Every item (`GET /v1/exports/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemStatus>>,
}

/// A failed item.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemError {
    /// Position in the job, from 0.
    pub item: i64,
    pub error: String,
}

/// One item of a job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemStatus {
    /// Position in the job, from 0.
    pub item: i64,
    pub name: String,
    /// Where it is written (`s3://…`; the member name for a ZIP).
    pub location: String,
    /// pending, done or failed.
    pub state: String,
    pub len_bytes: Option<i64>,
    pub bytes_done: i64,
    /// Strong ETag of the bytes written: the same as the file's or clip's `ETag` over HTTP.
    pub etag: Option<String>,
    /// The node that finished it, and when (RFC 3339).
    pub node: Option<String>,
    pub finished: Option<String>,
    pub error: Option<String>,
    pub spec: ExportItem,
}

/// `{"exports": [...]}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportList {
    pub exports: Vec<ExportStatus>,
}

fn status(job: &ExportJob, totals: &ExportTotals, items: Option<Vec<ItemStatus>>) -> ExportStatus {
    let destination = serde_json::from_str(&job.destination).unwrap_or(Destination::Zip(Default::default()));
    let download = (matches!(destination, Destination::Zip(_)) && zip_ready(job, totals))
        .then(|| format!("/v1/exports/{}.zip", job.id));
    ExportStatus {
        id: job.id.0,
        state: job.state.as_str().to_string(),
        destination,
        created: rfc3339(job.created_ms),
        updated: rfc3339(job.updated_ms),
        finished: job.finished_ms.map(rfc3339),
        node: job.node.clone(),
        runs: job.runs,
        items_total: totals.items,
        items_done: totals.done,
        items_failed: totals.failed,
        bytes_total: (totals.resolved + totals.failed >= totals.items).then_some(totals.len_bytes),
        bytes_done: totals.bytes_done,
        download,
        error: job.error.clone(),
        errors: totals.errors.iter().map(|(item, error)| ItemError { item: *item, error: error.clone() }).collect(),
        items,
    }
}

/// Whether a ZIP job's ZIP can be downloaded: the job finished (succeeded, or failed on some
/// items only) and exported something.
fn zip_ready(job: &ExportJob, totals: &ExportTotals) -> bool {
    use crate::catalog::ExportState::{Failed, Succeeded};
    matches!(job.state, Succeeded | Failed) && totals.done > 0
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::BadRequest(m.into())
}

/// Queues an export job.
#[utoipa::path(
    post,
    path = "/v1/exports",
    tag = "exports",
    request_body = ExportRequest,
    responses(
        (status = 201, description = "Queued; Location names the job", body = ExportStatus),
        (status = 400, description = "Bad body, item, time or object name; duplicate names", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 403, description = "The S3 destination is not granted to the user, or a session without its CSRF token", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(user): Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: ExportRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("body must be JSON {{items, destination}}: {e}")))?;
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return Err(bad(format!("a job has 1 to {MAX_ITEMS} items")));
    }
    let mut rows = Vec::with_capacity(req.items.len());
    let mut names = std::collections::HashSet::new();
    for (n, item) in req.items.iter().enumerate() {
        let name = item.check().map_err(|e| bad(format!("item {n}: {e}")))?;
        if let Some(c) = &item.clip {
            let len = parse_rfc3339_ms(&c.end).unwrap_or(0) - parse_rfc3339_ms(&c.start).unwrap_or(0);
            if len > state.clip_max_ms {
                return Err(bad(format!("item {n}: longer than the longest clip, {} s", state.clip_max_ms / 1000)));
            }
        }
        if !names.insert(name.clone()) {
            return Err(bad(format!("item {n}: object name {name:?} is used twice")));
        }
        let spec = serde_json::to_string(item).map_err(|e| bad(e.to_string()))?;
        rows.push((spec, name));
    }
    check_destination(&state.catalog, user.id, &req.destination).await.map_err(ApiError::Forbidden)?;
    let dest = serde_json::to_string(&req.destination).map_err(|e| bad(e.to_string()))?;
    let job = state.catalog.create_export(user.id, &dest, &rows).await?;
    let totals = state.catalog.export_totals(job.id).await?;
    let mut resp = (StatusCode::CREATED, axum::Json(status(&job, &totals, None))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/exports/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    metrics::counter!("jitmux_export_jobs_total").increment(1);
    Ok(resp)
}

/// The caller's latest export jobs (at most 100), newest first.
#[utoipa::path(
    get,
    path = "/v1/exports",
    tag = "exports",
    responses(
        (status = 200, description = "Jobs, without their items", body = ExportList),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn list(State(state): State<AppState>, Caller(user): Caller) -> Result<axum::Json<ExportList>, ApiError> {
    let jobs = state.catalog.exports(user.id, LIST_LIMIT).await?;
    Ok(axum::Json(ExportList { exports: jobs.iter().map(|(j, t)| status(j, t, None)).collect() }))
}

/// The job id in a path segment: `7`, or `7.zip` for its ZIP.
fn job_id(seg: &str) -> Result<(ExportId, bool), ApiError> {
    let (num, zip) = match seg.strip_suffix(".zip") {
        Some(n) => (n, true),
        None => (seg, false),
    };
    Ok((ExportId(num.parse().map_err(|_| ApiError::NotFound)?), zip))
}

/// One export job with its items; `{id}.zip`: a ZIP job's result.
#[utoipa::path(
    get,
    path = "/v1/exports/{id}",
    tag = "exports",
    params(("id" = String, Path, description = "The job's id; ID.zip for a finished ZIP job's ZIP of its items done (exact length, Range, ETag)")),
    responses(
        (status = 200, description = "The job (application/json), or the ZIP (application/zip)", body = ExportStatus),
        (status = 206, description = "A byte range of the ZIP"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such job", body = String, content_type = "text/plain"),
        (status = 409, description = "The ZIP of a job that is not a ZIP job or has not succeeded", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let req = http::Request::from_parts(req.into_parts().0, ());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let (segs, _) = split_path(req.uri().path(), "/v1/exports")?;
    let [seg] = segs.as_slice() else { return Err(ApiError::NotFound) };
    let (id, zip) = job_id(seg)?;
    let user = authenticate(&state, req.headers(), false).await?;
    let (job, items) = state.catalog.export(user.id, id).await?.ok_or(ApiError::NotFound)?;
    let dest: Destination = serde_json::from_str(&job.destination).unwrap_or(Destination::Zip(Default::default()));
    if zip {
        if !matches!(dest, Destination::Zip(_)) || !zip_ready(&job, &ExportTotals::of(&items)) {
            return Err(ApiError::Conflict("only a finished job to a ZIP that exported something has a ZIP".into()));
        }
        return serve_job_zip(&state, &user, job.id, items, req).await;
    }
    let target = Target::of(&dest).await.ok();
    let rows = items
        .iter()
        .map(|i| ItemStatus {
            item: i.seq,
            name: i.name.clone(),
            location: target.as_ref().map_or_else(|| i.name.clone(), |t| t.location(&i.name)),
            state: match i.state {
                crate::catalog::ItemState::Pending => "pending",
                crate::catalog::ItemState::Done => "done",
                crate::catalog::ItemState::Failed => "failed",
            }
            .to_string(),
            len_bytes: i.len_bytes,
            bytes_done: i.bytes_done,
            etag: i.etag.clone(),
            node: i.node.clone(),
            finished: i.finished_ms.map(rfc3339),
            error: i.error.clone(),
            spec: serde_json::from_str(&i.spec).unwrap_or(ExportItem { clip: None, path: None, name: None }),
        })
        .collect();
    Ok(axum::Json(status(&job, &ExportTotals::of(&items), Some(rows))).into_response())
}

/// Cancels a queued or running job: no item is started after it, the one being written is
/// abandoned (its multipart upload aborted); items already written stay.
#[utoipa::path(
    delete,
    path = "/v1/exports/{id}",
    tag = "exports",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, cancelled", body = ExportStatus),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 403, description = "A session without its CSRF token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such job", body = String, content_type = "text/plain"),
        (status = 409, description = "The job has already finished", body = String, content_type = "text/plain"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<ExportStatus>, ApiError> {
    let (id, false) = job_id(&id)? else { return Err(ApiError::NotFound) };
    let job = state.catalog.cancel_export(user.id, id).await?.ok_or(ApiError::NotFound)?;
    if job.state != crate::catalog::ExportState::Cancelled {
        return Err(ApiError::Conflict(format!("the job has already {}", job.state.as_str())));
    }
    let totals = state.catalog.export_totals(id).await?;
    Ok(axum::Json(status(&job, &totals, None)))
}

/// A ZIP job's items that are done, as one ZIP named `export-ID.zip`.
async fn serve_job_zip(
    state: &AppState,
    user: &crate::catalog::User,
    id: ExportId,
    items: Vec<ExportItemRow>,
    req: http::Request<()>,
) -> Result<Response, ApiError> {
    let mut files = Vec::with_capacity(items.len());
    for i in items.into_iter().filter(|i| i.state == crate::catalog::ItemState::Done) {
        let spec: ExportItem =
            serde_json::from_str(&i.spec).map_err(|e| ApiError::Conflict(format!("item {}: {e}", i.seq)))?;
        let file = resolve(state, user, &spec).await.map_err(|e| ApiError::Conflict(format!("item {}: {e}", i.seq)))?;
        files.push((i.name, file));
    }
    if files.is_empty() {
        return Err(ApiError::Absent("the job exported nothing".into()));
    }
    super::zips::serve_members(state, user, files, &format!("export-{id}.zip"), req).await
}

/// Items of users' trees, resolved through the media layer of `state`'s node.
pub struct TreeItems {
    pub state: AppState,
}

/// `item` of `user` as a [`File`]. Errors are one-line reasons.
async fn resolve(state: &AppState, user: &crate::catalog::User, item: &ExportItem) -> Result<File, String> {
    let cat = &state.catalog;
    let inst = state.instances.get(user);
    let no_such = || "no such file".to_string();
    match (&item.clip, &item.path) {
        (Some(c), None) => {
            let time = |t: &str| parse_rfc3339_ms(t).ok_or_else(|| format!("bad time {t:?}"));
            let (start_ms, end_ms) = (time(&c.start)?, time(&c.end)?);
            let cam = cat.camera(user.id, &c.camera).await.map_err(|e| e.to_string())?.ok_or_else(no_such)?;
            let cut = Cut {
                start_ms,
                end_ms,
                accuracy: if c.accuracy.as_deref() == Some("keyframe") { Accuracy::Keyframe } else { Accuracy::Frame },
                gaps: if c.gaps.as_deref() == Some("collapse") { Gaps::Collapse } else { Gaps::Keep },
            };
            let file = crate::media::open_clip(cat, &inst.media, cam.id, cut).await.map_err(|e| e.to_string())?;
            if c.gaps.as_deref() == Some("refuse") && !super::clips::gaps(file.clip_spans()).is_empty() {
                return Err("the range has gaps (gaps=refuse)".into());
            }
            Ok(file)
        }
        (None, Some(p)) => {
            let (segs, _) = split_path(&format!("/{}", p.trim_start_matches('/')), "").map_err(|e| e.to_string())?;
            let tree = TreePath::from_segments(&segs).ok_or_else(no_such)?;
            if !matches!(tree, TreePath::File { .. }) {
                return Err(no_such());
            }
            let rec = super::files::resolve_file(cat, user.id, &tree).await.map_err(|_| no_such())?;
            if rec.live {
                return Err("the recording is still live".into());
            }
            let rec = crate::media::current(cat, &inst.media, rec).await.map_err(|e| e.to_string())?;
            Ok(File::whole(rec))
        }
        _ => Err("an item has exactly one of 'clip' and 'path'".into()),
    }
}

/// An item's bytes made by the media layer straight into the export writer's buffers.
struct FileSource(crate::media::Filler);

#[async_trait]
impl Source for FileSource {
    async fn fill(&mut self, buf: Vec<u8>, upto: usize) -> Result<Vec<u8>, String> {
        self.0.fill(buf, upto).await.map_err(|e| e.to_string())
    }
    async fn prepare(&mut self) -> Result<(), String> {
        self.0.load().await.map(drop).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Items for TreeItems {
    async fn resolve(&self, user: UserId, item: &ExportItem) -> Result<Resolved, String> {
        let state = &self.state;
        let user = state.catalog.user_by_id(user).await.map_err(|e| e.to_string())?.ok_or("no such user")?;
        let file = resolve(state, &user, item).await?;
        let media = state.instances.get(&user).media.clone();
        let catalog = state.catalog.clone();
        let (len_bytes, etag) = (file.len_bytes(), file.etag().to_string());
        Ok(Resolved { len_bytes, etag, source: Box::new(FileSource(crate::media::filler(catalog, media, file))) })
    }
}
