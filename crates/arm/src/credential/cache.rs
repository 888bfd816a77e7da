//! The token cache shared by the credentials that call a token endpoint: one entry per scope,
//! refreshed before expiry, one refresh at a time per scope.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::AccessToken;
use crate::Result;

/// Refresh at most this long before expiry ...
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

#[derive(Default)]
struct Entry {
    current: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    expires: Instant,
}

impl Cached {
    fn new(token: AccessToken) -> Self {
        let now = Instant::now();
        let remaining = token.expires_at.duration_since(jiff::Timestamp::now());
        let lifetime = Duration::try_from(remaining).unwrap_or(Duration::ZERO);
        // ... and at half-life for short-lived tokens.
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Self {
            token,
            refresh_at: now + (lifetime - margin),
            expires: now + lifetime,
        }
    }
}

impl TokenCache {
    /// The cached token for `scope`, or a fresh one from `fetch`.
    ///
    /// Within the refresh window (before expiry) one caller refreshes while the others keep using
    /// the current token; if that refresh fails the current token is still returned. Once a token
    /// has expired every caller waits for the one refresh in flight.
    pub(crate) async fn get<F, Fut>(&self, scope: &str, fetch: F) -> Result<AccessToken>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AccessToken>>,
    {
        let entry = {
            let mut entries = lock(&self.entries);
            entries.entry(scope.to_owned()).or_default().clone()
        };
        let now = Instant::now();
        let current = lock(&entry.current).clone();
        if let Some(c) = &current {
            if now < c.refresh_at {
                return Ok(c.token.clone());
            }
            if now < c.expires {
                let Ok(_guard) = entry.refresh.try_lock() else {
                    return Ok(c.token.clone());
                };
                return match fetch().await {
                    Ok(token) => Ok(entry.store(token)),
                    Err(e) => {
                        tracing::warn!(scope, error = %e, "token refresh failed; using the cached token until it expires");
                        Ok(c.token.clone())
                    }
                };
            }
        }
        let _guard = entry.refresh.lock().await;
        // The token seen above was absent or expired: a valid one now was fetched meanwhile.
        if let Some(c) = lock(&entry.current).as_ref()
            && Instant::now() < c.expires
        {
            return Ok(c.token.clone());
        }
        let token = fetch().await?;
        Ok(entry.store(token))
    }
}

impl Entry {
    fn store(&self, token: AccessToken) -> AccessToken {
        *lock(&self.current) = Some(Cached::new(token.clone()));
        token
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map or an Option half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn token(name: &str, lifetime: Duration) -> AccessToken {
        AccessToken::new(name, jiff::Timestamp::now() + lifetime)
    }

    async fn fetch_counting(
        cache: &TokenCache,
        calls: &AtomicU32,
        lifetime: Duration,
    ) -> Result<AccessToken> {
        cache
            .get("scope", || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                // Give concurrent callers a chance to pile up behind the refresh.
                tokio::task::yield_now().await;
                Ok(token(&format!("t{n}"), lifetime))
            })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reused_until_five_minutes_before_expiry() {
        let cache = TokenCache::default();
        let calls = AtomicU32::new(0);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            fetch_counting(&cache, &calls, hour)
                .await
                .unwrap()
                .secret
                .expose(),
            "t1"
        );
        tokio::time::advance(Duration::from_secs(3600 - 301)).await;
        assert_eq!(
            fetch_counting(&cache, &calls, hour)
                .await
                .unwrap()
                .secret
                .expose(),
            "t1"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            fetch_counting(&cache, &calls, hour)
                .await
                .unwrap()
                .secret
                .expose(),
            "t2"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_refresh_at_half_life() {
        let cache = TokenCache::default();
        let calls = AtomicU32::new(0);
        let life = Duration::from_secs(120);
        fetch_counting(&cache, &calls, life).await.unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(
            fetch_counting(&cache, &calls, life)
                .await
                .unwrap()
                .secret
                .expose(),
            "t1"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            fetch_counting(&cache, &calls, life)
                .await
                .unwrap()
                .secret
                .expose(),
            "t2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move { fetch_counting(&cache, &calls, Duration::from_secs(3600)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().secret.expose(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_valid_token_but_an_expired_one_is_an_error() {
        let cache = TokenCache::default();
        cache
            .get("scope", || async { Ok(token("t1", Duration::from_secs(600))) })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(400)).await;
        let fail = || async { Err(crate::Error::config("test", "token endpoint down")) };
        assert_eq!(cache.get("scope", fail).await.unwrap().secret.expose(), "t1");
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(cache.get("scope", fail).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_are_cached_separately() {
        let cache = TokenCache::default();
        let a = cache
            .get("a", || async { Ok(token("ta", Duration::from_secs(3600))) })
            .await
            .unwrap();
        let b = cache
            .get("b", || async { Ok(token("tb", Duration::from_secs(3600))) })
            .await
            .unwrap();
        assert_eq!((a.secret.expose(), b.secret.expose()), ("ta", "tb"));
    }
}
