//! `GET|HEAD /v1/clips/{camera}/{START}_{END}.mp4`: any wall-clock range of a camera's timeline
//! as one file, across as many recordings as it touches ([`crate::media::open_clip`]), served
//! like a recording: exact length, ranges, strong ETag, `mode=stream`, signed URLs.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::Response;

use super::auth::{reader, split_path, url_pairs};
use super::files::{FileQuery, serve_media};
use super::{ApiError, AppState};
use crate::media::{Accuracy, ClipSpan, Cut, Gaps};
use crate::model::{parse_rfc3339_ms, rfc3339};

/// Longest clip served by default, ms (24 h).
pub const DEFAULT_CLIP_MAX_MS: i64 = 24 * 3600 * 1000;

/// Recordings further apart than this are a gap (`gaps=refuse` refuses it; the response headers
/// list it), ms: the same tolerance a recording's own timeline joins over
/// ([`crate::format::mp4::JOIN_GAP_NS`]).
pub const GAP_MS: i64 = (crate::format::mp4::JOIN_GAP_NS / 1_000_000) as i64;

/// A clip's path parsed: camera and the file name's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipPath {
    pub camera: String,
    /// The file name as given (`START_END.mp4`).
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl ClipPath {
    /// Parses `/v1/clips/CAMERA/START_END.mp4` (RFC 3339 times). Errors are 400 with the reason.
    pub fn parse(raw_path: &str) -> Result<ClipPath, ApiError> {
        let (segs, _) = split_path(raw_path, "/v1/clips")?;
        let bad = |m: &str| ApiError::BadRequest(m.into());
        let [camera, name] = segs.as_slice() else {
            return Err(bad("a clip's path is /v1/clips/CAMERA/START_END.mp4"));
        };
        let stem = name.strip_suffix(".mp4").ok_or_else(|| bad("a clip's file name ends in .mp4"))?;
        let (a, b) = stem.split_once('_').ok_or_else(|| bad("a clip's file name is START_END.mp4"))?;
        let time = |t: &str| {
            parse_rfc3339_ms(t).ok_or_else(|| {
                ApiError::BadRequest(format!("bad time {t:?}: use RFC 3339, e.g. 2026-03-01T14:02:00.500Z"))
            })
        };
        Ok(ClipPath { camera: camera.clone(), name: name.clone(), start_ms: time(a)?, end_ms: time(b)? })
    }

    /// The path as signed URLs name it: `/v1/clips/CAMERA/NAME`.
    pub fn signed_path(&self) -> String {
        format!("/v1/clips/{}/{}", self.camera, self.name)
    }
}

/// What a clip's query asks for beyond a file's ([`FileQuery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipQuery {
    pub accuracy: Accuracy,
    /// `None`: `gaps=refuse`.
    pub gaps: Option<Gaps>,
}

impl ClipQuery {
    /// Parses `accuracy=frame|keyframe` (default frame) and `gaps=keep|collapse|refuse`
    /// (default keep).
    pub fn parse(query: Option<&str>) -> Result<ClipQuery, ApiError> {
        let mut q = ClipQuery { accuracy: Accuracy::Frame, gaps: Some(Gaps::Keep) };
        for (k, v) in url_pairs(query.unwrap_or("")) {
            match (k.as_str(), v.as_str()) {
                ("accuracy", "frame") => q.accuracy = Accuracy::Frame,
                ("accuracy", "keyframe") => q.accuracy = Accuracy::Keyframe,
                ("accuracy", _) => return Err(ApiError::BadRequest("accuracy must be 'frame' or 'keyframe'".into())),
                ("gaps", "keep") => q.gaps = Some(Gaps::Keep),
                ("gaps", "collapse") => q.gaps = Some(Gaps::Collapse),
                ("gaps", "refuse") => q.gaps = None,
                ("gaps", _) => return Err(ApiError::BadRequest("gaps must be 'keep', 'collapse' or 'refuse'".into())),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A camera's timeline between two wall-clock times as one MP4.
#[utoipa::path(
    get,
    path = "/v1/clips/{camera}/{range}",
    tag = "clips",
    params(
        ("camera" = String, Path, description = "Camera name"),
        ("range" = String, Path, description = "START_END.mp4, RFC 3339 times: 2026-03-01T14:02:00Z_2026-03-01T14:04:00.500Z.mp4; the clip presents [START, END)"),
        ("accuracy" = Option<String>, Query, description = "'frame' (default): exactly the frames presented in the range, the pre-roll from the previous sync sample hidden by the edit list; 'keyframe': from the sync sample at or before START, no cut edit list"),
        ("gaps" = Option<String>, Query, description = "Between recordings: 'keep' (default; the timeline equals the wall clock, the last frame held), 'collapse' (back to back), 'refuse' (409 listing the continuous runs)"),
        ("mode" = Option<String>, Query, description = "'file' (default) or 'stream' (fragmented MP4 from the sync sample at or before START)"),
        ("download" = Option<String>, Query, description = "'1': Content-Disposition: attachment"),
        ("sig" = Option<String>, Query, description = "Signed URL signature (POST /v1/share with the clip's path)"),
    ),
    responses(
        (status = 200, description = "The MP4; X-Jitmux-Clip-Runs and X-Jitmux-Clip-Gaps list the recordings' spans and the gaps between them (RFC 3339 START/END, comma-separated)"),
        (status = 206, description = "A byte range of the MP4"),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad path, times or query; the range ends before it starts or is longer than the server's maximum", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid token", body = String, content_type = "text/plain"),
        (status = 404, description = "No such camera, or no media in the range", body = String, content_type = "text/plain"),
        (status = 409, description = "gaps=refuse and the range has gaps (the body lists the continuous runs), or the recordings' codecs differ", body = String, content_type = "text/plain"),
        (status = 416, description = "Range not satisfiable"),
    ),
    security(("bearer" = []), ())
)]
pub async fn clip(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let req = http::Request::from_parts(req.into_parts().0, ());
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let path = ClipPath::parse(req.uri().path())?;
    let q = FileQuery::parse(req.uri().query())?;
    let cq = ClipQuery::parse(req.uri().query())?;
    if path.end_ms <= path.start_ms {
        return Err(ApiError::BadRequest("the range ends before it starts".into()));
    }
    if path.end_ms - path.start_ms > state.clip_max_ms {
        return Err(ApiError::BadRequest(format!(
            "the range is longer than the longest clip served, {} s",
            state.clip_max_ms / 1000
        )));
    }
    let user = reader(&state, &req, &path.signed_path(), q.mode()).await?;
    let cam = state.catalog.camera(user.id, &path.camera).await?.ok_or(ApiError::NotFound)?;
    let inst = state.instances.get(&user);
    let cut = Cut {
        start_ms: path.start_ms,
        end_ms: path.end_ms,
        accuracy: cq.accuracy,
        gaps: cq.gaps.unwrap_or(Gaps::Keep),
    };
    let file = crate::media::open_clip(&state.catalog, &inst.media, cam.id, cut).await?;
    let spans = file.clip_spans().to_vec();
    let gaps = gaps(&spans);
    if cq.gaps.is_none() && !gaps.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the range has gaps ({}); continuous runs: {}; ask for one run, or gaps=keep or gaps=collapse",
            intervals(gaps.iter().copied()),
            intervals(runs(&spans).into_iter()),
        )));
    }
    let mut resp = serve_media(&state, &user, file, &path.name, &q, req).await?;
    let h = resp.headers_mut();
    let spans_list = intervals(spans.iter().map(|s| (s.wall_start_ms, s.wall_end_ms)));
    if let Ok(v) = HeaderValue::from_str(&spans_list) {
        h.insert("x-jitmux-clip-runs", v);
    }
    if let Ok(v) = HeaderValue::from_str(&intervals(gaps.into_iter())) {
        h.insert("x-jitmux-clip-gaps", v);
    }
    Ok(resp)
}

