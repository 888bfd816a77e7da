//! Prometheus metrics of the HTTP surface and the listener, registered into a registry the caller
//! owns. The exchanger's own metrics (caches, upstream latency and errors, in-flight exchanges,
//! token cache size) come from `idbind_exchange::Metrics`, registered next to these.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Labels of `proxy_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `token`, `openid_configuration`, `instance_discovery` or `other`.
    pub route: &'static str,
    /// HTTP status answered.
    pub status: u16,
    /// `ok`, an exchange rejection (`unauthenticated`, `forbidden`, `unbound`, ...) or a surface
    /// refusal (`invalid_request`, `payload_too_large`, `method_not_allowed`, `timeout`).
    pub outcome: &'static str,
}

/// Labels of `proxy_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`RequestLabels::route`].
    pub route: &'static str,
}

/// Labels of `proxy_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `accepted`, `rejected_limit` (over the connection limit), `handshake_failed` or
    /// `handshake_timeout`.
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The proxy's metrics. Names are relative to the registry given to [`ProxyMetrics::register`]
/// (the binary uses the prefix `idbind`).
///
/// | name | type | labels |
/// |---|---|---|
/// | `proxy_requests_total` | counter | `route`, `status`, `outcome` |
/// | `proxy_request_duration_seconds` | histogram | `route` |
/// | `proxy_connections_total` | counter | `result` |
/// | `proxy_connections_open` | gauge | – |
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    /// Requests by route, status and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route, from the request head to the response.
    pub duration: Family<RouteLabels, Histogram>,
    /// Connections by what happened to them.
    pub connections: Family<ConnectionLabels, Counter>,
    /// Connections open now (after the handshake).
    pub connections_open: Gauge,
}

impl Default for ProxyMetrics {
    /// Metrics registered nowhere.
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            connections_open: Gauge::default(),
        }
    }
}

impl ProxyMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "proxy_requests",
            "Requests by route, HTTP status and outcome",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "proxy_request_duration",
            "Latency of requests by route",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register(
            "proxy_connections",
            "Connections by result",
            m.connections.clone(),
        );
        registry.register(
            "proxy_connections_open",
            "Connections open now",
            m.connections_open.clone(),
        );
        m
    }

    pub(crate) fn record(&self, route: &'static str, status: u16, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status,
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    pub(crate) fn connection(&self, result: &'static str) {
        self.connections.get_or_create(&ConnectionLabels { result }).inc();
    }

    /// How many requests ended with `route`, `status` and `outcome` (tests, diagnostics).
    pub fn request_count(&self, route: &'static str, status: u16, outcome: &'static str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                status,
                outcome,
            })
            .get()
    }

    /// How many connections ended with `result` (`accepted`, `rejected_limit`, ...).
    pub fn connection_count(&self, result: &'static str) -> u64 {
        self.connections.get_or_create(&ConnectionLabels { result }).get()
    }
}
