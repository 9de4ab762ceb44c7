//! Directory listings of the tree: JSON (`Accept: application/json`) for programs, HTML for
//! people and for crawlers (`wget -r`, rclone's http remote), with relative links.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::catalog::{DirSummary, Recording};
use crate::model::rfc3339;

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
    /// RFC 3339, whole seconds (as `Last-Modified`).
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

/// Whole seconds, as in `Last-Modified` (RFC 9110 §5.6.7), so both agree.
fn whole_seconds(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000) * 1000)
}

impl Entry {
    /// A directory (camera, day).
    pub fn dir(d: DirSummary) -> Entry {
        Entry {
            name: d.name,
            kind: "dir",
            size: d.len_bytes,
            modified: whole_seconds(d.modified_ms),
            duration_s: d.duration_ms as f64 / 1000.0,
            live: None,
            codecs: None,
            skipped: None,
        }
    }

    /// A recording.
    pub fn file(r: &Recording) -> Entry {
        Entry {
            name: format!("{}.mp4", r.name),
            kind: "file",
            size: r.len_bytes,
            modified: whole_seconds(r.modified_ms),
            duration_s: r.duration_ms as f64 / 1000.0,
            live: Some(r.live),
            codecs: Some(r.codecs.clone()).filter(|c| !c.is_empty()),
            skipped: Some(r.skipped.lines().map(str::to_string).collect()).filter(|v: &Vec<String>| !v.is_empty()),
        }
    }
}

/// A directory listing as JSON or HTML (by `Accept`), never stored by shared caches and
/// revalidated by private ones (RFC 9111 §5.2.2), varying with `Accept`.
pub fn listing(path: &str, json: bool, entries: Vec<Entry>) -> Response {
    let mut r = if json {
        axum::Json(Listing { path: path.to_string(), entries }).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html(path, &entries)).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

fn html(path: &str, entries: &[Entry]) -> String {
    let mut html = format!(
        "<!doctype html><meta charset=utf-8><title>{p}</title><h1>{p}</h1><table>\
         <tr><th>name</th><th>size</th><th>duration</th><th>modified</th></tr>",
        p = esc(path)
    );
    if path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td></tr>");
    }
    for e in entries {
        let href = percent_encoding::utf8_percent_encode(&e.name, super::ui::SEGMENT).to_string();
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
    html
}

/// Escapes text for HTML content and quoted attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
