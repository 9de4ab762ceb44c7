//! The words of jitmux as types: ids, names, tree paths, share modes, object keys and the ETag.
//!
//! No I/O, no async: everything here is a value that the other layers pass around, so that a
//! camera id cannot be given where a recording id is meant, a tree path is parsed once, and
//! every object key and every ETag is made by exactly one function.

mod etag;
mod ids;
pub mod keys;
mod modes;
mod path;

pub use etag::{EtagHasher, clip_etag, full_file_etag};
pub use ids::{CameraId, ExportId, RecordingId, UserId};
pub use modes::{Mode, ShareModes};
pub use path::{NameError, TreePath, check_name};

/// Current time, unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Hex SHA-256 of `b`.
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// `YYYY-MM-DD` directory and `HH-MM-SS` file stem (UTC) for a start time in unix ms.
pub fn day_and_name(start_ms: i64) -> (String, String) {
    let t = time::OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (
        format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day()),
        format!("{:02}-{:02}-{:02}", t.hour(), t.minute(), t.second()),
    )
}

/// Parses an RFC 3339 date-time into unix ms.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// RFC 3339 form of a unix ms time (`2026-03-01T10:01:00Z`, with a fraction when not whole).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
