//! Token buckets per caller and operation class.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::config::{Bucket, ThrottleConfig};

/// ARM's operation classes, each with its own bucket and rate-limit header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum OpClass {
    Read,
    Write,
    Delete,
}

impl OpClass {
    pub(crate) fn header(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: f64,
    at: f64,
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Take {
    /// Allowed; this many whole tokens remain.
    Allowed(u64),
    /// Throttled; retry after this many seconds.
    Throttled(u64),
}

#[derive(Debug)]
pub(crate) struct Throttle {
    config: Mutex<ThrottleConfig>,
    levels: Mutex<HashMap<(String, OpClass), Level>>,
}

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Self {
        Self {
            config: Mutex::new(config),
            levels: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the configuration and refills every bucket.
    pub(crate) fn set(&self, config: ThrottleConfig) {
        *self.config.lock() = config;
        self.levels.lock().clear();
    }

    pub(crate) fn config(&self) -> ThrottleConfig {
        *self.config.lock()
    }

    /// Takes one token for `caller` at time `now` (seconds).
    pub(crate) fn take(&self, caller: &str, class: OpClass, now: f64) -> Take {
        let config = *self.config.lock();
        let bucket: Bucket = match class {
            OpClass::Read => config.reads,
            OpClass::Write => config.writes,
            OpClass::Delete => config.deletes,
        };
        if !config.enabled {
            return Take::Allowed(u64::from(bucket.capacity));
        }
        let capacity = f64::from(bucket.capacity);
        let mut levels = self.levels.lock();
        let level = levels.entry((caller.to_owned(), class)).or_insert(Level {
            tokens: capacity,
            at: now,
        });
        let elapsed = (now - level.at).max(0.0);
        level.tokens = (level.tokens + elapsed * bucket.refill_per_second).min(capacity);
        level.at = now;
        if level.tokens >= 1.0 {
            level.tokens -= 1.0;
            Take::Allowed(level.tokens.floor() as u64)
        } else if bucket.refill_per_second > 0.0 {
            Take::Throttled(((1.0 - level.tokens) / bucket.refill_per_second).ceil().max(1.0) as u64)
        } else {
            Take::Throttled(3600)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_drains_and_refills_with_time() {
        let t = Throttle::new(ThrottleConfig::uniform(2, 0.5));
        assert_eq!(t.take("a", OpClass::Write, 0.0), Take::Allowed(1));
        assert_eq!(t.take("a", OpClass::Write, 0.0), Take::Allowed(0));
        assert_eq!(t.take("a", OpClass::Write, 0.0), Take::Throttled(2));
        assert_eq!(
            t.take("b", OpClass::Write, 0.0),
            Take::Allowed(1),
            "buckets are per caller"
        );
        assert_eq!(t.take("a", OpClass::Read, 0.0), Take::Allowed(1), "and per class");
        assert_eq!(t.take("a", OpClass::Write, 2.0), Take::Allowed(0));
        t.set(ThrottleConfig::unlimited());
        assert!(matches!(t.take("a", OpClass::Write, 2.0), Take::Allowed(_)));
    }
}
