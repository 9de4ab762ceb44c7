//! The node-wide cache of made bytes: the output chunks of segments (transmuxed MPEG-TS, sliced
//! fMP4) and the heads of files, bounded in bytes, least recently used first out.
//!
//! Keys are `(object key or URL, ETag)`: jitmux's own keys are per user and content-addressed;
//! an archive indexed in place is keyed by its URL and the ETag it was indexed with, so a
//! replaced object can never be served from a stale entry. Whoever asks must have checked that
//! the key is within their reach first (the cache itself knows no users).
//!
//! Concurrent requests for the same entry collapse: the first makes it (one store read), the
//! others wait for that result. This is what makes an origin in front of object storage cheap:
//! any number of viewers of the same segment cost one GET per node.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use lru::LruCache;

use super::MediaError;

/// Output chunks of one segment, `[track][chunk]` (a head is `[[head]]`).
pub(super) type SegChunks = Arc<Vec<Vec<Bytes>>>;

/// Cache key: object key or archive URL, and the ETag it must have.
type Key = (String, Option<String>);

struct Slot {
    cell: tokio::sync::OnceCell<SegChunks>,
    /// Bytes counted for this entry (0 until made).
    len_bytes: AtomicU64,
}

struct Inner {
    map: LruCache<Key, Arc<Slot>>,
    bytes: u64,
}

/// The node's cache of made bytes (see the module docs).
pub struct ChunkCache {
    inner: Mutex<Inner>,
    max_bytes: AtomicU64,
}

/// The default bound of the node's cache, bytes.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// The node's cache (one per process).
pub fn node_cache() -> &'static ChunkCache {
    static CACHE: OnceLock<ChunkCache> = OnceLock::new();
    CACHE.get_or_init(|| ChunkCache::new(DEFAULT_CACHE_BYTES))
}

impl ChunkCache {
    /// An empty cache holding at most about `max_bytes` (an entry larger than that is made and
    /// handed out, then dropped).
    pub fn new(max_bytes: u64) -> ChunkCache {
        ChunkCache {
            inner: Mutex::new(Inner { map: LruCache::unbounded(), bytes: 0 }),
            max_bytes: AtomicU64::new(max_bytes),
        }
    }

    /// Sets the bound (`serve --cache-bytes`), evicting what no longer fits.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        self.evict(&mut inner);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).bytes
    }

    /// Whether `key` is cached or being made.
    pub(super) fn contains(&self, key: &str, etag: Option<&str>) -> bool {
        let k = (key.to_string(), etag.map(str::to_string));
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).map.contains(&k)
    }

    /// The entry for `key`/`etag`, made by `make` on a miss; concurrent callers share one
    /// `make`. A failed `make` caches nothing (the next caller tries again).
    pub(super) async fn get_or_make<F, Fut>(
        &self,
        key: &str,
        etag: Option<&str>,
        make: F,
    ) -> Result<SegChunks, MediaError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SegChunks, MediaError>>,
    {
        let k: Key = (key.to_string(), etag.map(str::to_string));
        let slot = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            match inner.map.get(&k) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(Slot { cell: tokio::sync::OnceCell::new(), len_bytes: AtomicU64::new(0) });
                    inner.map.put(k.clone(), s.clone());
                    s
                }
            }
        };
        if let Some(v) = slot.cell.get() {
            metrics::counter!("jitmux_chunk_cache_hits_total").increment(1);
            return Ok(v.clone());
        }
        let mut made = false;
        let v = slot
            .cell
            .get_or_try_init(|| {
                made = true;
                make()
            })
            .await?
            .clone();
        if made {
            metrics::counter!("jitmux_chunk_cache_misses_total").increment(1);
            let n: u64 = v.iter().flatten().map(|b| b.len() as u64).sum();
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let current = inner.map.peek(&k).is_some_and(|s| Arc::ptr_eq(s, &slot));
            if current && slot.len_bytes.swap(n, Ordering::Relaxed) == 0 {
                inner.bytes += n;
                self.evict(&mut inner);
            }
        } else {
            // Waited for another caller's read: a collapsed request.
            metrics::counter!("jitmux_chunk_cache_hits_total").increment(1);
        }
        Ok(v)
    }

    fn evict(&self, inner: &mut Inner) {
        let max = self.max_bytes.load(Ordering::Relaxed);
        while inner.bytes > max {
            let Some((_, s)) = inner.map.pop_lru() else { break };
            inner.bytes -= s.len_bytes.load(Ordering::Relaxed).min(inner.bytes);
            metrics::counter!("jitmux_chunk_cache_evictions_total").increment(1);
        }
        // Entries never made (their make failed) are dropped when they reach the LRU end.
        if inner.map.len() > 1 << 16
            && let Some(n) = NonZeroUsize::new(1 << 16)
        {
            inner.map.resize(n);
        }
        metrics::gauge!("jitmux_chunk_cache_bytes").set(inner.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize) -> SegChunks {
        Arc::new(vec![vec![Bytes::from(vec![0u8; n])]])
    }

    #[tokio::test]
    async fn collapses_and_bounds_bytes() {
        let c = Arc::new(ChunkCache::new(250));
        let makes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, makes) = (c.clone(), makes.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_make("a", Some("e1"), || async {
                    makes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok(chunks(100))
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap()[0][0].len(), 100);
        }
        assert_eq!(makes.load(Ordering::SeqCst), 1, "20 concurrent callers, one make");
        assert_eq!(c.bytes(), 100);
        // Another ETag is another entry (an object replaced since it was indexed).
        c.get_or_make("a", Some("e2"), || async { Ok(chunks(100)) }).await.unwrap();
        assert_eq!(c.bytes(), 200);
        // A third entry passes the bound: the least recently used goes.
        c.get_or_make("b", None, || async { Ok(chunks(100)) }).await.unwrap();
        assert_eq!(c.bytes(), 200);
        assert!(!c.contains("a", Some("e1")) && c.contains("a", Some("e2")) && c.contains("b", None));
        // A failed make caches nothing.
        let e = c.get_or_make("x", None, || async { Err(MediaError::Task("boom".into())) }).await;
        assert!(e.is_err());
        let again = c.get_or_make("x", None, || async { Ok(chunks(1)) }).await.unwrap();
        assert_eq!(again[0][0].len(), 1);
    }
}
