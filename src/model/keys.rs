//! Every object key jitmux writes, in one place. Keys are relative slash-separated paths under a
//! user's prefix (`users/{id}/`), which is what a user's scoped store may reach.
//!
//! ```text
//! users/{user}/segments/{sha256}.{ts|m4s|mp4}   segments and init segments, stored unchanged
//! users/{user}/heads/{etag}.mp4                 ftyp + moov + mdat header of a full file
//! users/{user}/thumbs/{sha256}-v{N}.jpg         thumbnail made from a segment
//! ```

use super::UserId;

/// The prefix of every object of `user` (`users/{id}/`).
pub fn user_prefix(user: UserId) -> String {
    format!("users/{user}/")
}

/// Content-addressed bytes of a segment or init segment: `sha256` is the hex SHA-256 of the
/// bytes, `ext` the kind (`ts`, `m4s`, `mp4` for init segments).
pub fn segment(user: UserId, sha256: &str, ext: &str) -> String {
    format!("users/{user}/segments/{sha256}.{ext}")
}

/// The stored head (`ftyp` + `moov` + `mdat` header) of a full MP4 whose ETag value is `etag`:
/// lets the first bytes of a file, which every player asks for first, be served without building
/// its layout.
pub fn head(user: UserId, etag: &str) -> String {
    format!("users/{user}/heads/{etag}.mp4")
}

/// A thumbnail made from the segment with hex SHA-256 `segment_sha256`, at thumbnail bytes
/// version `version`.
pub fn thumbnail(user: UserId, segment_sha256: &str, version: u32) -> String {
    format!("users/{user}/thumbs/{segment_sha256}-v{version}.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_in_the_users_prefix() {
        let u = UserId(7);
        for k in [segment(u, "ab", "ts"), head(u, "v1-x"), thumbnail(u, "ab", 1)] {
            assert!(k.starts_with(&user_prefix(u)), "{k}");
        }
        assert_eq!(segment(u, "ab", "m4s"), "users/7/segments/ab.m4s");
    }
}
