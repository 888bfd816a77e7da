//! The Entra token cache: one entry per (client id, normalized scope), at most one upstream call
//! per entry at a time, refreshed ahead of expiry, served through upstream outages.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use http::StatusCode;
use idbind_model::ClientId;
use parking_lot::Mutex;

use crate::clock::{Clock, seconds_until};
use crate::entra::EntraToken;
use crate::{ExchangeError, Metrics, Rejection, TokenResponse};

/// Settings of the [`TokenCache`].
#[derive(Clone, Debug)]
pub struct TokenCacheConfig {
    /// Most entries (default 10,000); the least recently used entry goes first.
    pub capacity: usize,
    /// Refresh point as a fraction of the token's lifetime, drawn uniformly from this range per
    /// token so that tokens fetched together are not refreshed together (default 0.8–0.9).
    pub refresh_fraction: (f64, f64),
    /// A cached token with less than this left (and past its refresh point) is fetched anew
    /// before answering (default 2 min); if Entra is unavailable it is still served until it
    /// expires.
    pub min_remaining: Duration,
    /// After a failed background refresh, wait this long before trying again (default 30 s).
    pub refresh_retry: Duration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            refresh_fraction: (0.8, 0.9),
            min_remaining: Duration::from_secs(120),
            refresh_retry: Duration::from_secs(30),
        }
    }
}

/// A token cache key: client id and normalized scope (see [`normalize_scope`](crate::normalize_scope)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The identity.
    pub client_id: ClientId,
    /// The normalized scope.
    pub scope: String,
}

/// A token with absolute times on the cache's clock.
#[derive(Clone)]
struct Cached {
    access_token: String,
    /// Served without asking upstream until then.
    fresh_until: SystemTime,
    expires_at: SystemTime,
    ext_expires_at: SystemTime,
    refresh_at: SystemTime,
}

impl Cached {
    fn from_entra(
        token: &EntraToken,
        now: SystemTime,
        (lo, hi): (f64, f64),
        min_remaining: Duration,
    ) -> Self {
        let lifetime = Duration::from_secs(token.expires_in);
        let fraction = if hi > lo { rand::random_range(lo..hi) } else { lo };
        let mut refresh_at = now + lifetime.mul_f64(fraction.clamp(0.0, 1.0));
        if let Some(hint) = token.refresh_in {
            refresh_at = refresh_at.min(now + Duration::from_secs(hint));
        }
        let expires_at = now + lifetime;
        // A token shorter-lived than `min_remaining` is still served until its refresh point.
        let fresh_until = expires_at
            .checked_sub(min_remaining)
            .map_or(refresh_at, |t| t.max(refresh_at));
        Self {
            access_token: token.access_token.clone(),
            fresh_until,
            expires_at,
            ext_expires_at: now + Duration::from_secs(token.ext_expires_in.max(token.expires_in)),
            refresh_at,
        }
    }

