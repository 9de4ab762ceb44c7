//! `GET|HEAD /v1/files/{camera}.zip` and `/v1/files/{camera}/{day}.zip`: a directory of the tree
//! as one stored (uncompressed) ZIP of its MP4 files, made just in time like the MP4s: exact
//! length, ranges, strong ETag. Members are the finished recordings (`DAY/NAME.mp4` in a
//! camera's ZIP, `NAME.mp4` in a day's); live broadcasts are left out.
//!
//! The headers and central directory need each member's CRC-32 ([`crate::format::zip`]): it is
//! recorded in the catalog per file ETag the first time the file goes into a ZIP
//! ([`crate::media::file_crc`]), so from then on any range of the ZIP outside the members'
//! data is made from the catalog alone.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::files::content_disposition;
use super::{ApiError, AppState};
use crate::catalog::{Catalog, User};
use crate::format::zip::{ZIP_LAYOUT_VERSION, ZipLayout, ZipMember, ZipPart};
use crate::media::{File, UserMedia};

/// Serves the ZIP of `camera` (all days) or of `camera/day`.
pub async fn serve_zip(
    state: &AppState,
    user: &User,
    camera: &str,
    day: Option<&str>,
    req: http::Request<()>,
) -> Result<Response, ApiError> {
    let cat = &state.catalog;
    let cam = cat.camera(user.id, camera).await?.ok_or(ApiError::NotFound)?;
    let days: Vec<String> = match day {
        Some(d) => vec![d.to_string()],
        None => cat.list_days(cam.id).await?.into_iter().map(|d| d.name).collect(),
    };
    let inst = state.instances.get(user);
    let mut files = Vec::new();
    for d in &days {
        for rec in cat.list_recordings(cam.id, d).await? {
            if rec.live {
                continue;
            }
            let rec = crate::media::current(cat, &inst.media, rec).await?;
            let name = if day.is_some() { format!("{}.mp4", rec.name) } else { format!("{d}/{}.mp4", rec.name) };
            files.push((name, File::whole(rec)));
        }
    }
    if files.is_empty() {
        return Err(ApiError::NotFound);
    }
    let zip_name = match day {
        Some(d) => format!("{camera}-{d}.zip"),
        None => format!("{camera}.zip"),
    };
    serve_members(state, user, files, &zip_name, req).await
}

/// Serves `files` (member name, file) as one stored ZIP downloaded as `zip_name`: each member's
/// CRC-32 from the catalog (or made once, [`crate::media::file_crc`]), the rest just in time.
pub async fn serve_members(
    state: &AppState,
    user: &User,
    files: Vec<(String, File)>,
    zip_name: &str,
    mut req: http::Request<()>,
) -> Result<Response, ApiError> {
    let cat = &state.catalog;
    let inst = state.instances.get(user);
    let mut members = Vec::with_capacity(files.len());
    let mut etag = sha2::Sha256::default();
    for (name, f) in &files {
        use sha2::Digest;
        let crc32 = crate::media::file_crc(cat, &inst.media, f).await?;
        etag.update(name.as_bytes());
        etag.update([0]);
        etag.update(f.etag().as_bytes());
        etag.update(f.modified_ms().to_be_bytes());
        members.push(ZipMember {
            name: name.clone(),
            len_bytes: f.len_bytes(),
            crc32,
            modified_unix_s: f.modified_ms().div_euclid(1000),
        });
    }
    let layout = ZipLayout::new(members).map_err(|e| ApiError::BadRequest(format!("cannot make the ZIP: {e}")))?;
    let etag = {
        use sha2::Digest;
        format!("z{ZIP_LAYOUT_VERSION}-{}", &hex::encode(etag.finalize())[..32])
    };
    let modified_ms = files.iter().map(|(_, f)| f.modified_ms()).max().unwrap_or(0);
    let slot = inst
        .try_slot(super::instance::Kind::Download)
        .ok_or(ApiError::TooMany { what: "downloads", limit: inst.limits.max_downloads })?;
    let entity = ZipEntity {
        catalog: state.catalog.clone(),
        media: inst.media.clone(),
        layout: Arc::new(layout),
        files: Arc::new(files.into_iter().map(|(_, f)| f).collect()),
        etag,
        modified_ms,
        disposition: content_disposition("attachment", zip_name),
        _slot: Arc::new(slot),
    };
    let last_modified = http_serve::Entity::last_modified(&entity);
    super::ranges::normalize(req.headers_mut(), http_serve::Entity::len(&entity), last_modified, true);
    let mut resp = http_serve::serve(entity, &req).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(resp)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A directory's ZIP as an [`http_serve::Entity`]: generated parts from the layout, member bytes
/// from [`crate::media::body`].
struct ZipEntity {
    catalog: Catalog,
    media: Arc<UserMedia>,
    layout: Arc<ZipLayout>,
    files: Arc<Vec<File>>,
    etag: String,
    modified_ms: i64,
    disposition: HeaderValue,
    _slot: Arc<super::instance::Slot>,
}

impl http_serve::Entity for ZipEntity {
    type Data = Bytes;
    type Error = BoxError;

    fn len(&self) -> u64 {
        self.layout.len_bytes()
    }

    fn get_range(&self, range: Range<u64>) -> Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + Sync>> {
        let parts = self.layout.parts(range);
        let (catalog, media, files, slot) =
            (self.catalog.clone(), self.media.clone(), self.files.clone(), self._slot.clone());
        let body = futures::stream::iter(parts).flat_map(move |p| -> crate::media::BodyStream {
            let _held = &slot;
            match p {
                ZipPart::Bytes(b) => Box::pin(futures::stream::once(async move { Ok(Bytes::from(b)) })),
                ZipPart::Member { index, range } => {
                    crate::media::body(catalog.clone(), media.clone(), files[index].clone(), range)
                }
            }
        });
        let body = body.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }));
        Box::pin(sync_wrapper::SyncStream::new(body))
    }

    fn add_headers(&self, h: &mut HeaderMap) {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
        h.insert(header::CONTENT_DISPOSITION, self.disposition.clone());
    }

    fn etag(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("\"{}\"", self.etag)).ok()
    }

    fn last_modified(&self) -> Option<SystemTime> {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(self.modified_ms.max(0) as u64);
        Some(super::ranges::whole_seconds(t))
    }
}
