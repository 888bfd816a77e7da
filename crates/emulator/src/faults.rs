//! Fault injection: added latency, errors (deterministic or random), 429 bursts and outages, per
//! route or for every route.
//!
//! Precedence within one fault: outage, then a pending 429 burst, then pending failures
//! (`fail_next`), then the random `error_rate`. A route-specific fault is consulted before the
//! all-routes (`*`) fault; latencies add up.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::routes::{Route, RouteSelector};

/// How a full outage shows itself to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OutageMode {
    /// Answer `503 Service Unavailable` (with `Retry-After` if set).
    ServiceUnavailable,
    /// Close the connection without any response (clients see a connection error).
    ConnectionReset,
}

/// A fault to inject on a route. Build with the constructors and combine with the `with_*` methods;
/// the JSON form (admin endpoint) uses the camelCase field names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Added latency before the request is handled, in milliseconds.
    pub latency_ms: u64,
    /// Fail the next N requests with `error_status`.
    pub fail_next: u32,
    /// Fail this fraction (0.0–1.0) of requests with `error_status`, at random.
    pub error_rate: f64,
    /// The status of injected failures (default 500).
    pub error_status: u16,
    /// Throttle the next N requests with 429.
    pub throttle_next: u32,
    /// `Retry-After` seconds sent with injected 429 and 503 answers.
    pub retry_after_secs: u64,
    /// A full outage, until cleared.
    pub outage: Option<OutageMode>,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            fail_next: 0,
            error_rate: 0.0,
            error_status: 500,
            throttle_next: 0,
            retry_after_secs: 1,
            outage: None,
        }
    }
}

impl Fault {
    /// Adds `latency` before every request.
    pub fn latency(latency: Duration) -> Self {
        Self::default().with_latency(latency)
    }

    /// Fails the next `n` requests with 500.
    pub fn fail_next(n: u32) -> Self {
        Self {
            fail_next: n,
            ..Self::default()
        }
    }

    /// Fails the next `n` requests with `status` (a 5xx, normally).
    pub fn fail_next_with(n: u32, status: u16) -> Self {
        Self {
            fail_next: n,
            error_status: status,
            ..Self::default()
        }
    }

    /// Fails a random `rate` (0.0–1.0) of requests with 500.
    pub fn error_rate(rate: f64) -> Self {
        Self {
            error_rate: rate.clamp(0.0, 1.0),
            ..Self::default()
        }
    }

    /// Answers the next `n` requests with 429 and `Retry-After: retry_after_secs`.
    pub fn throttle_next(n: u32, retry_after_secs: u64) -> Self {
        Self {
            throttle_next: n,
            retry_after_secs,
            ..Self::default()
        }
    }

    /// A full outage answering 503.
    pub fn outage() -> Self {
        Self {
            outage: Some(OutageMode::ServiceUnavailable),
            ..Self::default()
        }
    }

    /// A full outage that closes connections without answering.
    pub fn connection_reset() -> Self {
        Self {
            outage: Some(OutageMode::ConnectionReset),
            ..Self::default()
        }
    }

    /// Adds latency to this fault.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Sets the status of injected failures.
    pub fn with_status(mut self, status: u16) -> Self {
        self.error_status = status;
        self
    }

    /// Sets the `Retry-After` of injected 429/503 answers.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = secs;
        self
    }

    fn is_spent(&self) -> bool {
        self.latency_ms == 0
            && self.fail_next == 0
            && self.error_rate <= 0.0
            && self.throttle_next == 0
            && self.outage.is_none()
    }
}

/// What the gate does with one request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub action: Option<Action>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Answer with this status (and `Retry-After` seconds, if any).
    Respond { status: u16, retry_after: Option<u64> },
    /// Drop the connection.
    Reset,
}

/// The fault table.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    table: Mutex<BTreeMap<RouteSelector, Fault>>,
}

