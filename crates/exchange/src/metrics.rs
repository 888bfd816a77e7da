//! Prometheus metrics of the exchanger, registered into a registry the caller owns.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Labels of `exchanges`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or a [`Rejection`](crate::Rejection) name.
    pub outcome: String,
}

/// Labels of `cache_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `authn`, `authz` or `token`.
    pub cache: &'static str,
    /// `hit`, `miss`, `joined` (waited for another caller's fetch) or `bypass` (token requests
    /// carrying `claims`).
    pub result: &'static str,
}

/// Labels of `upstream_errors`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    /// HTTP status, or `connect`/`timeout` when no response came.
    pub status: String,
    /// The first AADSTS code of Entra's body, or empty.
    pub code: String,
}

/// Labels of `key_reloads`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `ok` or `error`.
    pub result: &'static str,
}

/// The exchanger's metrics. Names below are relative to the registry passed to
/// [`Metrics::register`] (pass `registry.sub_registry_with_prefix("idbind")` for an
/// `idbind_` prefix).
///
/// | name | type | labels |
/// |---|---|---|
/// | `exchanges_total` | counter | `outcome` |
/// | `cache_requests_total` | counter | `cache` (`authn`, `authz`, `token`), `result` |
/// | `upstream_request_duration_seconds` | histogram | – (each Entra HTTP attempt) |
/// | `upstream_errors_total` | counter | `status`, `code` (AADSTS) |
/// | `upstream_in_flight` | gauge | – (exchanges with Entra in progress) |
/// | `token_cache_entries` | gauge | – |
/// | `key_reloads_total` | counter | `result` |
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Exchanges by outcome.
    pub exchanges: Family<OutcomeLabels, Counter>,
    /// Cache lookups by cache and result.
    pub cache_requests: Family<CacheLabels, Counter>,
    /// Latency of Entra HTTP attempts.
    pub upstream_duration: Histogram,
    /// Failed Entra attempts by status and AADSTS code.
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    /// Exchanges with Entra in progress.
    pub upstream_in_flight: Gauge,
    /// Entries in the token cache.
    pub token_cache_entries: Gauge,
    /// Signing-key reloads by result.
    pub key_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    /// Metrics registered nowhere (tests, or embedders without Prometheus).
    fn default() -> Self {
        Self {
            exchanges: Family::default(),
            cache_requests: Family::default(),
            upstream_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            upstream_errors: Family::default(),
            upstream_in_flight: Gauge::default(),
            token_cache_entries: Gauge::default(),
            key_reloads: Family::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("exchanges", "Token exchanges by outcome", m.exchanges.clone());
        registry.register(
            "cache_requests",
            "Cache lookups by cache (authn, authz, token) and result",
            m.cache_requests.clone(),
        );
        registry.register_with_unit(
            "upstream_request_duration",
            "Latency of each HTTP attempt to the Entra token endpoint",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed Entra attempts by HTTP status and AADSTS code",
            m.upstream_errors.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Exchanges with Entra in progress",
            m.upstream_in_flight.clone(),
        );
        registry.register(
            "token_cache_entries",
            "Entra tokens in the cache",
            m.token_cache_entries.clone(),
        );
        registry.register(
            "key_reloads",
            "Signing-key reloads by result",
            m.key_reloads.clone(),
        );
        m
    }

    pub(crate) fn cache(&self, cache: &'static str, result: &'static str) {
        self.cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .inc();
    }

    /// How many lookups of `cache` ended with `result` (for tests and diagnostics).
    pub fn cache_count(&self, cache: &'static str, result: &'static str) -> u64 {
        self.cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .get()
    }

    /// How many exchanges ended with `outcome` (`ok` or a rejection name).
    pub fn exchange_count(&self, outcome: &str) -> u64 {
        self.exchanges
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let mut registry = Registry::default();
        let m = Metrics::register(registry.sub_registry_with_prefix("idbind"));
        m.cache("token", "hit");
        m.exchanges
            .get_or_create(&OutcomeLabels { outcome: "ok".into() })
            .inc();
        m.upstream_duration.observe(0.02);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"idbind_cache_requests_total{cache="token",result="hit"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"idbind_exchanges_total{outcome="ok"} 1"#), "{out}");
        assert!(
            out.contains("idbind_upstream_request_duration_seconds_count 1"),
            "{out}"
        );
        assert_eq!(m.cache_count("token", "hit"), 1);
        assert_eq!(m.exchange_count("ok"), 1);
    }
}
