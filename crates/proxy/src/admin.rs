//! The admin listener (plain HTTP, meant for the pod network only): `/metrics` in the
//! OpenMetrics text format, `/healthz` (the process serves) and `/readyz` (it can exchange).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// What `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    /// The binding index holds a complete list of IdentityBindings.
    pub bindings_synced: bool,
    /// Signing keys are loaded.
    pub keys_loaded: bool,
    /// The serving certificate is loaded.
    pub certificate_loaded: bool,
}

impl ReadinessReport {
    /// All three.
    pub fn is_ready(&self) -> bool {
        self.bindings_synced && self.keys_loaded && self.certificate_loaded
    }
}

type ReadinessFn = Arc<dyn Fn() -> ReadinessReport + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: ReadinessFn,
}

/// A running admin listener; stops when dropped or on [`AdminServer::shutdown`].
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `listen` and serves the registry's metrics and the readiness `readiness` reports.
    pub async fn start(
        listen: SocketAddr,
        registry: Arc<Registry>,
        readiness: impl Fn() -> ReadinessReport + Send + Sync + 'static,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Bind { addr: listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr: listen, source })?;
        let state = AdminState {
            registry,
            readiness: Arc::new(readiness),
        };
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(state);
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "admin listener failed");
            }
        });
        tracing::info!(%local_addr, "admin listening");
        Ok(Self {
            local_addr,
            stop,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and waits for the listener to close.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The task only logs; a panic in it has nothing to report here.
            let _ = task.await;
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let report = (state.readiness)();
    let status = if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": report.is_ready(), "checks": report })),
    )
        .into_response()
}
