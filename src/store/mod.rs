//! Object storage behind a small trait, so that S3 slots in beside the embedded local-directory
//! store without touching callers.
//!
//! Keys are relative slash-separated paths (`users/7/segments/<sha256>.ts`, see
//! [`crate::model::keys`]); [`check_key`] rejects anything else. Objects are immutable once
//! written: `put` of an existing key with different bytes is a caller bug (segment keys are
//! content hashes).
//!
//! - [`LocalDirStore`]: the embedded default, one file per object.
//! - [`ScopedStore`]: a handle that reaches one prefix only (a user's objects).
//! - [`CountingStore`]: counts reads for `/metrics`.
//! - [`S3Store`]: a bucket prefix on S3 or an S3-compatible server, through [`S3`] (aws-sdk-s3).
//!
//! Archives indexed in place live outside jitmux's own keys: their segments are addressed by
//! URL (`s3://BUCKET/KEY`, see [`ArchiveUrl`]) and read through [`S3`] with `If-Match` on the
//! ETag recorded at import, and a user's [`ScopedStore`] reaches only the prefixes granted to them.

mod counting;
mod local;
mod s3;
mod scoped;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

pub use counting::CountingStore;
pub use local::LocalDirStore;
pub use s3::{ArchiveUrl, S3, S3Store};
pub use scoped::ScopedStore;

/// Object store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0:?} not found")]
    NotFound(String),
    #[error("invalid object key {0:?}")]
    BadKey(String),
    #[error("object {key:?}: range {start}..{end} is past its end ({len} bytes)")]
    BadRange { key: String, start: u64, end: u64, len: u64 },
    #[error("object store I/O on {key:?}: {source}")]
    Io { key: String, source: std::io::Error },
    /// The store kept failing transiently (5xx, throttling, timeout, reset) until the retry
    /// deadline passed.
    #[error("object store unavailable for {key:?}: gave up after {attempts} attempts: {reason}")]
    Unavailable { key: String, attempts: u32, reason: String },
    /// The store refused the request for good (403 access denied, 400, …).
    #[error("object store refused {key:?}: {reason}")]
    Denied { key: String, reason: String },
    /// The object is not the one that was indexed: its ETag no longer matches (412 on
    /// `If-Match`, RFC 9110 §13.1.1); it was replaced behind jitmux's back.
    #[error("object {0:?} changed since it was indexed (ETag no longer matches)")]
    Changed(String),
    /// An archive URL outside every prefix granted to the user (`jitmux user grant`).
    #[error("{0} is not granted to this user")]
    NotGranted(String),
}

impl StoreError {
    /// Whether trying again later may succeed (the store was unavailable), as opposed to a
    /// permanent answer about the object or the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. } | StoreError::Io { .. })
    }
}

/// What the store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len_bytes: u64,
    /// The store's ETag (quotes kept as the store sends them), when it has one.
    pub etag: Option<String>,
}

type Result<T> = std::result::Result<T, StoreError>;

/// A flat key → immutable bytes store (the shape of S3).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Bytes `range` (`start..end`, end exclusive) of object `key`; errors if the range passes
    /// the object's end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Like [`Self::get_range`], but fails with [`StoreError::Changed`] unless the object's ETag
    /// is still `etag` (when given). Stores whose objects cannot change (content-addressed
    /// keys) ignore it.
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        let _ = etag;
        self.get_range(key, range).await
    }
    /// Whether reads of `key` are local (a file read, no waiting on a network). Such a read is
    /// best made by [`Self::read_blocking`] on the thread that uses the bytes, just before it
    /// does (they are then in that core's cache, and the buffer is reused), rather than ahead.
    fn reads_locally(&self, key: &str) -> bool {
        let _ = key;
        false
    }
    /// Bytes `range` of `key` into `buf` (its contents replaced, its allocation reused when large
    /// enough), on the calling thread, which must be allowed to block (the blocking pool). `etag`
    /// as in [`Self::get_range_if`]. Errors as [`Self::get_range`]; an I/O error of kind
    /// `Unsupported` for a key that [`Self::reads_locally`] denies.
    fn read_blocking(&self, key: &str, range: Range<u64>, etag: Option<&str>, buf: &mut Vec<u8>) -> Result<()> {
        let _ = (range, etag, buf);
        Err(no_local_reads(key))
    }
    /// Stores `data` under `key` atomically: readers see the old state or all of `data`.
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;
    /// Size in bytes of `key`, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<u64>>;
    /// The whole object `key` (its size, then one read). Errors: [`StoreError::NotFound`] if
    /// absent.
    async fn get(&self, key: &str) -> Result<Bytes> {
        let len = self.head(key).await?.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        self.get_range(key, 0..len).await
    }
    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Checks that the store is reachable and usable (at startup); stores that cannot fail this
    /// way answer Ok.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// The error of [`ObjectStore::read_blocking`] for a key the store does not read locally.
pub(crate) fn no_local_reads(key: &str) -> StoreError {
    StoreError::Io { key: key.to_string(), source: std::io::ErrorKind::Unsupported.into() }
}

/// Checks that `key` is a relative path of non-empty, non-dot segments of `[A-Za-z0-9._-]`.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok { Ok(()) } else { Err(StoreError::BadKey(key.to_string())) }
}

#[async_trait]
impl ObjectStore for std::sync::Arc<dyn ObjectStore> {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        (**self).get_range(key, range).await
    }
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        (**self).get_range_if(key, range, etag).await
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
    fn reads_locally(&self, key: &str) -> bool {
        (**self).reads_locally(key)
    }
    fn read_blocking(&self, key: &str, range: Range<u64>, etag: Option<&str>, buf: &mut Vec<u8>) -> Result<()> {
        (**self).read_blocking(key, range, etag, buf)
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        (**self).put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        (**self).head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        (**self).list(prefix).await
    }
}
