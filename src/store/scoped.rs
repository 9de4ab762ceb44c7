//! A store handle that reaches one user's objects and granted archives only.

use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ArchiveUrl, ObjectMeta, ObjectStore, Result, S3, StoreError};

/// A handle on the object store that only reaches keys under one prefix (a user's
/// `users/{id}/`, [`crate::model::keys::user_prefix`]) and archive URLs (`s3://BUCKET/KEY`,
/// archives indexed in place) under the prefixes granted to that user: whatever key a bug, a
/// forged request or a crafted playlist produces, another user's objects are out of its reach.
/// Archives are read-only through it.
pub struct ScopedStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    /// Archive prefixes granted to the user (`jitmux user grant`); replaced by [`Self::set_grants`].
    grants: RwLock<Arc<Vec<ArchiveUrl>>>,
}

impl ScopedStore {
    /// A handle on `inner` for keys starting with `prefix` (which should end in `/`), with no
    /// archive granted yet.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: String) -> Self {
        ScopedStore { inner, prefix, grants: RwLock::new(Arc::new(Vec::new())) }
    }

    /// Replaces the archive prefixes this handle may read.
    pub fn set_grants(&self, grants: Vec<ArchiveUrl>) {
        *self.grants.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(grants);
    }

    /// Checks that `key` is within reach: a key under the user's prefix, or an archive URL
    /// under a granted prefix (`Some` with the parsed URL). Errors: [`StoreError::BadKey`],
    /// [`StoreError::NotGranted`].
    pub fn check(&self, key: &str) -> Result<Option<ArchiveUrl>> {
        if key.starts_with("s3://") {
            let url = ArchiveUrl::parse(key).map_err(|_| StoreError::BadKey(key.to_string()))?;
            let grants = self.grants.read().unwrap_or_else(PoisonError::into_inner).clone();
            return if grants.iter().any(|g| url.is_under(g)) {
                Ok(Some(url))
            } else {
                Err(StoreError::NotGranted(key.to_string()))
            };
        }
        if key.starts_with(&self.prefix) { Ok(None) } else { Err(StoreError::BadKey(key.to_string())) }
    }

    /// Size and ETag of `key` (an archive URL or one of the user's keys), `None` if absent.
    pub async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.check(key)? {
            Some(url) => S3::shared().await.stat(&url.bucket, &url.key).await,
            None => Ok(self.inner.head(key).await?.map(|len_bytes| ObjectMeta { len_bytes, etag: None })),
        }
    }
}

fn read_only(key: &str) -> StoreError {
    StoreError::Denied { key: key.to_string(), reason: "archives indexed in place are read-only".into() }
}

#[async_trait]
impl ObjectStore for ScopedStore {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.get_range_if(key, range, None).await
    }
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        match self.check(key)? {
            Some(url) => {
                let b = S3::shared().await.get(&url.bucket, &url.key, range, etag).await?;
                super::counting::count_read(b.len());
                Ok(b)
            }
            None => self.inner.get_range_if(key, range, etag).await,
        }
    }
    fn reads_locally(&self, key: &str) -> bool {
        matches!(self.check(key), Ok(None)) && self.inner.reads_locally(key)
    }
    fn read_blocking(&self, key: &str, range: Range<u64>, etag: Option<&str>, buf: &mut Vec<u8>) -> Result<()> {
        match self.check(key)? {
            Some(_) => Err(super::no_local_reads(key)),
            None => self.inner.read_blocking(key, range, etag, buf),
        }
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        match self.check(key)? {
            Some(_) => Err(read_only(key)),
            None => self.inner.put(key, data).await,
        }
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.stat(key).await?.map(|m| m.len_bytes))
    }
    async fn delete(&self, key: &str) -> Result<()> {
        match self.check(key)? {
            Some(_) => Err(read_only(key)),
            None => self.inner.delete(key).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        match self.check(prefix)? {
            Some(url) => {
                let keys = S3::shared().await.list(&url.bucket, &url.key).await?;
                Ok(keys.into_iter().map(|k| format!("s3://{}/{k}", url.bucket)).collect())
            }
            None => self.inner.list(prefix).await,
        }
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

    #[test]
    fn archives_only_under_grants() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::LocalDirStore::new(dir.path()).unwrap());
        let one = ScopedStore::new(store, "users/1/".into());
        let key = "s3://cams/alice/front/a.ts";
        assert!(matches!(one.check(key), Err(StoreError::NotGranted(_))));
        one.set_grants(vec![ArchiveUrl::parse("s3://cams/alice/").unwrap()]);
        assert_eq!(one.check(key).unwrap().unwrap().key, "alice/front/a.ts");
        for key in ["s3://cams/alice2/a.ts", "s3://cams/bob/a.ts", "s3://other/alice/a.ts"] {
            assert!(matches!(one.check(key), Err(StoreError::NotGranted(_))), "{key}");
        }
        for key in ["s3://cams/alice/../bob/a.ts", "s3://cams/alice//a.ts"] {
            assert!(matches!(one.check(key), Err(StoreError::BadKey(_))), "{key}");
        }
        one.set_grants(Vec::new());
        assert!(matches!(one.check(key), Err(StoreError::NotGranted(_))));
    }
}
