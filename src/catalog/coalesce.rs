//! Single flight: concurrent identical catalog reads share one query.

use super::Result;

/// Concurrent identical reads share one query ("single flight"): when a thousand viewers open
/// the same live link at once, the token, camera and recording are each read once, not a
/// thousand times through a pool of a few connections. Nothing is cached past the query: a
/// read that starts after another finished queries again, so a revoked token or a new segment
/// is seen as soon as without sharing.
pub(super) struct Coalesce<K, V> {
    inflight: std::sync::Mutex<std::collections::HashMap<K, std::sync::Arc<tokio::sync::OnceCell<V>>>>,
}

impl<K, V> Default for Coalesce<K, V> {
    fn default() -> Self {
        Coalesce { inflight: Default::default() }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Coalesce<K, V> {
    /// `query()`'s result, or that of the same query already in flight for `key`.
    pub(super) async fn run<F: std::future::Future<Output = Result<V>>>(
        &self,
        key: K,
        query: impl FnOnce() -> F,
    ) -> Result<V> {
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let out = cell.get_or_try_init(query).await.cloned();
        let mut inflight = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inflight.get(&key).is_some_and(|c| std::sync::Arc::ptr_eq(c, &cell)) {
            inflight.remove(&key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogError;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_reads_share_one_query_and_later_reads_query_again() {
        let c: Coalesce<&str, u32> = Default::default();
        let queries = AtomicUsize::new(0);
        let query = || async {
            queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(7)
        };
        let all = futures::future::join_all((0..100).map(|_| c.run("k", query))).await;
        assert!(all.iter().all(|r| matches!(r, Ok(7))));
        assert_eq!(queries.load(Ordering::SeqCst), 1, "100 concurrent reads, one query");
        c.run("k", query).await.unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 2, "a later read queries again");
        assert!(c.inflight.lock().unwrap().is_empty(), "nothing kept after the query");
        let failing = || async { Err(CatalogError::Conflict("down".into())) };
        assert!(c.run("k", failing).await.is_err());
        assert_eq!(c.run("k", query).await.unwrap(), 7, "an error is not kept either");
    }
}
