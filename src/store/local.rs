//! The embedded store: a local directory.

use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, Result, StoreError, check_key};

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
        let (store, owned) = (self.clone(), key.to_string());
        blocking(key, move || {
            let mut buf = Vec::new();
            store.read_blocking(&owned, range, None, &mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    fn reads_locally(&self, _key: &str) -> bool {
        true
    }

    fn read_blocking(&self, key: &str, range: Range<u64>, _etag: Option<&str>, buf: &mut Vec<u8>) -> Result<()> {
        use std::io::{Read, Seek};
        let path = self.path(key)?;
        let mut f = std::fs::File::open(&path).map_err(io(key))?;
        let len = f.metadata().map_err(io(key))?.len();
        if range.end > len || range.start > range.end {
            return Err(StoreError::BadRange { key: key.to_string(), start: range.start, end: range.end, len });
        }
        let n = range.end - range.start;
        buf.clear();
        if buf.capacity() < n as usize {
            // A new allocation, not a grown one (which would copy the old bytes). A buffer
            // being reused gets room for the next reads too (segments vary in length); a fresh
            // one (`get_range`'s, kept as `Bytes`) is exact, so no slack is held.
            let slack = if buf.capacity() == 0 { 0 } else { n as usize / 4 };
            *buf = Vec::with_capacity(n as usize + slack);
        }
        f.seek(std::io::SeekFrom::Start(range.start)).map_err(io(key))?;
        // Into the buffer's spare capacity: no zeroing of bytes about to be overwritten.
        f.take(n).read_to_end(buf).map_err(io(key))?;
        if buf.len() as u64 != n {
            return Err(io(key)(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let owned = key.to_string();
        // A checked key is a relative path of at least one segment: its file has a parent.
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        blocking(key, move || {
            use std::io::Write;
            let key = owned;
            std::fs::create_dir_all(&dir).map_err(io(&key))?;
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
        let owned = prefix.to_string();
        blocking(prefix, move || {
            let prefix = owned;
            let mut out = Vec::new();
            walk(&root, &root, &mut out).map_err(io(&prefix))?;
            out.retain(|k| k.starts_with(&prefix));
            out.sort();
            Ok(out)
        })
        .await
    }
}

/// Runs file I/O on the blocking pool; a task that panicked is an I/O error on `key`.
async fn blocking<T: Send + 'static>(key: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io { key: key.to_string(), source: std::io::Error::other(format!("I/O task failed: {e}")) })
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else if !e.file_name().to_string_lossy().starts_with(".tmp-")
            && let Ok(rel) = p.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

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
