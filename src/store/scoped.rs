//! A store handle that reaches one prefix only.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, Result, StoreError};

/// A handle on the object store that only reaches keys under one prefix (a user's
/// `users/{id}/`, [`crate::model::keys::user_prefix`]): whatever key a bug or a forged request
/// produces, another user's objects are out of its reach.
pub struct ScopedStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ScopedStore {
    /// A handle on `inner` for keys starting with `prefix` (which should end in `/`).
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: String) -> Self {
        ScopedStore { inner, prefix }
    }

    fn check(&self, key: &str) -> Result<()> {
        if key.starts_with(&self.prefix) { Ok(()) } else { Err(StoreError::BadKey(key.to_string())) }
    }
}

#[async_trait]
impl ObjectStore for ScopedStore {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.check(key)?;
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.check(key)?;
        self.inner.put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.check(key)?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.check(key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.check(prefix)?;
        self.inner.list(prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scoped_store_cannot_reach_other_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::LocalDirStore::new(dir.path()).unwrap());
        store.put("users/1/segments/a.ts", Bytes::from_static(b"one")).await.unwrap();
        store.put("users/2/segments/b.ts", Bytes::from_static(b"two")).await.unwrap();
        let one = ScopedStore::new(store, "users/1/".into());
        assert_eq!(&one.get_range("users/1/segments/a.ts", 0..3).await.unwrap()[..], b"one");
        for key in ["users/2/segments/b.ts", "users/12/x", "users/1", "other/users/1/x"] {
            assert!(matches!(one.get_range(key, 0..1).await, Err(StoreError::BadKey(_))), "{key}");
        }
    }
}
