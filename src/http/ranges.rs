//! RFC 9110 request preconditions and ranges, normalised before `http-serve` sees them.
//!
//! `http-serve` 0.4.0-rc.2 does the serving (single ranges, `multipart/byteranges`, `304`,
//! `412`, `416`), but its parser differs from RFC 9110 in a few places that real clients hit:
//!
//! - `Range: bytes=-N` with `N` ≥ the length answers 416; RFC 9110 §14.1.3 says the whole
//!   representation is then used. `bytes=-0` answers 206 with an empty body and
//!   `Content-Range: bytes L-(L-1)/L`; a zero suffix is unsatisfiable (§14.1.1).
//! - A range-spec whose last-pos is below its first-pos makes the whole header invalid, to be
//!   ignored (§14.1.1, §14.2); `http-serve` answers 416. The range unit is case-insensitive
//!   (§14.1) and empty list elements are allowed (§5.6.1); `http-serve` ignores `Bytes=` and
//!   refuses `bytes=0-1,,5-6`.
//! - An `If-Modified-Since` / `If-Unmodified-Since` that is not a valid HTTP-date must be ignored
//!   (§13.1.3, §13.1.4); `http-serve` answers 400.
//! - `If-Range` with an HTTP-date never matches in `http-serve`. §13.1.5 allows that, but a
//!   finished recording's modification time is a strong validator (§8.8.2.2: it cannot change
//!   twice within a second, its bytes never change), so a date equal to `Last-Modified` keeps
//!   the range and a resumed download gets 206.
//!
//! [`normalize`] rewrites the request headers so that `http-serve` then answers as RFC 9110
//! requires; this is narrower than patching the crate (nothing else of it changes, and an
//! upgrade is a one-line change). The test `upstream_suffix_bug_still_present` fails as soon as
//! `http-serve` itself is fixed, to say this module can shrink.
//!
//! Entities must also report `last_modified` in whole seconds ([`whole_seconds`]): HTTP dates
//! have one-second resolution (§5.6.7), so `If-Modified-Since` equal to the `Last-Modified` the
//! server sent must compare equal.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, header};

/// `t` truncated to whole seconds since the epoch, the resolution of HTTP dates (RFC 9110
/// §5.6.7).
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let s = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// The satisfiable ranges of a `Range` header value for a representation of `len` bytes, as
/// half-open byte ranges in request order (RFC 9110 §14.1.2–14.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable `Range`: absent, another range unit, or an invalid range-set (ignored, §14.2).
    Ignore,
    /// A valid range-set of which no range is satisfiable (416, §15.5.17).
    Unsatisfiable,
    /// At least one satisfiable range; unsatisfiable ones are dropped.
    Satisfiable(Vec<std::ops::Range<u64>>),
}

/// Parses a `Range` field value (`ranges-specifier`, RFC 9110 §14.1.1) against a
/// representation of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> Ranges {
    let Some((unit, set)) = value.split_once('=') else { return Ranges::Ignore };
    if !unit.eq_ignore_ascii_case("bytes") {
        return Ranges::Ignore;
    }
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // 1*DIGIT of any length is valid; values past u64 are past any length.
        Some(s.parse::<u64>().unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    let mut any = false;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue; // empty list elements are allowed, §5.6.1
        }
        let Some((first, last)) = spec.split_once('-') else { return Ranges::Ignore };
        any = true;
        if first.is_empty() {
            // suffix-range = "-" suffix-length
            let Some(n) = digits(last) else { return Ranges::Ignore };
            if n > 0 && len > 0 {
                out.push(len - n.min(len)..len);
            }
            continue;
        }
        let Some(first) = digits(first) else { return Ranges::Ignore };
        let last = if last.is_empty() {
            None
        } else {
            match digits(last) {
                Some(l) if l >= first => Some(l),
                _ => return Ranges::Ignore, // last-pos < first-pos: invalid, §14.1.1
            }
        };
        if first < len {
            out.push(first..last.map_or(len, |l| l.saturating_add(1).min(len)));
        }
    }
    match (any, out.is_empty()) {
        (false, _) => Ranges::Ignore,
        (true, true) => Ranges::Unsatisfiable,
        (true, false) => Ranges::Satisfiable(out),
    }
}

