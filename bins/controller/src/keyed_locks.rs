//! One async mutex per key: serializes the writes that concern one identity (its issuer
//! documents, its generated RBAC) while other identities proceed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

/// Async mutexes by key, created on first use.
#[derive(Debug)]
pub struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    /// Waits for exclusive use of `key`; it lasts as long as the guard.
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let mutex = self.locks.lock().entry(key.clone()).or_default().clone();
        mutex.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_is_exclusive_and_others_are_not() {
        let locks = KeyedLocks::default();
        let held = locks.lock(&"a").await;
        assert!(
            tokio::time::timeout(Duration::from_millis(20), locks.lock(&"a"))
                .await
                .is_err()
        );
        let _other = locks.lock(&"b").await;
        drop(held);
        let _again = locks.lock(&"a").await;
    }
}