/// The gaps longer than [`GAP_MS`] between consecutive spans, (start, end) unix ms.
pub(super) fn gaps(spans: &[ClipSpan]) -> Vec<(i64, i64)> {
    spans
        .windows(2)
        .filter(|w| w[1].wall_start_ms - w[0].wall_end_ms > GAP_MS)
        .map(|w| (w[0].wall_end_ms, w[1].wall_start_ms))
        .collect()
}

/// The continuous runs: spans joined where no gap separates them.
fn runs(spans: &[ClipSpan]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(last) if s.wall_start_ms - last.1 <= GAP_MS => last.1 = last.1.max(s.wall_end_ms),
            _ => out.push((s.wall_start_ms, s.wall_end_ms)),
        }
    }
    out
}

/// `START/END, START/END` (RFC 3339, ISO 8601 interval notation).
fn intervals(it: impl Iterator<Item = (i64, i64)>) -> String {
    it.map(|(a, b)| format!("{}/{}", rfc3339(a), rfc3339(b))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let p = ClipPath::parse("/v1/clips/front/2026-03-01T14:02:00Z_2026-03-01T14:04:00.500Z.mp4").unwrap();
        assert_eq!(p.camera, "front");
        assert_eq!(p.end_ms - p.start_ms, 120_500);
        assert_eq!(p.signed_path(), "/v1/clips/front/2026-03-01T14:02:00Z_2026-03-01T14:04:00.500Z.mp4");
        for bad in [
            "/v1/clips/front",
            "/v1/clips/front/2026-03-01T14:02:00Z.mp4",
            "/v1/clips/front/2026-03-01T14:02:00Z_2026-03-01T14:04:00Z",
            "/v1/clips/front/yesterday_today.mp4",
            "/v1/clips/front/2026-03-01T14:02:00Z_2026-03-01T25:04:00Z.mp4",
            "/v1/clips/a/b/c.mp4",
        ] {
            assert!(ClipPath::parse(bad).is_err(), "{bad}");
        }
        let q = ClipQuery::parse(Some("accuracy=keyframe&gaps=refuse")).unwrap();
        assert_eq!((q.accuracy, q.gaps), (Accuracy::Keyframe, None));
        assert!(ClipQuery::parse(Some("gaps=fill")).is_err());
        assert!(ClipQuery::parse(Some("accuracy=exact")).is_err());
    }

    #[test]
    fn gaps_and_runs() {
        let span = |a, b| ClipSpan {
            recording: crate::model::RecordingId(1),
            wall_start_ms: a,
            wall_end_ms: b,
            clip_start_ms: 0,
        };
        let spans = [span(0, 10_000), span(10_400, 20_000), span(30_000, 40_000)];
        assert_eq!(gaps(&spans), vec![(20_000, 30_000)]);
        assert_eq!(runs(&spans), vec![(0, 20_000), (30_000, 40_000)]);
    }
}