/// Rewrites the conditional and range request headers of a `GET`/`HEAD` of a representation of
/// `len` bytes last modified at `last_modified` (whole seconds) so that `http-serve` answers as
/// RFC 9110 requires (see the module docs). `date_is_strong`: the modification time is a strong
/// validator (a finished recording), so an `If-Range` date equal to it keeps the range.
pub fn normalize(headers: &mut HeaderMap, len: u64, last_modified: Option<SystemTime>, date_is_strong: bool) {
    for name in [header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
        let valid = headers.get(&name).and_then(|v| v.to_str().ok()).map(httpdate::parse_http_date);
        if matches!(valid, Some(Err(_))) || (headers.contains_key(&name) && valid.is_none()) {
            headers.remove(&name);
        }
    }
    let Some(range) = headers.get(header::RANGE) else {
        headers.remove(header::IF_RANGE); // §13.1.5: ignored without a Range
        return;
    };
    let rewritten = match range.to_str().map(|v| parse_range(v, len)) {
        Err(_) | Ok(Ranges::Ignore) => None,
        // `bytes=L-` is the one form http-serve answers with 416 and `bytes */L`.
        Ok(Ranges::Unsatisfiable) => Some(format!("bytes={len}-")),
        Ok(Ranges::Satisfiable(rs)) => {
            let specs: Vec<String> = rs.iter().map(|r| format!("{}-{}", r.start, r.end - 1)).collect();
            Some(format!("bytes={}", specs.join(",")))
        }
    };
    match rewritten.and_then(|v| HeaderValue::from_str(&v).ok()) {
        Some(v) => {
            headers.insert(header::RANGE, v);
        }
        None => {
            headers.remove(header::RANGE);
            headers.remove(header::IF_RANGE);
            return;
        }
    }
    // If-Range with an HTTP-date (§13.1.5): http-serve never matches a date; match it here when
    // the date is a strong validator and equal to Last-Modified, by removing the If-Range.
    if let Some(v) = headers.get(header::IF_RANGE) {
        let b = v.as_bytes();
        if !(b.starts_with(b"\"") || b.starts_with(b"W/\"")) {
            let date = v.to_str().ok().and_then(|s| httpdate::parse_http_date(s).ok());
            if date_is_strong && date.is_some() && date == last_modified.map(whole_seconds) {
                headers.remove(header::IF_RANGE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list of byte ranges, not a range of values
    fn range_forms() {
        use Ranges::*;
        let s = |v: Vec<std::ops::Range<u64>>| Satisfiable(v);
        for (value, want) in [
            ("bytes=0-499", s(vec![0..500])),
            ("bytes=9500-", s(vec![9500..10000])),
            ("bytes=-500", s(vec![9500..10000])),
            ("bytes=-10000", s(vec![0..10000])),
            ("bytes=-20000", s(vec![0..10000])),
            ("bytes=-0", Unsatisfiable),
            ("bytes=10000-", Unsatisfiable),
            ("bytes=10000-20000,-0", Unsatisfiable),
            ("bytes=9999-99999999999999999999999", s(vec![9999..10000])),
            ("Bytes=0-0, -1", s(vec![0..1, 9999..10000])),
            ("bytes=0-1,,5-6", s(vec![0..2, 5..7])),
            ("bytes=0-9,5-14", s(vec![0..10, 5..15])),
            ("bytes=5-3", Ignore),
            ("bytes=a-3", Ignore),
            ("bytes=", Ignore),
            ("bytes=,", Ignore),
            ("bytes=1", Ignore),
            ("items=0-5", Ignore),
            ("0-5", Ignore),
        ] {
            assert_eq!(parse_range(value, 10000), want, "{value}");
        }
    }

    /// A tiny entity for driving http-serve directly.
    struct Bytes10;
    impl http_serve::Entity for Bytes10 {
        type Data = bytes::Bytes;
        type Error = Box<dyn std::error::Error + Send + Sync>;
        fn len(&self) -> u64 {
            10
        }
        fn get_range(
            &self,
            r: std::ops::Range<u64>,
        ) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, Self::Error>> + Send + Sync>> {
            let b = bytes::Bytes::from_static(b"0123456789").slice(r.start as usize..r.end as usize);
            Box::pin(futures::stream::once(async move { Ok(b) }))
        }
        fn add_headers(&self, _: &mut HeaderMap) {}
        fn etag(&self) -> Option<HeaderValue> {
            Some(HeaderValue::from_static("\"e\""))
        }
        fn last_modified(&self) -> Option<SystemTime> {
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        }
    }

    fn serve(headers: &[(&str, &str)], normalise: bool) -> (u16, Option<String>) {
        let mut req = http::Request::get("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        if normalise {
            normalize(req.headers_mut(), 10, Bytes10.last_modified_time(), true);
        }
        let r = http_serve::serve(Bytes10, &req);
        let cr = r.headers().get(header::CONTENT_RANGE).map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), cr)
    }

    impl Bytes10 {
        fn last_modified_time(&self) -> Option<SystemTime> {
            http_serve::Entity::last_modified(self)
        }
    }

    /// Fails once http-serve itself follows RFC 9110 §14.1.3 for suffix ranges: then
    /// [`normalize`] no longer needs to rewrite them.
    #[test]
    fn upstream_suffix_bug_still_present() {
        assert_eq!(
            serve(&[("range", "bytes=-20")], false).0,
            416,
            "http-serve now serves an over-long suffix range: drop the suffix rewrite in normalize()"
        );
        assert_eq!(
            serve(&[("range", "bytes=-0")], false),
            (206, Some("bytes 10-9/10".into())),
            "http-serve now refuses a zero-length suffix: drop the suffix rewrite in normalize()"
        );
    }

    #[test]
    fn normalised_requests_follow_rfc_9110() {
        let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
        for (headers, want) in [
            (vec![("range", "bytes=-20")], (206, Some("bytes 0-9/10"))),
            (vec![("range", "bytes=-0")], (416, Some("bytes */10"))),
            (vec![("range", "bytes=7-3")], (200, None)),
            (vec![("range", "BYTES=2-3")], (206, Some("bytes 2-3/10"))),
            (vec![("range", "bytes=2-3"), ("if-range", lm)], (206, Some("bytes 2-3/10"))),
            (vec![("range", "bytes=2-3"), ("if-range", "Tue, 14 Nov 2023 22:13:21 GMT")], (200, None)),
            (vec![("if-modified-since", lm)], (304, None)),
            (vec![("if-modified-since", "yesterday")], (200, None)),
            (vec![("if-unmodified-since", "yesterday")], (200, None)),
        ] {
            let (status, cr) = serve(&headers, true);
            assert_eq!((status, cr.as_deref()), want, "{headers:?}");
        }
    }
}
