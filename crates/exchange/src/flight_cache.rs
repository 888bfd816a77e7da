//! A bounded cache with expiring entries in which each missing key is fetched by exactly one task
//! at a time: concurrent callers for that key wait for it and share its result (singleflight).
//! Used for the TokenReview and SubjectAccessReview caches.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::SystemTime;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use crate::clock::Clock;

/// How a lookup was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// From the cache.
    Hit,
    /// This caller started the fetch.
    Miss,
    /// This caller waited for a fetch another caller had started.
    Joined,
}

struct State<K, V> {
    entries: HashMap<K, (V, SystemTime)>,
    inflight: HashMap<K, Shared<BoxFuture<'static, V>>>,
}

pub(crate) struct FlightCache<K, V> {
    state: Mutex<State<K, V>>,
    capacity: usize,
    clock: Arc<dyn Clock>,
    /// What waiters get if the fetch task is cancelled (the runtime shutting down).
    aborted: fn() -> V,
}

impl<K, V> FlightCache<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(capacity: usize, clock: Arc<dyn Clock>, aborted: fn() -> V) -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                inflight: HashMap::new(),
            }),
            capacity: capacity.max(1),
            clock,
            aborted,
        }
    }

    /// The cached value for `key`, or the result of `fetch`, run once for all concurrent callers.
    /// `expiry` decides, from the fetched value and the time it arrived, until when it may be
    /// served from the cache (`None`: not cached).
    pub(crate) async fn get_or_fetch<F, E>(self: &Arc<Self>, key: K, fetch: F, expiry: E) -> (V, Lookup)
    where
        F: Future<Output = V> + Send + 'static,
        E: FnOnce(&V, SystemTime) -> Option<SystemTime> + Send + 'static,
    {
        let (flight, lookup) = {
            let mut state = self.state.lock();
            let now = self.clock.now();
            if let Some((value, expires)) = state.entries.get(&key) {
                if now < *expires {
                    return (value.clone(), Lookup::Hit);
                }
                state.entries.remove(&key);
            }
            if let Some(flight) = state.inflight.get(&key) {
                (flight.clone(), Lookup::Joined)
            } else {
                let this = Arc::clone(self);
                let k = key.clone();
                // Spawned, so the fetch finishes and fills the cache even if every waiter goes away.
                let task = tokio::spawn(async move {
                    let value = fetch.await;
                    let mut state = this.state.lock();
                    if let Some(expires) = expiry(&value, this.clock.now()) {
                        this.insert_locked(&mut state, k.clone(), value.clone(), expires);
                    }
                    state.inflight.remove(&k);
                    value
                });
                let aborted = self.aborted;
                let flight: BoxFuture<'static, V> = Box::pin(task.map(move |joined| match joined {
                    Ok(value) => value,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => aborted(),
                }));
                let flight = flight.shared();
                state.inflight.insert(key, flight.clone());
                (flight, Lookup::Miss)
            }
        };
        (flight.await, lookup)
    }

    fn insert_locked(&self, state: &mut State<K, V>, key: K, value: V, expires: SystemTime) {
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            let now = self.clock.now();
            state.entries.retain(|_, (_, e)| *e > now);
            if state.entries.len() >= self.capacity {
                let soonest = state
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    state.entries.remove(&k);
                }
            }
        }
        state.entries.insert(key, (value, expires));
    }

    /// Drops every entry whose key matches.
    pub(crate) fn remove_where(&self, mut matches: impl FnMut(&K) -> bool) {
        self.state.lock().entries.retain(|k, _| !matches(k));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch_and_entries_expire() {
        let clock = ManualClock::starting_now();
        let cache = Arc::new(FlightCache::<u32, u32>::new(10, Arc::new(clock.clone()), || 0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = Arc::clone(&cache);
            let calls = Arc::clone(&calls);
            let mut gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(
                        1,
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            let _ = gate.wait_for(|open| *open).await;
                            7
                        },
                        |_, now| Some(now + Duration::from_secs(60)),
                    )
                    .await
            }));
        }
        // Every caller has either started or joined the flight once the fetch count is 1 and all
        // tasks are parked; opening the gate then completes them all.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        let mut misses = 0;
        for t in tasks {
            let (v, lookup) = t.await.unwrap();
            assert_eq!(v, 7);
            misses += usize::from(lookup == Lookup::Miss);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(misses, 1);

        let (v, lookup) = cache.get_or_fetch(1, async { 8 }, |_, _| None).await;
        assert_eq!((v, lookup), (7, Lookup::Hit));
        clock.advance(Duration::from_secs(60));
        let (v, lookup) = cache.get_or_fetch(1, async { 8 }, |_, _| None).await;
        assert_eq!((v, lookup), (8, Lookup::Miss));
        assert_eq!(cache.len(), 0, "a value with no expiry is not cached");
    }

    #[tokio::test]
    async fn capacity_evicts_the_soonest_to_expire() {
        let clock = ManualClock::starting_now();
        let cache = Arc::new(FlightCache::<u32, u32>::new(2, Arc::new(clock.clone()), || 0));
        for (k, secs) in [(1, 30), (2, 10), (3, 20)] {
            cache
                .get_or_fetch(k, async move { k }, move |_, now| {
                    Some(now + Duration::from_secs(secs))
                })
                .await;
        }
        assert_eq!(cache.len(), 2);
        let (_, l1) = cache.get_or_fetch(1, async { 0 }, |_, _| None).await;
        let (_, l3) = cache.get_or_fetch(3, async { 0 }, |_, _| None).await;
        assert_eq!((l1, l3), (Lookup::Hit, Lookup::Hit));
        cache.remove_where(|k| *k == 1);
        assert_eq!(cache.len(), 1);
    }
}
