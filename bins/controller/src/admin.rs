//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process runs) and `/readyz`
//! (every registered readiness check passes: leader election working, caches synced, ...).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

/// Named readiness checks; `/readyz` answers 200 only when all of them are ready.
#[derive(Clone, Debug, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Health {
    /// Registers a check, initially not ready, and returns its handle.
    pub fn check(&self, name: &str) -> ReadyFlag {
        self.checks.lock().insert(name.to_owned(), false);
        ReadyFlag {
            health: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Whether every check is ready.
    pub fn is_ready(&self) -> bool {
        self.checks.lock().values().all(|ready| *ready)
    }

    /// The checks that are not ready.
    pub fn not_ready(&self) -> Vec<String> {
        self.checks
            .lock()
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// One readiness check.
#[derive(Clone, Debug)]
pub struct ReadyFlag {
    health: Health,
    name: String,
}

impl ReadyFlag {
    /// Marks the check ready or not.
    pub fn set(&self, ready: bool) {
        self.health.checks.lock().insert(self.name.clone(), ready);
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    health: Health,
}

/// The admin router.
pub fn router(registry: Arc<Registry>, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, health })
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::encode(&state.registry),
    )
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let missing = state.health.not_ready();
    if missing.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", missing.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_check() {
        let health = Health::default();
        assert!(health.is_ready());
        let a = health.check("leader-election");
        let b = health.check("caches");
        assert_eq!(health.not_ready(), ["caches", "leader-election"]);
        a.set(true);
        b.set(true);
        assert!(health.is_ready());
        b.set(false);
        assert_eq!(health.not_ready(), ["caches"]);
    }
}
