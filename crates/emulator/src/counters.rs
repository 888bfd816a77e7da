//! Request counters per route and HTTP status.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
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

/// Prometheus labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: String,
}

#[derive(Debug)]
pub(crate) struct CounterTable {
    table: Mutex<BTreeMap<(Route, u16), u64>>,
    requests: Family<RequestLabels, Counter>,
    registry: Registry,
}

impl Default for CounterTable {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "idbind_emulator_requests",
            "Requests served by the emulator, by route name and HTTP status (0: connection reset by a fault)",
            requests.clone(),
        );
        Self {
            table: Mutex::new(BTreeMap::new()),
            requests,
            registry,
        }
    }
}

impl CounterTable {
    pub(crate) fn record(&self, route: Route, status: u16) {
        if route == Route::Admin {
            return;
        }
        *self.table.lock().entry((route, status)).or_default() += 1;
        self.requests
            .get_or_create(&RequestLabels {
                route: route.name().to_owned(),
                status: status.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of the counters.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
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
        self.requests.clear();
    }
}
