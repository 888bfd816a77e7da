//! Request counters per route and HTTP status.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::routes::Route;

/// The status recorded for a request whose connection was closed by an injected
/// [`OutageMode::ConnectionReset`](crate::OutageMode::ConnectionReset).
pub const STATUS_CONNECTION_RESET: u16 = 0;

/// A snapshot of the request counters: route name → status → count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counters {
    /// Route name → HTTP status → number of requests.
    pub by_route: BTreeMap<String, BTreeMap<u16, u64>>,
}

impl Counters {
    /// Requests on `route` answered with `status`.
    pub fn get(&self, route: Route, status: u16) -> u64 {
        self.by_route
            .get(route.name())
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// All requests on `route`.
    pub fn total(&self, route: Route) -> u64 {
        self.by_route
            .get(route.name())
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    /// Requests on `route` answered with a 2xx status.
    pub fn successes(&self, route: Route) -> u64 {
        self.matching(route, |s| (200..300).contains(&s))
    }

    /// Requests on `route` whose status satisfies `pred`.
    pub fn matching(&self, route: Route, pred: impl Fn(u16) -> bool) -> u64 {
        self.by_route
            .get(route.name())
            .map(|m| m.iter().filter(|(s, _)| pred(**s)).map(|(_, n)| n).sum())
            .unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct CounterTable {
    table: Mutex<BTreeMap<(Route, u16), u64>>,
}

impl CounterTable {
    pub(crate) fn record(&self, route: Route, status: u16) {
        if route == Route::Admin {
            return;
        }
        *self.table.lock().entry((route, status)).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let mut out = Counters::default();
        for ((route, status), n) in self.table.lock().iter() {
            out.by_route
                .entry(route.name().to_owned())
                .or_default()
                .insert(*status, *n);
        }
        out
    }

    pub(crate) fn reset(&self) {
        self.table.lock().clear();
    }
}
