//! Per-user program instances: the security and fairness boundary of the service.
//!
//! A [`UserInstance`] is created on a user's first request and holds everything serving that
//! user needs: their [`UserMedia`] (a store handle that cannot read another user's objects,
//! their layout and segment caches, their share of workers) and their limits on concurrent
//! streams and downloads. It is evicted after `idle` without requests once no body of it is
//! still being sent, and re-created transparently (the bytes it serves are a function of the
//! catalog and the store only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::User;
use crate::media::UserMedia;
use crate::model::UserId;
use crate::store::ObjectStore;

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

/// One user's program instance.
pub struct UserInstance {
    pub user: User,
    /// The user's media: scoped store, caches, workers.
    pub media: Arc<UserMedia>,
    pub limits: Limits,
    streams: Arc<Semaphore>,
    downloads: Arc<Semaphore>,
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
        self.last_used.lock().unwrap_or_else(PoisonError::into_inner).elapsed().as_secs_f64()
    }
}

/// The node's instances.
pub struct Instances {
    store: Arc<dyn ObjectStore>,
    map: Mutex<HashMap<UserId, Arc<UserInstance>>>,
    pub limits: Limits,
    /// An instance unused this long (and with no body in flight) is evicted.
    pub idle: Duration,
}

impl Instances {
    pub fn new(store: Arc<dyn ObjectStore>, limits: Limits, idle: Duration) -> Self {
        Instances { store, map: Mutex::new(HashMap::new()), limits, idle }
    }

    /// The user's instance, created on first use; marks it used now.
    pub fn get(&self, user: &User) -> Arc<UserInstance> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let inst = map
            .entry(user.id)
            .or_insert_with(|| {
                metrics::counter!("jitmux_instances_created_total").increment(1);
                Arc::new(UserInstance {
                    user: user.clone(),
                    media: Arc::new(UserMedia::new(self.store.clone(), user.id, self.limits.max_workers)),
                    limits: self.limits,
                    streams: Arc::new(Semaphore::new(self.limits.max_streams)),
                    downloads: Arc::new(Semaphore::new(self.limits.max_downloads)),
                    last_used: Mutex::new(Instant::now()),
                    created_ms: crate::model::now_ms(),
                })
            })
            .clone();
        metrics::gauge!("jitmux_instances_alive").set(map.len() as f64);
        *inst.last_used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        inst
    }

    /// Instances alive.
    pub fn alive(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Evicts idle instances no body holds; returns how many.
    pub fn evict_idle(&self) -> usize {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        map.retain(|_, i| {
            Arc::strong_count(i) > 1 || i.last_used.lock().unwrap_or_else(PoisonError::into_inner).elapsed() < self.idle
        });
        let n = before - map.len();
        metrics::counter!("jitmux_instances_evicted_total").increment(n as u64);
        metrics::gauge!("jitmux_instances_alive").set(map.len() as f64);
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
        User { id: UserId(id), name: format!("u{id}") }
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
    }

    #[test]
    fn a_users_media_reaches_only_their_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(crate::store::LocalDirStore::new(dir.path()).unwrap());
        let inst = Instances::new(store, Limits::default(), Duration::from_secs(60));
        let one = inst.get(&user(1));
        let err = futures::executor::block_on(one.media.store.head("users/2/segments/x.ts"));
        assert!(matches!(err, Err(crate::store::StoreError::BadKey(_))));
    }
}
