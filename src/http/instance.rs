//! Per-user program instances: the security and fairness boundary of the service.
//!
//! A [`UserInstance`] is created on a user's first request and holds everything serving that
//! user needs: their hot layouts and segment cache (bounded LRUs), their limits on concurrent
//! streams and downloads, and a storage handle scoped to their prefix (`users/{id}/`), which
//! cannot read another user's objects. It is evicted after `idle` without requests once no body
//! of it is still being sent, and re-created transparently (the bytes it serves are a function
//! of the catalog and the store only).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::User;
use crate::store::{ObjectStore, StoreError};
use crate::vfile::LayoutCache;

/// Per-user limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Concurrent quasi-streams and live tails.
    pub max_streams: usize,
    /// Concurrent full-file GET bodies.
    pub max_downloads: usize,
    /// Pieces (reads, transmuxes) made at once for all of the user's bodies together: a user
    /// with many parallel downloads shares this many workers, so others keep their share.
    pub max_workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_streams: 16, max_downloads: 16, max_workers: 2 }
    }
}

/// A read handle on the object store that only reaches keys under `users/{id}/`.
pub struct ScopedStore {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl ScopedStore {
    fn check(&self, key: &str) -> Result<(), StoreError> {
        if key.starts_with(&self.prefix) { Ok(()) } else { Err(StoreError::BadKey(key.to_string())) }
    }
}

#[async_trait]
impl ObjectStore for ScopedStore {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check(key)?;
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner.put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.check(key)?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.check(prefix)?;
        self.inner.list(prefix).await
    }
}

/// One user's program instance.
pub struct UserInstance {
    pub user: User,
    /// The user's objects only.
    pub store: Arc<ScopedStore>,
    /// The user's hot layouts and segment chunks.
    pub layouts: LayoutCache,
    pub limits: Limits,
    streams: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
    /// Workers making body pieces for this user (see [`Limits::max_workers`]).
    pub workers: Semaphore,
    last_used: Mutex<Instant>,
    /// When it was created, unix ms.
    pub created_ms: i64,
}

/// What a body in flight holds: released when the body is done or the client goes away.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _instance: Arc<UserInstance>,
}

/// Kinds of body with a per-user limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Download,
}

impl UserInstance {
    /// Takes a slot for a body of `kind`, or `None` when the user is at the limit.
    pub fn try_slot(self: &Arc<Self>, kind: Kind) -> Option<Slot> {
        let sem = match kind {
            Kind::Stream => &self.streams,
            Kind::Download => &self.downloads,
        };
        let permit = sem.clone().try_acquire_owned().ok()?;
        Some(Slot { _permit: permit, _instance: self.clone() })
    }

    /// Bodies of `kind` being sent now.
    pub fn active(&self, kind: Kind) -> usize {
        match kind {
            Kind::Stream => self.limits.max_streams - self.streams.available_permits(),
            Kind::Download => self.limits.max_downloads - self.downloads.available_permits(),
        }
    }

    /// Seconds since the last request.
    pub fn idle_s(&self) -> f64 {
        self.last_used.lock().unwrap().elapsed().as_secs_f64()
    }
}

/// The node's instances.
pub struct Instances {
    store: Arc<dyn ObjectStore>,
    map: Mutex<HashMap<i64, Arc<UserInstance>>>,
    pub limits: Limits,
    /// An instance unused this long (and with no body in flight) is evicted.
    pub idle: Duration,
    pub created: AtomicU64,
    pub evicted: AtomicU64,
}

impl Instances {
    pub fn new(store: Arc<dyn ObjectStore>, limits: Limits, idle: Duration) -> Self {
        Instances {
            store,
            map: Mutex::new(HashMap::new()),
            limits,
            idle,
            created: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// The user's instance, created on first use; marks it used now.
    pub fn get(&self, user: &User) -> Arc<UserInstance> {
        let mut map = self.map.lock().unwrap();
        let inst = map
            .entry(user.id)
            .or_insert_with(|| {
                self.created.fetch_add(1, Relaxed);
                Arc::new(UserInstance {
                    user: user.clone(),
                    store: Arc::new(ScopedStore { inner: self.store.clone(), prefix: format!("users/{}/", user.id) }),
                    layouts: LayoutCache::new(NonZeroUsize::new(8).unwrap()),
                    limits: self.limits,
                    streams: Arc::new(Semaphore::new(self.limits.max_streams)),
                    downloads: Arc::new(Semaphore::new(self.limits.max_downloads)),
                    workers: Semaphore::new(self.limits.max_workers.max(1)),
                    last_used: Mutex::new(Instant::now()),
                    created_ms: crate::catalog::now_ms(),
                })
            })
            .clone();
        *inst.last_used.lock().unwrap() = Instant::now();
        inst
    }

    /// Instances alive.
    pub fn alive(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    /// Evicts idle instances no body holds; returns how many.
    pub fn evict_idle(&self) -> usize {
        let mut map = self.map.lock().unwrap();
        let before = map.len();
        map.retain(|_, i| Arc::strong_count(i) > 1 || i.last_used.lock().unwrap().elapsed() < self.idle);
        let n = before - map.len();
        self.evicted.fetch_add(n as u64, Relaxed);
        n
    }

    /// Evicts idle instances forever (spawn once per node).
    pub async fn sweep(self: Arc<Self>) {
        let tick = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            tokio::time::sleep(tick).await;
            let n = self.evict_idle();
            if n > 0 {
                tracing::debug!("evicted {n} idle user instance(s)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User { id, name: format!("u{id}") }
    }

    #[tokio::test]
    async fn scoped_store_cannot_reach_other_users() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::LocalDirStore::new(dir.path()).unwrap());
        store.put("users/1/segments/a.ts", Bytes::from_static(b"one")).await.unwrap();
        store.put("users/2/segments/b.ts", Bytes::from_static(b"two")).await.unwrap();
        let inst = Instances::new(store, Limits::default(), Duration::from_secs(60));
        let one = inst.get(&user(1));
        assert_eq!(&one.store.get_range("users/1/segments/a.ts", 0..3).await.unwrap()[..], b"one");
        for key in ["users/2/segments/b.ts", "users/12/x", "users/1", "other/users/1/x"] {
            assert!(matches!(one.store.get_range(key, 0..1).await, Err(StoreError::BadKey(_))), "{key}");
        }
    }

    #[test]
    fn limits_and_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::LocalDirStore::new(dir.path()).unwrap());
        let limits = Limits { max_streams: 2, max_downloads: 1, max_workers: 1 };
        let inst = Instances::new(store, limits, Duration::ZERO);
        let a = inst.get(&user(1));
        let s1 = a.try_slot(Kind::Stream).unwrap();
        let _s2 = a.try_slot(Kind::Stream).unwrap();
        assert!(a.try_slot(Kind::Stream).is_none(), "third stream refused");
        assert_eq!(a.active(Kind::Stream), 2);
        let b = inst.get(&user(2));
        assert!(b.try_slot(Kind::Stream).is_some(), "another user is not affected");
        drop(s1);
        assert!(a.try_slot(Kind::Stream).is_some(), "a finished body frees its slot");
        // Held instances are not evicted; released ones are.
        drop(b);
        assert_eq!(inst.evict_idle(), 1);
        assert_eq!(inst.alive(), 1, "user 1's instance is still held by its slots");
        assert_eq!(inst.created.load(Relaxed), 2);
    }
}