    fn response(&self, now: SystemTime) -> TokenResponse {
        TokenResponse {
            token_type: "Bearer",
            expires_in: seconds_until(now, self.expires_at),
            ext_expires_in: seconds_until(now, self.ext_expires_at),
            access_token: self.access_token.clone(),
            refresh_in: (self.refresh_at > now).then(|| seconds_until(now, self.refresh_at).max(1)),
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<Arc<Cached>, ExchangeError>>>;

#[derive(Default)]
struct Slot {
    cached: Option<Arc<Cached>>,
    inflight: Option<Flight>,
    /// No background refresh before this time (after a failed one).
    refresh_not_before: Option<SystemTime>,
    /// Position in the LRU order.
    tick: u64,
}

#[derive(Default)]
struct State {
    slots: HashMap<CacheKey, Slot>,
    lru: BTreeMap<u64, CacheKey>,
    tick: u64,
    /// Bumped when a client id is invalidated, so fetches started before do not refill it.
    epochs: HashMap<ClientId, u64>,
}

impl State {
    fn touch(&mut self, key: &CacheKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(key) {
            self.lru.remove(&slot.tick);
            slot.tick = tick;
            self.lru.insert(tick, key.clone());
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.slots.remove(key) {
            self.lru.remove(&slot.tick);
        }
    }

    fn epoch(&self, client_id: &ClientId) -> u64 {
        self.epochs.get(client_id).copied().unwrap_or(0)
    }
}

/// How [`TokenCache::get`] answered (for metrics and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLookup {
    /// From the cache.
    Hit,
    /// From the cache, and a background refresh was started.
    HitRefreshing,
    /// This caller started the upstream call.
    Miss,
    /// This caller waited for another caller's upstream call.
    Joined,
    /// Upstream failed transiently; a cached token that has not expired was served.
    Stale,
}

impl TokenLookup {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::HitRefreshing => "refresh",
            Self::Miss => "miss",
            Self::Joined => "joined",
            Self::Stale => "stale",
        }
    }
}

/// The token cache. See the crate docs for its guarantees.
pub struct TokenCache {
    state: Arc<Mutex<State>>,
    config: TokenCacheConfig,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl TokenCache {
    /// An empty cache.
    pub fn new(config: TokenCacheConfig, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            config,
            clock,
            metrics,
        }
    }

