//! HTTP conformance table: each row is one request against a served recording and the status
//! and headers RFC 9110 requires for it, with the section that says so. In process (the router
//! driven with `tower::ServiceExt::oneshot`), on the embedded catalog and store.

use std::sync::Arc;

#[path = "support/multipart.rs"]
mod multipart;
use multipart::multipart_parts;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use jitmux::catalog::Catalog;
use jitmux::http::{AppState, app};
use jitmux::store::{LocalDirStore, ObjectStore};
use tower::ServiceExt;

struct Served {
    app: axum::Router,
    token: String,
    path: String,
    full: Vec<u8>,
    etag: String,
    last_modified: String,
    _dir: tempfile::TempDir,
}

async fn serve_fixture(set: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite:{}", dir.path().join("catalog.db").display())).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap());
    let (_, token) = catalog.add_user("alice").await.unwrap();
    let playlist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sets").join(set).join("index.m3u8");
    let start = jitmux::model::parse_rfc3339_ms("2026-03-01T10:00:00Z");
    let rec = jitmux::import::import_playlist(&catalog, store.as_ref(), "alice", "front", &playlist, start, None)
        .await
        .unwrap();
    let state = AppState::new(
        catalog,
        store,
        std::time::Duration::from_secs(30),
        Default::default(),
        std::time::Duration::from_secs(300),
    );
    let app = app(state);
    let path = format!("/v1/files/front/{}/{}.mp4", rec.day, rec.name);
    let mut s =
        Served { app, token, path, full: Vec::new(), etag: String::new(), last_modified: String::new(), _dir: dir };
    let r = s.send("GET", &s.path.clone(), &[]).await;
    assert_eq!(r.status, 200);
    s.etag = r.header("etag").unwrap().to_string();
    s.last_modified = r.header("last-modified").unwrap().to_string();
    s.full = r.body;
    s
}

