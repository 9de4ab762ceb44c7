//! `multipart/byteranges` bodies (RFC 9110 §14.6) taken apart, for the conformance table and
//! the end-to-end tests.

/// Parses a `multipart/byteranges` body into (Content-Range, bytes) parts.
pub fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type.split("boundary=").nth(1).expect("boundary").trim_matches('"');
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = 0;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    };
    while let Some(d) = find(body, delim.as_bytes(), pos) {
        let after = d + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(body, b"\r\n\r\n", after).expect("part headers");
        let head = String::from_utf8_lossy(&body[after..head_end]).to_string();
        let cr = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-range:").map(|v| v.trim().to_string()))
            .expect("part Content-Range");
        let start = head_end + 4;
        let (a, b) = cr.trim_start_matches("bytes ").split('/').next().unwrap().split_once('-').unwrap();
        let n = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
        parts.push((cr, body[start..start + n].to_vec()));
        pos = start + n;
    }
    parts
}
