//! Per-identity memo of ARM answers, shared by all reconciles.
//!
//! Many bindings may name one identity, and every reconcile of each of them needs the identity's
//! ids and its FIC. Asking ARM per reconcile spends ARM's read quota per binding and per status
//! write; a [`Memo`] asks once per identity and shares the answer:
//! - concurrent lookups of one key make one request; the others wait and take its answer;
//! - a success is reused for `ttl`, so drift (a deleted FIC, a re-created identity) is seen at
//!   most `ttl` late;
//! - a failure is reused for `failure_ttl`, so the reconciles of one identity's bindings (and
//!   the reconcile a status write triggers) do not hammer a throttling or failing ARM.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Whether a lookup asked ARM or took an answer another lookup got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// This lookup made the request.
    Fetched,
    /// The answer of an earlier or concurrent request.
    Shared,
}

/// Reuse periods of a [`Memo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoTtl {
    /// How long a success is reused (zero: only by lookups that were waiting for it).
    pub success: Duration,
    /// How long a failure is reused.
    pub failure: Duration,
}

struct Answer<V> {
    at: Instant,
    ok: bool,
    value: V,
}

struct Slot<V> {
    fetches: AtomicU64,
    answer: tokio::sync::Mutex<Option<Answer<V>>>,
}

impl<V> Default for Slot<V> {
    fn default() -> Self {
        Self {
            fetches: AtomicU64::new(0),
            answer: tokio::sync::Mutex::new(None),
        }
    }
}

/// Shared, single-flight answers per key, reused for a while.
pub struct Memo<K, V> {
    slots: Mutex<HashMap<K, Arc<Slot<V>>>>,
    ttl: MemoTtl,
}

impl<K, V> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("keys", &self.slots.lock().len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    /// An empty memo.
    pub fn new(ttl: MemoTtl) -> Self {
        Self {
            slots: Mutex::default(),
            ttl,
        }
    }

    /// The answer for `key`: a fresh enough earlier one, the one a concurrent lookup is getting,
    /// or the result of `fetch`. `ok` tells successes from failures.
    pub async fn get<F, Fut>(&self, key: &K, ok: impl FnOnce(&V) -> bool, fetch: F) -> (V, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let slot = self.slots.lock().entry(key.clone()).or_default().clone();
        let asked = slot.fetches.load(Ordering::Acquire);
        let mut answer = slot.answer.lock().await;
        if let Some(a) = answer.as_ref() {
            let fetched_while_waiting = slot.fetches.load(Ordering::Acquire) != asked;
            let reuse_for = if a.ok { self.ttl.success } else { self.ttl.failure };
            if fetched_while_waiting || a.at.elapsed() < reuse_for {
                return (a.value.clone(), Source::Shared);
            }
        }
        let value = fetch().await;
        *answer = Some(Answer {
            at: Instant::now(),
            ok: ok(&value),
            value: value.clone(),
        });
        slot.fetches.fetch_add(1, Ordering::AcqRel);
        (value, Source::Fetched)
    }

    /// Forgets the answer for `key` (the next lookup asks again).
    pub fn forget(&self, key: &K) {
        self.slots.lock().remove(key);
    }

    /// Forgets the answers for every key `matches` selects.
    pub fn forget_where(&self, mut matches: impl FnMut(&K) -> bool) {
        self.slots.lock().retain(|k, _| !matches(k));
    }

    /// How many keys have a slot.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Whether no key has a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn memo(success: u64, failure: u64) -> Memo<&'static str, Result<u32, u32>> {
        Memo::new(MemoTtl {
            success: Duration::from_secs(success),
            failure: Duration::from_secs(failure),
        })
    }

    async fn lookup(
        m: &Memo<&'static str, Result<u32, u32>>,
        calls: &AtomicUsize,
        answer: Result<u32, u32>,
    ) -> (Result<u32, u32>, Source) {
        m.get(&"id", Result::is_ok, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            answer
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn successes_are_reused_until_they_expire() {
        let m = memo(60, 1);
        let calls = AtomicUsize::new(0);
        assert_eq!(lookup(&m, &calls, Ok(1)).await, (Ok(1), Source::Fetched));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(lookup(&m, &calls, Ok(2)).await, (Ok(1), Source::Shared));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lookup(&m, &calls, Ok(3)).await, (Ok(3), Source::Fetched));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_reused_for_their_own_period() {
        let m = memo(60, 2);
        let calls = AtomicUsize::new(0);
        assert_eq!(lookup(&m, &calls, Err(429)).await, (Err(429), Source::Fetched));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(lookup(&m, &calls, Ok(1)).await, (Err(429), Source::Shared));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(lookup(&m, &calls, Ok(1)).await, (Ok(1), Source::Fetched));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_make_one_request_even_without_reuse() {
        let m = memo(0, 0);
        let calls = AtomicUsize::new(0);
        let answers = futures::future::join_all((0..10u32).map(|i| lookup(&m, &calls, Ok(i)))).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(answers.iter().filter(|(_, s)| *s == Source::Fetched).count(), 1);
        assert!(answers.iter().all(|(v, _)| *v == Ok(0)));
        // With nothing to reuse, the next lookup asks again.
        assert_eq!(lookup(&m, &calls, Ok(7)).await, (Ok(7), Source::Fetched));
    }

    #[tokio::test(start_paused = true)]
    async fn forget_drops_the_answer() {
        let m = memo(60, 60);
        let calls = AtomicUsize::new(0);
        assert_eq!(lookup(&m, &calls, Ok(1)).await.1, Source::Fetched);
        m.forget(&"id");
        assert!(m.is_empty());
        assert_eq!(lookup(&m, &calls, Ok(2)).await, (Ok(2), Source::Fetched));
    }
}
