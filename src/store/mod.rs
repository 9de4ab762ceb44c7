//! Object storage behind a small trait, so that S3 slots in beside the embedded local-directory
//! store without touching callers.
//!
//! Keys are relative slash-separated paths (`users/7/segments/<sha256>.ts`); [`check_key`]
//! rejects anything else. Objects are immutable once written: `put` of an existing key with
//! different bytes is a caller bug (segment keys are content hashes).

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

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

/// The embedded store: one file per object under a root directory; writes go to a temporary
/// file that is renamed into place.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalDirStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound(key.to_string())
        } else {
            StoreError::Io { key: key.to_string(), source }
        }
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&path).map_err(io(&key))?;
            let len = f.metadata().map_err(io(&key))?.len();
            if range.end > len || range.start > range.end {
                return Err(StoreError::BadRange { key: key.clone(), start: range.start, end: range.end, len });
            }
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            f.read_exact_at(&mut buf, range.start).map_err(io(&key))?;
            Ok(Bytes::from(buf))
        })
        .await
        .expect("blocking read panicked")
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let dir = path.parent().expect("key has a parent");
            std::fs::create_dir_all(dir).map_err(io(&key))?;
            let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_data()?;
                std::fs::rename(&tmp, &path)
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(&key)(e)
            })
        })
        .await
        .expect("blocking write panicked")
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(key)(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(key)(e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &mut out).map_err(io(&prefix))?;
            out.retain(|k| k.starts_with(&prefix));
            out.sort();
            Ok(out)
        })
        .await
        .expect("blocking list panicked")
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else if !e.file_name().to_string_lossy().starts_with(".tmp-") {
            let rel = p.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Wraps a store and counts its reads (`jitmux_store_reads_total` in `/metrics`): the live tail
/// promises one read per segment per node, whatever the number of viewers.
pub struct CountingStore<S> {
    inner: S,
    /// `get_range` calls so far.
    pub reads: std::sync::atomic::AtomicU64,
    /// Bytes returned by `get_range` so far.
    pub read_bytes: std::sync::atomic::AtomicU64,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore { inner, reads: Default::default(), read_bytes: Default::default() }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        use std::sync::atomic::Ordering::Relaxed;
        let b = self.inner.get_range(key, range).await?;
        self.reads.fetch_add(1, Relaxed);
        self.read_bytes.fetch_add(b.len() as u64, Relaxed);
        Ok(b)
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.inner.put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path()).unwrap();
        s.put("a/b/c.ts", Bytes::from_static(b"0123456789")).await.unwrap();
        assert_eq!(s.head("a/b/c.ts").await.unwrap(), Some(10));
        assert_eq!(&s.get_range("a/b/c.ts", 2..5).await.unwrap()[..], b"234");
        assert!(matches!(s.get_range("a/b/c.ts", 5..11).await, Err(StoreError::BadRange { .. })));
        assert!(matches!(s.get_range("nope", 0..1).await, Err(StoreError::NotFound(_))));
        assert_eq!(s.list("a/").await.unwrap(), vec!["a/b/c.ts".to_string()]);
        s.delete("a/b/c.ts").await.unwrap();
        s.delete("a/b/c.ts").await.unwrap();
        assert_eq!(s.head("a/b/c.ts").await.unwrap(), None);
        for bad in ["../x", "/abs", "a//b", "a/./b", "a\\b", ""] {
            assert!(matches!(s.put(bad, Bytes::new()).await, Err(StoreError::BadKey(_))), "{bad}");
        }
    }
}
