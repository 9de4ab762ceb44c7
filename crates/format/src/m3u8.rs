//! HLS media playlist parser (RFC 8216 §4).
//!
//! Only what archive import needs: the segment list with durations, sequence numbers,
//! discontinuities, gaps, the `EXT-X-MAP` init segment in force and the program date time.
//! Master playlists, encryption and byte-range segments are rejected with a [`FormatError`] whose
//! offset is the byte offset of the offending line. Unknown tags and comments are ignored
//! (RFC 8216 §4.1: clients MUST ignore unrecognized tags).

use super::FormatError;
use crate::bail_at;

/// `EXT-X-PLAYLIST-TYPE` (RFC 8216 §4.3.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaylistType {
    /// `VOD`: the playlist cannot change.
    Vod,
    /// `EVENT`: segments can only be appended.
    Event,
}

/// A parsed HLS media playlist (RFC 8216 §4.3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION` in seconds (§4.3.3.1); `None` when the (required) tag is missing.
    pub target_duration_s: Option<u64>,
    /// `EXT-X-MEDIA-SEQUENCE` (§4.3.3.2): the sequence number of the first segment; 0 if absent.
    pub media_sequence: u64,
    /// `EXT-X-PLAYLIST-TYPE` (§4.3.3.5), if present.
    pub playlist_type: Option<PlaylistType>,
    /// `EXT-X-ENDLIST` present (§4.3.3.4): no more segments will be added.
    pub ended: bool,
    /// Media segments in playlist order.
    pub segments: Vec<PlaylistSegment>,
}

/// One media segment of a [`MediaPlaylist`] (RFC 8216 §3, §4.3.2).
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistSegment {
    /// The segment URI exactly as written (relative URIs are resolved by the caller; see
    /// [`is_safe_relative`]).
    pub uri: String,
    /// `EXTINF` duration in seconds (§4.3.2.1).
    pub duration_s: f64,
    /// Media sequence number: `media_sequence` + position in the playlist (§3).
    pub sequence: u64,
    /// An `EXT-X-DISCONTINUITY` tag (§4.3.2.3) precedes this segment.
    pub discontinuity: bool,
    /// An `EXT-X-GAP` tag (RFC 8216bis §4.4.4.7) applies to this segment: its media is missing.
    pub gap: bool,
    /// URI of the `EXT-X-MAP` (§4.3.2.5) in force for this segment: the last one before it.
    pub map_uri: Option<String>,
    /// Raw value of an `EXT-X-PROGRAM-DATE-TIME` tag (§4.3.2.6) placed before this segment (after
    /// the previous segment's URI). The tag dates the first sample of the segment it precedes
    /// only; later segments get `None` and their date is derived by adding `EXTINF` durations.
    pub program_date_time: Option<String>,
}