    /// The token for `key`: cached, or fetched by `fetch` with one call per key at a time.
    pub async fn get<F, Fut>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> (Result<TokenResponse, ExchangeError>, TokenLookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<EntraToken, ExchangeError>> + Send + 'static,
    {
        let (flight, lookup) = {
            let mut state = self.state.lock();
            let now = self.clock.now();
            let mut fetch = Some(fetch);
            if let Some(slot) = state.slots.get(&key)
                && let Some(cached) = &slot.cached
                && now < cached.fresh_until
            {
                let cached = Arc::clone(cached);
                let refresh = now >= cached.refresh_at
                    && slot.inflight.is_none()
                    && slot.refresh_not_before.is_none_or(|t| now >= t);
                state.touch(&key);
                let mut lookup = TokenLookup::Hit;
                if refresh && let Some(fetch) = fetch.take() {
                    tracing::debug!(client_id = %key.client_id, scope = %key.scope, "refreshing a cached token ahead of expiry");
                    // Waiters join through the slot; this caller answers from the cache.
                    let _background = self.start_flight(&mut state, &key, fetch());
                    lookup = TokenLookup::HitRefreshing;
                }
                return (Ok(cached.response(now)), lookup);
            }
            match state.slots.get(&key).and_then(|s| s.inflight.clone()) {
                Some(flight) => (flight, TokenLookup::Joined),
                None => match fetch.take() {
                    Some(fetch) => (self.start_flight(&mut state, &key, fetch()), TokenLookup::Miss),
                    None => {
                        return (
                            Err(ExchangeError::internal("token cache: fetch already used")),
                            TokenLookup::Miss,
                        );
                    }
                },
            }
        };
        match flight.await {
            Ok(cached) => (Ok(cached.response(self.clock.now())), lookup),
            Err(e) => {
                let transient =
                    e.rejection() == Rejection::Unavailable || e.status() == StatusCode::TOO_MANY_REQUESTS;
                if transient {
                    let state = self.state.lock();
                    let now = self.clock.now();
                    if let Some(cached) = state.slots.get(&key).and_then(|s| s.cached.as_ref())
                        && cached.expires_at > now
                    {
                        tracing::info!(client_id = %key.client_id, scope = %key.scope, error = %e, "Entra unavailable; serving the cached token");
                        return (Ok(cached.response(now)), TokenLookup::Stale);
                    }
                }
                (Err(e), lookup)
            }
        }
    }

    fn start_flight<Fut>(&self, state: &mut State, key: &CacheKey, fetch: Fut) -> Flight
    where
        Fut: Future<Output = Result<EntraToken, ExchangeError>> + Send + 'static,
    {
        let epoch = state.epoch(&key.client_id);
        let shared_state = Arc::clone(&self.state);
        let clock = Arc::clone(&self.clock);
        let config = self.config.clone();
        let metrics = self.metrics.clone();
        let k = key.clone();
        // Spawned, so the upstream call completes and fills the cache even if every waiter goes.
        let task = tokio::spawn(async move {
            let result = fetch.await;
            let now = clock.now();
            let mut state = shared_state.lock();
            let current = state.epoch(&k.client_id) == epoch;
            let outcome = match result {
                Ok(token) => {
                    let cached = Arc::new(Cached::from_entra(
                        &token,
                        now,
                        config.refresh_fraction,
                        config.min_remaining,
                    ));
                    if current && let Some(slot) = state.slots.get_mut(&k) {
                        slot.cached = Some(Arc::clone(&cached));
                        slot.refresh_not_before = None;
                    }
                    Ok(cached)
                }
                Err(e) => {
                    if let Some(slot) = state.slots.get_mut(&k) {
                        slot.refresh_not_before = Some(now + config.refresh_retry);
                    }
                    Err(e)
                }
            };
            if let Some(slot) = state.slots.get_mut(&k) {
                slot.inflight = None;
                if slot.cached.is_none() {
                    state.remove(&k);
                }
            }
            metrics.token_cache_entries.set(gauge_value(state.slots.len()));
            outcome
        });
        let flight: BoxFuture<'static, Result<Arc<Cached>, ExchangeError>> =
            Box::pin(task.map(|joined| match joined {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(ExchangeError::unavailable("shutting down", None)),
            }));
        let flight = flight.shared();
        if !state.slots.contains_key(key) {
            while state.slots.len() >= self.config.capacity.max(1) {
                let Some((_, oldest)) = state.lru.pop_first() else {
                    break;
                };
                state.slots.remove(&oldest);
            }
            state.slots.insert(key.clone(), Slot::default());
        }
        if let Some(slot) = state.slots.get_mut(key) {
            slot.inflight = Some(flight.clone());
        }
        state.touch(key);
        self.metrics
            .token_cache_entries
            .set(gauge_value(state.slots.len()));
        flight
    }

    /// Drops every entry of `client_id`; fetches in progress for it will not be cached.
    pub fn invalidate(&self, client_id: &ClientId) {
        let mut state = self.state.lock();
        *state.epochs.entry(*client_id).or_default() += 1;
        let keys: Vec<CacheKey> = state
            .slots
            .keys()
            .filter(|k| k.client_id == *client_id)
            .cloned()
            .collect();
        for k in &keys {
            state.remove(k);
        }
        self.metrics
            .token_cache_entries
            .set(gauge_value(state.slots.len()));
        if !keys.is_empty() {
            tracing::info!(%client_id, entries = keys.len(), "dropped cached tokens");
        }
    }

    /// Entries in the cache (including fetches in progress).
    pub fn len(&self) -> usize {
        self.state.lock().slots.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries of `client_id` holding a token.
    pub fn cached_for(&self, client_id: &ClientId) -> usize {
        self.state
            .lock()
            .slots
            .iter()
            .filter(|(k, s)| k.client_id == *client_id && s.cached.is_some())
            .count()
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::clock::ManualClock;

    fn key(scope: &str) -> CacheKey {
        CacheKey {
            client_id: ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
            scope: scope.into(),
        }
    }

    fn token(n: usize, expires_in: u64) -> EntraToken {
        EntraToken {
            access_token: format!("t{n}"),
            expires_in,
            ext_expires_in: expires_in,
            refresh_in: None,
        }
    }

    struct Upstream {
        calls: Arc<AtomicUsize>,
        down: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Upstream {
        fn new() -> Self {
            Self {
                calls: Arc::default(),
                down: Arc::default(),
            }
        }
        fn fetch(
            &self,
            expires_in: u64,
        ) -> impl Future<Output = Result<EntraToken, ExchangeError>> + Send + 'static {
            let calls = Arc::clone(&self.calls);
            let down = self.down.load(Ordering::SeqCst);
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if down {
                    Err(ExchangeError::unavailable("down", None))
                } else {
                    Ok(token(n, expires_in))
                }
            }
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn cache(clock: &ManualClock, config: TokenCacheConfig) -> TokenCache {
        TokenCache::new(config, Arc::new(clock.clone()), Metrics::default())
    }

    async fn settle(cache: &TokenCache) {
        // Let a spawned background refresh finish: it holds no slot once done.
        for _ in 0..1000 {
            if cache.state.lock().slots.values().all(|s| s.inflight.is_none()) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("background refresh did not finish");
    }

    #[tokio::test]
    async fn remaining_lifetime_and_refresh_ahead_of_expiry() {
        let clock = ManualClock::starting_now();
        let cache = cache(
            &clock,
            TokenCacheConfig {
                refresh_fraction: (0.8, 0.8),
                ..Default::default()
            },
        );
        let up = Upstream::new();
        let (r, l) = cache.get(key("s"), || up.fetch(1000)).await;
        let r = r.unwrap();
        assert_eq!(
            (r.access_token.as_str(), r.expires_in, r.refresh_in, l),
            ("t1", 1000, Some(800), TokenLookup::Miss)
        );

        clock.advance(Duration::from_secs(300));
        let (r, l) = cache.get(key("s"), || up.fetch(1000)).await;
        let r = r.unwrap();
        assert_eq!(
            (r.access_token.as_str(), r.expires_in, r.refresh_in, l),
            ("t1", 700, Some(500), TokenLookup::Hit)
        );

        clock.advance(Duration::from_secs(550)); // 850 s: past the refresh point
        let (r, l) = cache.get(key("s"), || up.fetch(1000)).await;
        let r = r.unwrap();
        assert_eq!(
            (r.access_token.as_str(), r.expires_in, r.refresh_in, l),
            ("t1", 150, None, TokenLookup::HitRefreshing)
        );
        settle(&cache).await;
        let (r, l) = cache.get(key("s"), || up.fetch(1000)).await;
        assert_eq!((r.unwrap().access_token.as_str(), l), ("t2", TokenLookup::Hit));
        assert_eq!(up.calls(), 2);
    }

    #[tokio::test]
    async fn outage_serves_cached_tokens_until_they_expire() {
        let clock = ManualClock::starting_now();
        let cache = cache(
            &clock,
            TokenCacheConfig {
                refresh_fraction: (0.8, 0.8),
                ..Default::default()
            },
        );
        let up = Upstream::new();
        cache.get(key("a"), || up.fetch(1000)).await.0.unwrap();
        up.down.store(true, Ordering::SeqCst);

        // An uncached scope fails with 503.
        let (r, _) = cache.get(key("b"), || up.fetch(1000)).await;
        assert_eq!(r.unwrap_err().status(), StatusCode::SERVICE_UNAVAILABLE);

        // Past the refresh point: the background refresh fails, the token is still served, and
        // the next refresh waits for `refresh_retry`.
        clock.advance(Duration::from_secs(850));
        let (_, l) = cache.get(key("a"), || up.fetch(1000)).await;
        assert_eq!(l, TokenLookup::HitRefreshing);
        settle(&cache).await;
        let calls = up.calls();
        let (r, l) = cache.get(key("a"), || up.fetch(1000)).await;
        assert_eq!((r.unwrap().access_token.as_str(), l), ("t1", TokenLookup::Hit));
        assert_eq!(up.calls(), calls, "no refresh before refresh_retry");

        // Within min_remaining of expiry the cache asks upstream first, then serves the old token.
        clock.advance(Duration::from_secs(60)); // 910 s: 90 s left < 120 s
        let (r, l) = cache.get(key("a"), || up.fetch(1000)).await;
        let r = r.unwrap();
        assert_eq!(
            (r.access_token.as_str(), r.expires_in, l),
            ("t1", 90, TokenLookup::Stale)
        );

        // Expired: 503.
        clock.advance(Duration::from_secs(90));
        let (r, _) = cache.get(key("a"), || up.fetch(1000)).await;
        assert_eq!(r.unwrap_err().error_code(), "temporarily_unavailable");

        // Back up: fetched anew.
        up.down.store(false, Ordering::SeqCst);
        let (r, l) = cache.get(key("a"), || up.fetch(1000)).await;
        assert_eq!((r.unwrap().expires_in, l), (1000, TokenLookup::Miss));
    }

    #[tokio::test]
    async fn short_lived_tokens_are_served_until_their_refresh_point() {
        let clock = ManualClock::starting_now();
        let cache = cache(
            &clock,
            TokenCacheConfig {
                refresh_fraction: (0.5, 0.5),
                ..Default::default()
            },
        );
        let up = Upstream::new();
        cache.get(key("s"), || up.fetch(60)).await.0.unwrap();
        clock.advance(Duration::from_secs(29));
        let (r, l) = cache.get(key("s"), || up.fetch(60)).await;
        assert_eq!((r.unwrap().expires_in, l), (31, TokenLookup::Hit));
        clock.advance(Duration::from_secs(1));
        let (r, l) = cache.get(key("s"), || up.fetch(60)).await;
        assert_eq!((r.unwrap().access_token.as_str(), l), ("t2", TokenLookup::Miss));
    }

    #[tokio::test]
    async fn upstream_rejections_are_not_cached() {
        let clock = ManualClock::starting_now();
        let cache = cache(&clock, TokenCacheConfig::default());
        let (r, _) = cache
            .get(key("a"), || async { Err(ExchangeError::forbidden("no")) })
            .await;
        assert_eq!(r.unwrap_err().status(), StatusCode::FORBIDDEN);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn capacity_evicts_least_recently_used_and_invalidate_drops_a_client() {
        let clock = ManualClock::starting_now();
        let cache = cache(
            &clock,
            TokenCacheConfig {
                capacity: 2,
                ..Default::default()
            },
        );
        let up = Upstream::new();
        cache.get(key("a"), || up.fetch(1000)).await.0.unwrap();
        cache.get(key("b"), || up.fetch(1000)).await.0.unwrap();
        cache.get(key("a"), || up.fetch(1000)).await.0.unwrap(); // a is now the most recent
        cache.get(key("c"), || up.fetch(1000)).await.0.unwrap(); // evicts b
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(key("a"), || up.fetch(1000)).await.1, TokenLookup::Hit);
        assert_eq!(cache.get(key("b"), || up.fetch(1000)).await.1, TokenLookup::Miss);

        let client = key("a").client_id;
        assert_eq!(cache.cached_for(&client), 2);
        cache.invalidate(&client);
        assert!(cache.is_empty());
        assert_eq!(cache.get(key("a"), || up.fetch(1000)).await.1, TokenLookup::Miss);
    }

    #[tokio::test]
    async fn a_fetch_racing_an_invalidation_is_not_cached() {
        let clock = ManualClock::starting_now();
        let cache = Arc::new(cache(&clock, TokenCacheConfig::default()));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let c = Arc::clone(&cache);
        let waiter = tokio::spawn(async move {
            c.get(key("a"), || async move {
                let _ = gate.await;
                Ok(token(1, 1000))
            })
            .await
        });
        while cache.is_empty() {
            tokio::task::yield_now().await;
        }
        cache.invalidate(&key("a").client_id);
        let _ = release.send(());
        let (r, _) = waiter.await.unwrap();
        assert_eq!(r.unwrap().access_token, "t1", "the waiter still gets its answer");
        assert!(cache.is_empty(), "but it is not cached");
    }
}
