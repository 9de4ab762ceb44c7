//! Read counters of a store.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, Result};

/// Wraps a store and counts its reads in the process's metrics (`jitmux_store_reads_total`,
/// `jitmux_store_read_bytes_total` on `/metrics`): the live tail promises one read per segment
/// per node, whatever the number of viewers.
pub struct CountingStore<S> {
    inner: S,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore { inner }
    }
}

/// Counts one store read of `len` bytes (also archive reads, which bypass the node's store).
pub(super) fn count_read(len: usize) {
    metrics::counter!("jitmux_store_reads_total").increment(1);
    metrics::counter!("jitmux_store_read_bytes_total").increment(len as u64);
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let b = self.inner.get_range(key, range).await?;
        count_read(b.len());
        Ok(b)
    }
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        let b = self.inner.get_range_if(key, range, etag).await?;
        count_read(b.len());
        Ok(b)
    }
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
    fn reads_locally(&self, key: &str) -> bool {
        self.inner.reads_locally(key)
    }
    fn read_blocking(&self, key: &str, range: Range<u64>, etag: Option<&str>, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.read_blocking(key, range, etag, buf)?;
        count_read(buf.len());
        Ok(())
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let n = data.len() as u64;
        self.inner.put(key, data).await?;
        metrics::counter!("jitmux_store_writes_total").increment(1);
        metrics::counter!("jitmux_store_written_bytes_total").increment(n);
        Ok(())
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