/// Parses an HLS media playlist.
///
/// Errors (offset = byte offset of the offending line): not starting with `#EXTM3U`, a master
/// playlist tag (`EXT-X-STREAM-INF`, `EXT-X-I-FRAME-STREAM-INF`), `EXT-X-KEY` with a `METHOD`
/// other than `NONE`, `EXT-X-BYTERANGE` or `EXT-X-MAP` with `BYTERANGE`, a malformed `EXTINF`
/// or numeric tag, a URI line without a preceding `EXTINF` (or an `EXTINF` without a URI),
/// and text that is not UTF-8. LF and CRLF line ends and blank lines are accepted.
pub fn parse(text: &[u8]) -> Result<MediaPlaylist, FormatError> {
    let mut pl = MediaPlaylist {
        target_duration_s: None,
        media_sequence: 0,
        playlist_type: None,
        ended: false,
        segments: Vec::new(),
    };
    let mut pending_extinf: Option<(f64, usize)> = None;
    let mut discontinuity = false;
    let mut gap = false;
    let mut program_date_time: Option<String> = None;
    let mut map_uri: Option<String> = None;

    let mut off = 0usize;
    let mut first = true;
    for raw in text.split(|&b| b == b'\n') {
        let line_off = off;
        off += raw.len() + 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            bail_at!(line_off, "playlist is not UTF-8");
        };
        let line = line.strip_suffix('\r').unwrap_or(line).trim();
        if first {
            if line != "#EXTM3U" {
                bail_at!(line_off, "not an HLS playlist: does not start with #EXTM3U");
            }
            first = false;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            let Some((duration_s, _)) = pending_extinf.take() else {
                bail_at!(line_off, "segment URI without a preceding EXTINF");
            };
            pl.segments.push(PlaylistSegment {
                uri: line.to_string(),
                duration_s,
                sequence: pl.media_sequence + pl.segments.len() as u64,
                discontinuity: std::mem::take(&mut discontinuity),
                gap: std::mem::take(&mut gap),
                map_uri: map_uri.clone(),
                program_date_time: program_date_time.take(),
            });
            continue;
        }
        if !line.starts_with("#EXT") {
            continue; // comment
        }
        let (tag, value) = match line.find(':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        match tag {
            "#EXTINF" => {
                if pending_extinf.is_some() {
                    bail_at!(line_off, "two EXTINF tags without a segment URI between them");
                }
                let dur = value.split(',').next().unwrap_or("").trim();
                match dur.parse::<f64>() {
                    Ok(d) if d.is_finite() && d >= 0.0 && !dur.is_empty() => pending_extinf = Some((d, line_off)),
                    _ => bail_at!(line_off, "malformed EXTINF duration {dur:?}"),
                }
            }
            "#EXT-X-TARGETDURATION" => pl.target_duration_s = Some(parse_int(value, tag, line_off)?),
            "#EXT-X-MEDIA-SEQUENCE" => {
                if !pl.segments.is_empty() {
                    bail_at!(line_off, "EXT-X-MEDIA-SEQUENCE after the first segment");
                }
                pl.media_sequence = parse_int(value, tag, line_off)?;
            }
            "#EXT-X-PLAYLIST-TYPE" => {
                pl.playlist_type = Some(match value.trim() {
                    "VOD" => PlaylistType::Vod,
                    "EVENT" => PlaylistType::Event,
                    v => bail_at!(line_off, "unknown EXT-X-PLAYLIST-TYPE {v:?}"),
                })
            }
            "#EXT-X-ENDLIST" => pl.ended = true,
            "#EXT-X-DISCONTINUITY" => discontinuity = true,
            "#EXT-X-GAP" => gap = true,
            "#EXT-X-PROGRAM-DATE-TIME" => program_date_time = Some(value.trim().to_string()),
            "#EXT-X-STREAM-INF" | "#EXT-X-I-FRAME-STREAM-INF" => {
                bail_at!(line_off, "master playlist ({tag}) where a media playlist was expected")
            }
            "#EXT-X-BYTERANGE" => bail_at!(line_off, "byte-range segments are not supported"),
            "#EXT-X-KEY" => {
                let attrs = parse_attributes(value, line_off)?;
                match attr(&attrs, "METHOD") {
                    Some("NONE") => {}
                    Some(m) => bail_at!(line_off, "encrypted segments are not supported (METHOD={m})"),
                    None => bail_at!(line_off, "EXT-X-KEY without METHOD"),
                }
            }
            "#EXT-X-MAP" => {
                let attrs = parse_attributes(value, line_off)?;
                if attr(&attrs, "BYTERANGE").is_some() {
                    bail_at!(line_off, "byte-range segments are not supported (EXT-X-MAP with BYTERANGE)");
                }
                match attr(&attrs, "URI") {
                    Some(u) if !u.is_empty() => map_uri = Some(u.to_string()),
                    _ => bail_at!(line_off, "EXT-X-MAP without URI"),
                }
            }
            _ => {} // unknown or irrelevant tag
        }
    }
    if first {
        bail_at!(0, "not an HLS playlist: does not start with #EXTM3U");
    }
    if let Some((_, at)) = pending_extinf {
        bail_at!(at, "EXTINF without a segment URI");
    }
    Ok(pl)
}

/// Parses a `decimal-integer` (RFC 8216 §4.2).
fn parse_int(value: &str, tag: &str, line_off: usize) -> Result<u64, FormatError> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        bail_at!(line_off, "malformed {tag} value {v:?}");
    }
    v.parse().map_err(|_| FormatError::new(line_off as u64, format!("malformed {tag} value {v:?}")))
}

/// Splits an attribute list (RFC 8216 §4.2) into `(name, value)` pairs; quoted-string values
/// are returned without their quotes and may contain commas.
fn parse_attributes(s: &str, line_off: usize) -> Result<Vec<(&str, &str)>, FormatError> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            bail_at!(line_off, "malformed attribute list: {rest:?} has no '='");
        };
        let name = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let Some(end) = q.find('"') else {
                bail_at!(line_off, "malformed attribute list: unterminated quoted string");
            };
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(c) => (after[..c].trim(), &after[c..]),
                None => (after.trim(), ""),
            }
        };
        out.push((name, value));
        let tail = tail.trim_start();
        rest = match tail.strip_prefix(',') {
            Some(t) => t.trim_start(),
            None if tail.is_empty() => "",
            None => bail_at!(line_off, "malformed attribute list: expected ',' before {tail:?}"),
        };
    }
    Ok(out)
}

