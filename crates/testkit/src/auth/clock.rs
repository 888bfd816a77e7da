//! The time source of the issuer: the system clock, or a manual clock tests move by hand so
//! expiry can be tested without sleeping.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use idbind_testkit::auth::{Clock, ManualClock};
///
/// let clock = ManualClock::new(jiff::Timestamp::from_second(1_700_000_000).unwrap());
/// let other = clock.clone();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(other.now().as_second(), 1_700_003_600);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// A clock showing the current system time, truncated to whole seconds.
    pub fn starting_now() -> Self {
        let now = Timestamp::now().as_second();
        Self::new(Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// Sets the time.
    pub fn set(&self, now: Timestamp) {
        *self.0.lock() = now;
    }

    /// Moves the time forward by `by` (saturating at the largest timestamp).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock();
        let span = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        *now = now.checked_add(span).unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
}
