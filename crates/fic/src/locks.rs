//! One async mutex per identity, held by writers; entries disappear when nobody holds or waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

#[derive(Debug, Default)]
pub(crate) struct LockMap {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    locks: HashMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// Size after the last sweep of dead entries; the next sweep happens at twice that.
    swept_at: usize,
}

impl LockMap {
    /// Waits for exclusive use of `key` (compared case-insensitively).
    pub(crate) async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut inner = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = key.to_ascii_lowercase();
            let existing = inner.locks.get(&key).and_then(Weak::upgrade);
            match existing {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    inner.locks.insert(key, Arc::downgrade(&m));
                    if inner.locks.len() > (2 * inner.swept_at).max(16) {
                        inner.locks.retain(|_, w| w.strong_count() > 0);
                        inner.swept_at = inner.locks.len();
                    }
                    m
                }
            }
        };
        mutex.lock_owned().await
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.locks.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_is_exclusive_any_case() {
        let map = Arc::new(LockMap::default());
        let guard = map.lock("/Subscriptions/S/x").await;
        let other = map.clone();
        let waiter = tokio::spawn(async move { other.lock("/subscriptions/s/X").await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(guard);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn entries_do_not_accumulate() {
        let map = LockMap::default();
        for i in 0..1000 {
            let _g = map.lock(&format!("id-{i}")).await;
        }
        assert!(map.len() <= 33, "{}", map.len());
        let held: Vec<_> = hold(&map, 40).await;
        assert!(map.len() >= 40);
        drop(held);
    }

    async fn hold(map: &LockMap, n: usize) -> Vec<OwnedMutexGuard<()>> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(map.lock(&format!("held-{i}")).await);
        }
        out
    }
}