fn attr<'a>(attrs: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Whether `uri` is a relative reference that stays inside the playlist's directory: not
/// empty, no URI scheme (`http:`, `s3:`, `file:` …), not starting with `/` (absolute path or
/// network-path reference, RFC 3986 §4.2), no backslash or control characters, and no `..`
/// path segment, also when percent-encoded (`%2e%2e`), and no percent-encoded `/` or `\`.
/// The query and fragment, if any, are not checked for `..`.
pub fn is_safe_relative(uri: &str) -> bool {
    if uri.is_empty() || uri.starts_with('/') || uri.contains('\\') || uri.chars().any(|c| c.is_control()) {
        return false;
    }
    let path = uri.split(['?', '#']).next().unwrap_or("");
    // A scheme is `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"` before any '/' (RFC 3986 §3.1);
    // a colon in the first path segment of a relative reference is not allowed either (§4.2).
    if path.split('/').next().unwrap_or("").contains(':') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return false;
    }
    !lower.split('/').any(|seg| seg.replace("%2e", ".") == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FormatError {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_tags_and_scopes() {
        let text = "#EXTM3U\r\n#EXT-X-VERSION:7\r\n#EXT-X-TARGETDURATION:2\r\n#EXT-X-MEDIA-SEQUENCE:40\r\n\
            #EXT-X-PLAYLIST-TYPE:EVENT\r\n#EXT-X-KEY:METHOD=NONE\r\n\r\n# a comment\r\n#EXT-X-FOO:bar\r\n\
            #EXT-X-MAP:URI=\"a,b.mp4\"\r\n#EXT-X-PROGRAM-DATE-TIME:2024-01-02T03:04:05.678Z\r\n\
            #EXTINF:2.002,title, with comma\r\nseg0.m4s\r\n#EXTINF:2,\r\nseg1.m4s\r\n\
            #EXT-X-DISCONTINUITY\r\n#EXT-X-GAP\r\n#EXT-X-MAP:URI=\"b.mp4\"\r\n#EXTINF:1.5\r\nseg2.m4s\r\n\
            #EXTINF:0.5,\r\nseg3.m4s\r\n#EXT-X-ENDLIST\r\n";
        let pl = parse(text.as_bytes()).unwrap();
        assert_eq!(pl.target_duration_s, Some(2));
        assert_eq!(pl.media_sequence, 40);
        assert_eq!(pl.playlist_type, Some(PlaylistType::Event));
        assert!(pl.ended);
        let s = &pl.segments;
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].uri.as_str(), s[0].duration_s, s[0].sequence), ("seg0.m4s", 2.002, 40));
        assert_eq!(s[0].map_uri.as_deref(), Some("a,b.mp4"));
        assert_eq!(s[0].program_date_time.as_deref(), Some("2024-01-02T03:04:05.678Z"));
        assert_eq!(s[1].program_date_time, None);
        assert_eq!(s[1].map_uri.as_deref(), Some("a,b.mp4"));
        assert!(!s[1].discontinuity && !s[1].gap);
        assert!(s[2].discontinuity && s[2].gap);
        assert_eq!(s[2].map_uri.as_deref(), Some("b.mp4"));
        assert_eq!((s[2].duration_s, s[2].sequence), (1.5, 42));
        assert!(!s[3].discontinuity && !s[3].gap);
        assert_eq!(s[3].map_uri.as_deref(), Some("b.mp4"));
    }

    #[test]
    fn rejects_bad_playlists() {
        let cases: &[(&str, u64, &str)] = &[
            ("", 0, "#EXTM3U"),
            ("\u{feff}#EXTM3U\n", 0, "#EXTM3U"),
            ("#EXT-X-VERSION:3\n#EXTM3U\n", 0, "#EXTM3U"),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", 8, "master playlist"),
            ("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:1,\na.ts\n", 8, "encrypted"),
            ("#EXTM3U\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"a,b\"\n", 8, "encrypted"),
            ("#EXTM3U\n#EXTINF:1,\n#EXT-X-BYTERANGE:100@0\na.ts\n", 19, "byte-range"),
            ("#EXTM3U\n#EXT-X-MAP:URI=\"a,b.mp4\",BYTERANGE=\"100@0\"\n", 8, "byte-range"),
            ("#EXTM3U\n#EXTINF:abc,\na.ts\n", 8, "malformed EXTINF"),
            ("#EXTM3U\n#EXTINF:,\na.ts\n", 8, "malformed EXTINF"),
            ("#EXTM3U\n#EXTINF:-1,\na.ts\n", 8, "malformed EXTINF"),
            ("#EXTM3U\n#EXTINF\na.ts\n", 8, "malformed EXTINF"),
            ("#EXTM3U\n#EXTINF:1,\n#EXTINF:1,\na.ts\n", 19, "two EXTINF"),
            ("#EXTM3U\r\na.ts\r\n", 9, "without a preceding EXTINF"),
            ("#EXTM3U\n#EXTINF:1,\na.ts\nb.ts\n", 24, "without a preceding EXTINF"),
            ("#EXTM3U\n#EXTINF:1,\n", 8, "without a segment URI"),
            ("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", 8, "malformed"),
            ("#EXTM3U\n#EXT-X-MAP:URI=\"a.mp4\n", 8, "unterminated"),
            ("#EXTM3U\n#EXT-X-MAP:BYTES=1\n", 8, "without URI"),
            ("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:LIVE\n", 8, "PLAYLIST-TYPE"),
        ];
        for (text, off, what) in cases {
            let e = err(text);
            assert_eq!(e.offset, *off, "{text:?}: {e}");
            assert!(e.what.contains(what), "{text:?}: {e}");
        }
        let e = parse(b"#EXTM3U\n#EXTINF:1,\na\xff.ts\n").unwrap_err();
        assert_eq!(e.offset, 19);
        assert!(e.what.contains("UTF-8"));
    }

    #[test]
    fn safe_relative_uris() {
        for ok in ["seg_00001.m4s", "sub/dir/a.ts", "a.ts?x=../y", "./a.ts", "a..b.ts", "..a/b"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "http://h/a.ts",
            "HTTPS://h/a.ts",
            "s3:bucket/a.ts",
            "file:///etc/passwd",
            "//host/a.ts",
            "/abs/a.ts",
            "../a.ts",
            "a/../../b.ts",
            "a/..",
            "%2e%2E/a.ts",
            "a%2f..%2fb",
            "a\\..\\b",
            "a\nb",
            "c:a.ts",
        ] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }

    #[test]
    fn parses_every_fixture_playlist() {
        let mut n = 0;
        for entry in std::fs::read_dir("../../fixtures/sets").unwrap() {
            let dir = entry.unwrap().path();
            for name in ["index.m3u8", "index_gaptag.m3u8"] {
                let Ok(text) = std::fs::read(dir.join(name)) else { continue };
                let pl = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
                n += 1;
                assert!(!pl.segments.is_empty());
                assert!(pl.target_duration_s.is_some());
                for (i, s) in pl.segments.iter().enumerate() {
                    assert!(is_safe_relative(&s.uri), "{}", s.uri);
                    assert_eq!(s.sequence, pl.media_sequence + i as u64);
                    assert!(s.duration_s > 0.0);
                    let fmp4 = dir.to_string_lossy().contains("fmp4");
                    assert_eq!(s.map_uri.is_some(), fmp4, "{}", dir.display());
                }
                let set = dir.file_name().unwrap().to_string_lossy().into_owned();
                if name == "index_gaptag.m3u8" {
                    let gaps: Vec<_> = pl.segments.iter().filter(|s| s.gap).map(|s| s.uri.as_str()).collect();
                    assert_eq!(gaps.len(), 1, "{set}");
                    assert!(gaps[0].starts_with("seg_00010."), "{set}");
                } else {
                    assert!(pl.segments.iter().all(|s| !s.gap), "{set}");
                }
                if set == "s06_h264_aac_fmp4_discontinuity" {
                    let s = &pl.segments;
                    assert_eq!(s.len(), 30);
                    assert!(s[15].discontinuity && s.iter().filter(|s| s.discontinuity).count() == 1);
                    assert_eq!(s[14].map_uri.as_deref(), Some("a_init.mp4"));
                    assert_eq!(s[15].map_uri.as_deref(), Some("b_init.mp4"));
                    assert_eq!(s[29].map_uri.as_deref(), Some("b_init.mp4"));
                }
            }
        }
        assert!(n >= 23, "parsed {n} playlists");
    }
}
