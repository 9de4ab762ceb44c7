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

mod counting;
mod local;
mod scoped;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

pub use counting::CountingStore;
pub use local::LocalDirStore;
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
}

type Result<T> = std::result::Result<T, StoreError>;

/// A flat key → immutable bytes store (the shape of S3).
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Bytes `range` (`start..end`, end exclusive) of object `key`; errors if the range passes
    /// the object's end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Stores `data` under `key` atomically: readers see the old state or all of `data`.
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;
    /// Size in bytes of `key`, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<u64>>;
    /// Removes `key`; removing an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;
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