struct Resp {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Served {
    async fn send(&self, method: &str, uri: &str, headers: &[(&str, String)]) -> Resp {
        let mut req =
            Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self.app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Resp { status: parts.status.as_u16(), headers: parts.headers, body }
    }
}

/// What a row expects of the response body.
enum Want {
    /// The whole representation.
    Full,
    /// No body (304, HEAD, 416).
    Empty,
    /// Exactly these bytes of the representation, with `Content-Range`.
    Part(std::ops::Range<u64>),
    /// A `multipart/byteranges` body with these parts in order (RFC 9110 §14.6).
    Multipart(Vec<std::ops::Range<u64>>),
}

/// One row of the table: (RFC 9110 section and what, method, request headers, status, body).
type Row = (&'static str, &'static str, Vec<(&'static str, String)>, u16, Want);

#[tokio::test]
async fn rfc_9110_conformance_table() {
    let s = serve_fixture("s01_h264_aac_ts_2s").await;
    let len = s.full.len() as u64;
    let etag = s.etag.clone();
    let weak = format!("W/{etag}");
    let lm = s.last_modified.clone();
    let lm_t = httpdate::parse_http_date(&lm).unwrap();
    let date = |t: std::time::SystemTime| httpdate::fmt_http_date(t);
    let before = date(lm_t - std::time::Duration::from_secs(3600));
    let after = date(lm_t + std::time::Duration::from_secs(3600));
    let r = |v: &str| ("range", v.to_string());
    use Want::*;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("§15.3.1 plain GET", "GET", vec![], 200, Full),
        ("§9.3.2 HEAD: same headers, no body", "HEAD", vec![], 200, Empty),
        ("§14.1.2 int-range", "GET", vec![r("bytes=0-99")], 206, Part(0..100)),
        ("§14.1.2 open-ended int-range", "GET", vec![r(&format!("bytes={}-", len - 1000))], 206, Part(len - 1000..len)),
        ("§14.1.2 last-pos past the end is clamped", "GET", vec![r(&format!("bytes=100-{}", len + 5000))], 206, Part(100..len)),
        ("§14.1.3 suffix-range", "GET", vec![r("bytes=-500")], 206, Part(len - 500..len)),
        ("§14.1.3 suffix equal to the length: whole", "GET", vec![r(&format!("bytes=-{len}"))], 206, Part(0..len)),
        ("§14.1.3 suffix longer than the length: whole", "GET", vec![r(&format!("bytes=-{}", len + 1))], 206, Part(0..len)),
        ("§14.1.1 zero-length suffix is unsatisfiable", "GET", vec![r("bytes=-0")], 416, Empty),
        ("§14.1.1 first-pos at the length: unsatisfiable", "GET", vec![r(&format!("bytes={len}-"))], 416, Empty),
        ("§14.1.1 first-pos past the length: unsatisfiable", "GET", vec![r(&format!("bytes={}-{}", len + 10, len + 20))], 416, Empty),
        ("§14.1.1 unsatisfiable specs are dropped", "GET", vec![r(&format!("bytes={}-,-0,10-19", len + 10))], 206, Part(10..20)),
        ("§14.1.1 last-pos < first-pos: invalid, ignored", "GET", vec![r("bytes=500-100")], 200, Full),
        ("§14.1 range unit is case-insensitive", "GET", vec![r("BYTES=0-9")], 206, Part(0..10)),
        ("§14.2 unknown range unit: ignored", "GET", vec![r("items=0-9")], 200, Full),
        ("§14.2 malformed Range: ignored", "GET", vec![r("bytes=zero-nine")], 200, Full),
        ("§14.6 multiple ranges: multipart/byteranges", "GET", vec![r("bytes=0-9,1000-1099")], 206, Multipart(vec![0..10, 1000..1100])),
        ("§14.6 overlapping ranges, each served", "GET", vec![r("bytes=0-99,50-149")], 206, Multipart(vec![0..100, 50..150])),
        ("§14.6 suffix among multiple ranges", "GET", vec![r("bytes=0-0,-1")], 206, Multipart(vec![0..1, len - 1..len])),
        ("§9.3.2 HEAD with Range", "HEAD", vec![r("bytes=0-99")], 206, Empty),
        ("§13.1.5 If-Range strong ETag match: range", "GET", vec![r("bytes=0-99"), ("if-range", etag.clone())], 206, Part(0..100)),
        ("§13.1.5 If-Range ETag mismatch: whole", "GET", vec![r("bytes=0-99"), ("if-range", "\"other\"".into())], 200, Full),
        ("§13.1.5 If-Range weak ETag never matches", "GET", vec![r("bytes=0-99"), ("if-range", weak.clone())], 200, Full),
        ("§13.1.5 If-Range date = Last-Modified (strong, §8.8.2.2): range", "GET", vec![r("bytes=0-99"), ("if-range", lm.clone())], 206, Part(0..100)),
        ("§13.1.5 If-Range older date: whole", "GET", vec![r("bytes=0-99"), ("if-range", before.clone())], 200, Full),
        ("§13.1.5 If-Range without Range: ignored", "GET", vec![("if-range", etag.clone())], 200, Full),
        ("§13.1.2 If-None-Match strong match: 304", "GET", vec![("if-none-match", etag.clone())], 304, Empty),
        ("§13.1.2 If-None-Match uses weak comparison: 304", "GET", vec![("if-none-match", weak.clone())], 304, Empty),
        ("§13.1.2 If-None-Match list with a match: 304", "GET", vec![("if-none-match", format!("\"a\", {etag}"))], 304, Empty),
        ("§13.1.2 If-None-Match *: 304", "GET", vec![("if-none-match", "*".into())], 304, Empty),
        ("§13.1.2 If-None-Match mismatch: 200", "GET", vec![("if-none-match", "\"other\"".into())], 200, Full),
        ("§13.1.2 If-None-Match on HEAD: 304", "HEAD", vec![("if-none-match", etag.clone())], 304, Empty),
        ("§13.1.3 If-Modified-Since equal: 304", "GET", vec![("if-modified-since", lm.clone())], 304, Empty),
        ("§13.1.3 If-Modified-Since later: 304", "GET", vec![("if-modified-since", after.clone())], 304, Empty),
        ("§13.1.3 If-Modified-Since earlier: 200", "GET", vec![("if-modified-since", before.clone())], 200, Full),
        ("§13.1.3 If-Modified-Since invalid date: ignored", "GET", vec![("if-modified-since", "yesterday".into())], 200, Full),
        ("§13.1.3 If-Modified-Since ignored with If-None-Match", "GET", vec![("if-none-match", "\"other\"".into()), ("if-modified-since", lm.clone())], 200, Full),
        ("§13.2.2 If-None-Match 304 takes precedence over Range", "GET", vec![("if-none-match", etag.clone()), r("bytes=0-9")], 304, Empty),
        ("§13.1.1 If-Match strong match: 200", "GET", vec![("if-match", etag.clone())], 200, Full),
        ("§13.1.1 If-Match *: 200", "GET", vec![("if-match", "*".into())], 200, Full),
        ("§13.1.1 If-Match mismatch: 412", "GET", vec![("if-match", "\"other\"".into())], 412, Empty),
        ("§13.1.1 If-Match weak never matches: 412", "GET", vec![("if-match", weak.clone())], 412, Empty),
        ("§13.1.4 If-Unmodified-Since equal: 200", "GET", vec![("if-unmodified-since", lm.clone())], 200, Full),
        ("§13.1.4 If-Unmodified-Since earlier: 412", "GET", vec![("if-unmodified-since", before.clone())], 412, Empty),
        ("§13.1.4 If-Unmodified-Since invalid date: ignored", "GET", vec![("if-unmodified-since", "never".into())], 200, Full),
        ("§13.2.2 If-Match precedes Range", "GET", vec![("if-match", "\"other\"".into()), r("bytes=0-9")], 412, Empty),
    ];
    let mut failures = Vec::new();
    for (name, method, headers, want_status, want) in &rows {
        let resp = s.send(method, &s.path, headers).await;
        let mut bad = Vec::new();
        if resp.status != *want_status {
            bad.push(format!("status {} (want {want_status})", resp.status));
        }
        // Validators on every success and on 304 (§15.4.5); never on 412.
        if matches!(resp.status, 200 | 206 | 304) {
            if resp.header("etag") != Some(etag.as_str()) {
                bad.push(format!("ETag {:?}", resp.header("etag")));
            }
            if resp.header("last-modified") != Some(lm.as_str()) {
                bad.push(format!("Last-Modified {:?}", resp.header("last-modified")));
            }
        }
        if matches!(resp.status, 200 | 206) && resp.header("accept-ranges") != Some("bytes") {
            bad.push("no Accept-Ranges: bytes".into());
        }
        match want {
            Full => {
                if resp.body != s.full {
                    bad.push(format!("body {} bytes, not the whole {len}", resp.body.len()));
                }
                if resp.header("content-length") != Some(len.to_string().as_str()) {
                    bad.push(format!("Content-Length {:?}", resp.header("content-length")));
                }
                if resp.header("content-range").is_some() {
                    bad.push("Content-Range on a 200".into());
                }
            }
            Empty => {
                // A 412 may explain itself; 304, 416 and HEAD carry no content.
                if !resp.body.is_empty() && resp.status != 412 {
                    bad.push(format!("body of {} bytes", resp.body.len()));
                }
                if resp.status == 416 && resp.header("content-range") != Some(format!("bytes */{len}").as_str()) {
                    bad.push(format!("416 Content-Range {:?} (§15.5.17: bytes */{len})", resp.header("content-range")));
                }
                if *method == "HEAD" && resp.status == 200 && resp.header("content-length") != Some(&len.to_string()) {
                    bad.push(format!("HEAD Content-Length {:?}", resp.header("content-length")));
                }
                if *method == "HEAD" && resp.status == 206 && resp.header("content-range").is_none() {
                    bad.push("HEAD 206 without Content-Range".into());
                }
            }
            Part(range) => {
                let cr = format!("bytes {}-{}/{len}", range.start, range.end - 1);
                if resp.header("content-range") != Some(cr.as_str()) {
                    bad.push(format!("Content-Range {:?} (want {cr})", resp.header("content-range")));
                }
                if resp.body != s.full[range.start as usize..range.end as usize] {
                    bad.push(format!("body {} bytes differs from bytes {range:?}", resp.body.len()));
                }
            }
            Multipart(ranges) => {
                let ct = resp.header("content-type").unwrap_or_default().to_string();
                if !ct.starts_with("multipart/byteranges") {
                    bad.push(format!("Content-Type {ct:?}"));
                } else {
                    let parts = multipart_parts(&ct, &resp.body);
                    let want: Vec<(String, Vec<u8>)> = ranges
                        .iter()
                        .map(|r| {
                            (
                                format!("bytes {}-{}/{len}", r.start, r.end - 1),
                                s.full[r.start as usize..r.end as usize].to_vec(),
                            )
                        })
                        .collect();
                    if parts != want {
                        bad.push(format!("parts {:?}", parts.iter().map(|p| &p.0).collect::<Vec<_>>()));
                    }
                }
            }
        }
        println!("{} {name}: {}", if bad.is_empty() { "ok  " } else { "FAIL" }, resp.status);
        if !bad.is_empty() {
            failures.push(format!("{name}: {}", bad.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows fail:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

#[tokio::test]
async fn files_name_themselves_and_directories_end_in_a_slash() {
    let s = serve_fixture("s13_h264_only_ts_2s").await;
    let r = s.send("GET", &s.path, &[]).await;
    let name = s.path.rsplit('/').next().unwrap();
    // RFC 6266 §4: the name a downloader saves (not the URL's last segment with its query).
    assert_eq!(r.header("content-disposition"), Some(format!("inline; filename=\"{name}\"").as_str()));
    let r = s.send("HEAD", &format!("{}?download=1", s.path), &[]).await;
    assert_eq!(r.header("content-disposition"), Some(format!("attachment; filename=\"{name}\"").as_str()));
    assert_eq!(s.send("GET", &format!("{}?download=maybe", s.path), &[]).await.status, 400);
    let r = s.send("GET", &format!("{}?mode=stream", s.path), &[]).await;
    assert_eq!(r.header("content-disposition"), Some(format!("inline; filename=\"{name}\"").as_str()));
    // Last-Modified is the recording's wall-clock end (10:00:00 + 60 s), not the import time.
    let r = s.send("HEAD", &s.path, &[]).await;
    assert_eq!(r.header("last-modified"), Some("Sun, 01 Mar 2026 10:01:00 GMT"));
    assert_eq!(r.header("cache-control"), Some("private, no-cache"));

    // Directories: without the slash, a permanent redirect to it (their links are relative).
    for (from, to) in [("/v1/files", "/v1/files/"), ("/v1/files/front", "/v1/files/front/")] {
        let r = s.send("GET", from, &[]).await;
        assert_eq!((r.status, r.header("location")), (308, Some(to)), "{from}");
    }
    let r = s.send("GET", "/v1/files/front/2026-03-01?x=1", &[]).await;
    assert_eq!((r.status, r.header("location")), (308, Some("/v1/files/front/2026-03-01/?x=1")));
    let r = s.send("GET", "/v1/files/front/2026-03-01/", &[]).await;
    assert_eq!(r.header("vary"), Some("Accept"));
    let html = String::from_utf8(r.body).unwrap();
    assert!(html.contains(&format!("href=\"{name}\"")), "unreserved characters are not escaped: {html}");
    let r = s.send("GET", "/v1/files/front/2026-03-01/", &[("accept", "application/json".into())]).await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["entries"][0]["modified"], "2026-03-01T10:01:00Z");

    // Every request is measured by route and status (the route, never the path).
    let m = String::from_utf8(s.send("GET", "/metrics", &[]).await.body).unwrap();
    let line = |prefix: &str| m.lines().find(|l| l.starts_with(prefix)).map(str::to_string);
    let served = line("jitmux_http_requests_total{route=\"/v1/files/{*path}\",method=\"GET\",status=\"200\"}");
    assert!(served.is_some(), "{m}");
    assert!(line("jitmux_http_requests_total{route=\"/v1/files/{*path}\",method=\"GET\",status=\"308\"}").is_some());
    assert!(line("jitmux_http_request_duration_seconds_bucket{route=\"/v1/files/{*path}\"").is_some(), "{m}");
    assert!(line("jitmux_http_response_bytes_total{route=\"/v1/files/{*path}\"}").is_some(), "{m}");
    assert!(line("jitmux_store_reads_total").is_some(), "{m}");
    assert!(!m.contains("2026-03-01"), "paths are not labels");
}
