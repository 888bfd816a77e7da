//! Retry policy: exponential backoff with full jitter, `Retry-After` honoured, bounded in attempts
//! and in elapsed time.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::Error;

/// What a retry hook is told before the client waits and tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The operation being retried, e.g. `put_fic` or `token`.
    pub operation: &'static str,
    /// The attempt that just failed (1 for the first request).
    pub attempt: u32,
    /// The HTTP status that caused the retry; `None` for a transport failure.
    pub status: Option<u16>,
    /// The wait the server asked for (`Retry-After`, `retry-after-ms`, `x-ms-retry-after-ms`).
    pub retry_after: Option<Duration>,
    /// How long the client waits before the next attempt.
    pub delay: Duration,
}

type RetryHook = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// How requests are retried.
///
/// Retried: 408, 429, 5xx except 501 and 505, and transport failures (connection refused or reset,
/// timeouts). The wait before attempt `n + 1` is the server's `Retry-After` (or `retry-after-ms`,
/// `x-ms-retry-after-ms`) when it sent one, otherwise a random duration in
/// `[0, min(max_delay, base_delay * 2^(n-1))]` ("full jitter"). The client gives up after
/// `max_attempts` attempts, or earlier when the next wait would end past `max_elapsed` since the
/// first attempt; it then returns the last error.
///
/// ```
/// use std::time::Duration;
/// use idbind_arm::RetryPolicy;
///
/// let policy = RetryPolicy::default().max_attempts(4).base_delay(Duration::from_millis(1));
/// assert_eq!(policy.get_max_attempts(), 4);
/// assert!(policy.backoff(3) <= Duration::from_millis(4));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_elapsed: Duration,
    on_retry: Option<RetryHook>,
}

impl Default for RetryPolicy {
    /// 6 attempts, base delay 800 ms, at most 30 s between attempts, at most 2 minutes in all.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
            on_retry: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("max_elapsed", &self.max_elapsed)
            .field("on_retry", &self.on_retry.as_ref().map(|_| "<hook>"))
            .finish()
    }
}

impl RetryPolicy {
    /// A policy that never retries (one attempt).
    pub fn none() -> Self {
        Self::default().max_attempts(1)
    }

    /// Total attempts including the first (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The base of the exponential backoff.
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The largest backoff between two attempts (server-requested waits are not capped by it).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The longest time from the first attempt after which no further attempt is started.
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = d;
        self
    }

    /// A hook called before every retry (tests count attempts with it; metrics can too).
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    /// Total attempts including the first.
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The longest time from the first attempt after which no further attempt is started.
    pub fn get_max_elapsed(&self) -> Duration {
        self.max_elapsed
    }

    /// A random backoff for the wait after failed attempt `attempt` (1-based), with full jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.backoff_cap(attempt);
        if cap.is_zero() {
            return cap;
        }
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    fn backoff_cap(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.base_delay.saturating_mul(1u32 << exp).min(self.max_delay)
    }

    pub(crate) fn notify(&self, event: &RetryEvent) {
        if let Some(hook) = &self.on_retry {
            hook(event);
        }
    }

    /// Runs `attempt_fn` until it succeeds, fails permanently, or the policy gives up.
    pub(crate) async fn run<T, F, Fut>(&self, operation: &'static str, mut attempt_fn: F) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let start = Instant::now();
        let mut attempt = 1;
        loop {
            let failure = match attempt_fn(attempt).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry {
                    error,
                    status,
                    retry_after,
                }) => (error, status, retry_after),
            };
            let (error, status, retry_after) = failure;
            if attempt >= self.max_attempts {
                return Err(error);
            }
            let delay = retry_after.unwrap_or_else(|| self.backoff(attempt));
            if start.elapsed().saturating_add(delay) > self.max_elapsed {
                tracing::debug!(
                    operation,
                    attempt,
                    ?delay,
                    "not retrying: the wait would exceed max_elapsed"
                );
                return Err(error);
            }
            let event = RetryEvent {
                operation,
                attempt,
                status,
                retry_after,
                delay,
            };
            tracing::debug!(operation, attempt, status, ?delay, ?retry_after, "retrying");
            self.notify(&event);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// The outcome of one failed attempt.