impl Faults {
    pub(crate) fn new(initial: impl IntoIterator<Item = (RouteSelector, Fault)>) -> Self {
        Self {
            table: Mutex::new(initial.into_iter().collect()),
        }
    }

    pub(crate) fn set(&self, sel: RouteSelector, fault: Fault) {
        self.table.lock().insert(sel, fault);
    }

    pub(crate) fn clear(&self, sel: Option<RouteSelector>) {
        let mut t = self.table.lock();
        match sel {
            Some(sel) => {
                t.remove(&sel);
            }
            None => t.clear(),
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, Fault> {
        self.table
            .lock()
            .iter()
            .map(|(k, v)| (k.name().to_owned(), v.clone()))
            .collect()
    }

    /// Decides, consuming one unit of any pending burst.
    pub(crate) fn decide(&self, route: Route) -> Decision {
        let mut decision = Decision::default();
        if route == Route::Admin {
            return decision;
        }
        let mut table = self.table.lock();
        for sel in [RouteSelector::Route(route), RouteSelector::All] {
            let Some(fault) = table.get_mut(&sel) else {
                continue;
            };
            decision.latency += Duration::from_millis(fault.latency_ms);
            if decision.action.is_none() {
                decision.action = Self::act(fault);
            }
            if fault.is_spent() {
                table.remove(&sel);
            }
        }
        decision
    }

    fn act(fault: &mut Fault) -> Option<Action> {
        let retry_after = (fault.retry_after_secs > 0).then_some(fault.retry_after_secs);
        match fault.outage {
            Some(OutageMode::ConnectionReset) => return Some(Action::Reset),
            Some(OutageMode::ServiceUnavailable) => {
                return Some(Action::Respond {
                    status: 503,
                    retry_after,
                });
            }
            None => {}
        }
        if fault.throttle_next > 0 {
            fault.throttle_next -= 1;
            return Some(Action::Respond {
                status: 429,
                retry_after,
            });
        }
        if fault.fail_next > 0 {
            fault.fail_next -= 1;
            return Some(Action::Respond {
                status: fault.error_status,
                retry_after: None,
            });
        }
        if fault.error_rate > 0.0 && random_unit() < fault.error_rate {
            return Some(Action::Respond {
                status: fault.error_status,
                retry_after: None,
            });
        }
        None
    }
}

/// A uniformly random number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_consumed_in_order_and_then_removed() {
        let faults = Faults::default();
        faults.set(
            Route::ArmFicPut.into(),
            Fault {
                throttle_next: 1,
                fail_next: 1,
                ..Fault::default()
            },
        );
        let d = faults.decide(Route::ArmFicPut);
        assert_eq!(
            d.action,
            Some(Action::Respond {
                status: 429,
                retry_after: Some(1)
            })
        );
        let d = faults.decide(Route::ArmFicPut);
        assert_eq!(
            d.action,
            Some(Action::Respond {
                status: 500,
                retry_after: None
            })
        );
        assert_eq!(faults.decide(Route::ArmFicPut), Decision::default());
        assert!(faults.snapshot().is_empty());
        assert_eq!(faults.decide(Route::ArmFicGet), Decision::default());
    }

    #[test]
    fn all_routes_fault_applies_except_admin_and_latencies_add() {
        let faults = Faults::default();
        faults.set(
            RouteSelector::All,
            Fault::outage().with_latency(Duration::from_millis(5)),
        );
        faults.set(Route::EntraToken.into(), Fault::latency(Duration::from_millis(7)));
        let d = faults.decide(Route::EntraToken);
        assert_eq!(d.latency, Duration::from_millis(12));
        assert_eq!(
            d.action,
            Some(Action::Respond {
                status: 503,
                retry_after: Some(1)
            })
        );
        assert_eq!(faults.decide(Route::Admin), Decision::default());
        faults.clear(None);
        assert_eq!(faults.decide(Route::EntraToken), Decision::default());
    }
}
