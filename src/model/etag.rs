//! The strong ETag of a full MP4 (RFC 9110 §8.8.3): a hash of [`FORMAT_VERSION`] and, per
//! segment in file order, its content hash, its encoded sample index and whether the timeline
//! joins before it: everything the output bytes depend on.

use sha2::{Digest, Sha256};

use crate::format::mp4::FORMAT_VERSION;

/// Builds the ETag value segment by segment; each [`push`](Self::push) and
/// [`value`](Self::value) costs O(that segment), so a live recording's ETag grows in O(1) per
/// appended segment.
#[derive(Clone)]
pub struct EtagHasher {
    h: Sha256,
}

impl std::fmt::Debug for EtagHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtagHasher")
    }
}

impl Default for EtagHasher {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(b"jitmux full mp4\0");
        h.update(FORMAT_VERSION.to_be_bytes());
        EtagHasher { h }
    }
}

impl EtagHasher {
    /// Adds the next segment: its hex SHA-256, its encoded sample index, its join flag.
    pub fn push(&mut self, sha256: &str, index: &[u8], join_before: bool) {
        self.h.update(sha256.as_bytes());
        self.h.update([join_before as u8]);
        self.h.update(Sha256::digest(index));
    }

    /// The ETag value (without quotes) of the segments pushed so far: `v{FORMAT_VERSION}-` and
    /// 32 hex digits.
    pub fn value(&self) -> String {
        format!("v{FORMAT_VERSION}-{}", &hex::encode(self.h.clone().finalize())[..32])
    }
}

/// The ETag value of a clip: a hash of [`FORMAT_VERSION`], each recording it is cut from (its
/// ETag, which covers its content, and its wall-clock start, unix ms, which places it) and the
/// cut (`params`: range, accuracy, gap policy), so every node names the same bytes alike.
pub fn clip_etag<'a>(recordings: impl IntoIterator<Item = (&'a str, i64)>, params: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"jitmux clip\0");
    h.update(FORMAT_VERSION.to_be_bytes());
    for (etag, start_ms) in recordings {
        h.update(etag.as_bytes());
        h.update(start_ms.to_be_bytes());
    }
    h.update(params.as_bytes());
    format!("v{FORMAT_VERSION}-{}", &hex::encode(h.finalize())[..32])
}

/// The ETag value of a full MP4 made of `segments`: (hex SHA-256, encoded index, join flag).
pub fn full_file_etag<'a>(segments: impl IntoIterator<Item = (&'a str, &'a [u8], bool)>) -> String {
    let mut h = EtagHasher::default();
    for (sha, index, join) in segments {
        h.push(sha, index, join);
    }
    h.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_equals_whole() {
        let segs = [("aa", &b"x"[..], false), ("bb", &b"yy"[..], true)];
        let mut h = EtagHasher::default();
        let before = h.value();
        h.push(segs[0].0, segs[0].1, segs[0].2);
        let one = h.clone();
        h.push(segs[1].0, segs[1].1, segs[1].2);
        assert_eq!(h.value(), full_file_etag(segs));
        assert_eq!(one.value(), full_file_etag(segs[..1].iter().copied()));
        assert_ne!(before, one.value());
        assert!(h.value().starts_with(&format!("v{FORMAT_VERSION}-")));
    }
}