pub(crate) enum Attempt {
    /// Worth another attempt.
    Retry {
        error: Error,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Not worth another attempt.
    Fatal(Error),
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || ((500..600).contains(&status) && status != 501 && status != 505)
}

/// The wait a server asked for, from `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds) or
/// `Retry-After` (delta-seconds or an HTTP date, relative to `now`). Unparseable values are ignored.
pub(crate) fn parse_retry_after(
    retry_after_ms: Option<&str>,
    x_ms_retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let millis = |v: &str| {
        let ms: f64 = v.trim().parse().ok()?;
        (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
    };
    if let Some(d) = retry_after_ms.and_then(millis) {
        return Some(d);
    }
    if let Some(d) = x_ms_retry_after_ms.and_then(millis) {
        return Some(d);
    }
    let value = retry_after?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn retry_after_prefers_millisecond_headers() {
        let now = ts("2024-01-01T00:00:00Z");
        assert_eq!(
            parse_retry_after(Some("250"), Some("900"), Some("7"), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(None, Some("900"), Some("7"), now),
            Some(Duration::from_millis(900))
        );
        assert_eq!(
            parse_retry_after(Some("junk"), None, Some("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after(None, None, None, now), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = ts("2024-01-10T10:34:40Z");
        assert_eq!(
            parse_retry_after(None, None, Some(" 3 "), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(None, None, Some("0"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(None, None, Some("Wed, 10 Jan 2024 10:34:45 GMT"), now),
            Some(Duration::from_secs(5))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after(None, None, Some("Wed, 10 Jan 2024 10:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(None, None, Some("-1"), now), None);
        assert_eq!(parse_retry_after(None, None, Some("soon"), now), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 412, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_cap() {
        let p = RetryPolicy::default()
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1));
        assert_eq!(p.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(4), Duration::from_millis(800));
        assert_eq!(p.backoff_cap(5), Duration::from_secs(1));
        assert_eq!(p.backoff_cap(u32::MAX), Duration::from_secs(1));
        for attempt in 1..10 {
            assert!(p.backoff(attempt) <= p.backoff_cap(attempt));
        }
        assert_eq!(RetryPolicy::none().get_max_attempts(), 1);
        assert_eq!(RetryPolicy::default().max_attempts(0).get_max_attempts(), 1);
    }

    fn retry(status: u16, retry_after: Option<Duration>) -> Attempt {
        Attempt::Retry {
            error: Error::config("test", format!("status {status}")),
            status: Some(status),
            retry_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_stops_after_max_attempts_and_reports_each_retry() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let policy = RetryPolicy::default()
            .max_attempts(3)
            .on_retry(move |e| seen.lock().unwrap().push(e.clone()));
        let mut calls = 0;
        let result: Result<(), Error> = policy
            .run("op", |_| {
                calls += 1;
                async { Err(retry(503, None)) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 3);
        let events = events.lock().unwrap();
        assert_eq!(events.iter().map(|e| e.attempt).collect::<Vec<_>>(), vec![1, 2]);
        assert!(
            events
                .iter()
                .all(|e| e.status == Some(503) && e.operation == "op")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn run_waits_what_the_server_asked() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let policy = RetryPolicy::default().on_retry(move |e| seen.lock().unwrap().push(e.clone()));
        let out = policy
            .run("op", |attempt| async move {
                if attempt < 3 {
                    Err(retry(429, Some(Duration::from_secs(7))))
                } else {
                    Ok(attempt)
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 3);
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.delay == Duration::from_secs(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn run_gives_up_when_the_wait_would_pass_max_elapsed() {
        let policy = RetryPolicy::default()
            .max_attempts(10)
            .max_elapsed(Duration::from_secs(60));
        let mut calls = 0;
        let result: Result<(), Error> = policy
            .run("op", |_| {
                calls += 1;
                async { Err(retry(429, Some(Duration::from_secs(45)))) }
            })
            .await;
        assert!(result.is_err());
        // 0s: attempt 1, wait 45s; 45s: attempt 2, a second wait would end at 90s > 60s.
        assert_eq!(calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), Error> = RetryPolicy::default()
            .run("op", |_| {
                calls += 1;
                async { Err(Attempt::Fatal(Error::config("x", "y"))) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }
}
