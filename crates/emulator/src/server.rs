//! The shared server state, the request gate (fault injection + counters) and the accept loop.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idbind_model::TenantId;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::arm::errors::ArmError;
use crate::clock::Clock;
use crate::counters::{CounterTable, STATUS_CONNECTION_RESET};
use crate::entra::errors::EntraError;
use crate::entra::issuer_cache::IssuerCache;
use crate::faults::{Action, Faults};
use crate::keys::Signer;
use crate::persist::Persister;
use crate::routes::Route;
use crate::state::State;
use crate::throttle::Throttle;
use crate::{Error, Result};

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub clock: Arc<dyn Clock>,
    pub token_lifetime: Duration,
    pub clock_skew: Duration,
    pub max_fics_per_identity: usize,
    pub auto_create_containers: bool,
}

/// Everything the handlers share. Owned by the [`Emulator`](crate::Emulator) through an `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub settings: Settings,
    pub state: RwLock<State>,
    pub signer: Signer,
    pub persister: Option<Persister>,
    pub faults: Faults,
    pub counters: CounterTable,
    pub throttle: Throttle,
    pub issuers: IssuerCache,
    pub fic_write_hold: Mutex<Duration>,
    holds: Mutex<HashSet<String>>,
    base_url: String,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: Settings,
        state: State,
        signer: Signer,
        persister: Option<Persister>,
        faults: Faults,
        throttle: Throttle,
        issuers: IssuerCache,
        fic_write_hold: Duration,
        base_url: String,
    ) -> Self {
        Self {
            settings,
            state: RwLock::new(state),
            signer,
            persister,
            faults,
            counters: CounterTable::default(),
            throttle,
            issuers,
            fic_write_hold: Mutex::new(fic_write_hold),
            holds: Mutex::new(HashSet::new()),
            base_url,
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.settings.clock.now()
    }

    /// `scheme://host:port`, no trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The issuer of tokens for `tenant`.
    pub(crate) fn issuer(&self, tenant: &TenantId) -> String {
        format!("{}/{tenant}/v2.0", self.base_url)
    }

    pub(crate) fn is_own_issuer(&self, iss: &str) -> bool {
        iss.starts_with(&format!("{}/", self.base_url)) || iss.starts_with("https://sts.windows.net/")
    }

    /// Applies a change to the state and persists it (when a state file is configured).
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R> {
        let out = {
            let mut state = self.state.write();
            f(&mut state)
        };
        self.persist()?;
        Ok(out)
    }

    /// Writes the current state to the state file, if any.
    pub(crate) fn persist(&self) -> Result<()> {
        let Some(p) = &self.persister else { return Ok(()) };
        p.save_with(|| {
            serde_json::to_vec_pretty(&*self.state.read()).map_err(|e| Error::StateWrite {
                path: p.path().to_path_buf(),
                source: std::io::Error::other(e),
            })
        })
    }

    /// Marks an identity as being written; 409 if another FIC write holds it.
    pub(crate) fn hold_identity(
        self: &Arc<Self>,
        key: &str,
        identity_id: &str,
    ) -> Result<HoldGuard, ArmError> {
        if !self.holds.lock().insert(key.to_owned()) {
            return Err(ArmError::new(
                409,
                "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                format!(
                    "Too many Federated Identity Credentials are written concurrently for the managed identity '{}'. \
                     Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
                    identity_id.to_ascii_lowercase()
                ),
            ));
        }
        Ok(HoldGuard {
            shared: Arc::clone(self),
            key: key.to_owned(),
        })
    }
}

/// Releases an identity's write hold when dropped (also when the request is cancelled).
pub(crate) struct HoldGuard {
    shared: Arc<Shared>,
    key: String,
}

impl HoldGuard {
    /// Keeps the hold for the configured time, then releases it.
    pub(crate) async fn complete(self) {
        let hold = *self.shared.fic_write_hold.lock();
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.shared.holds.lock().remove(&self.key);
    }
}

/// A connection closed on purpose by an injected outage.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by injected fault")]
struct InjectedReset;

/// Serves connections until the task is aborted. Dropping the task drops the listener and every
/// connection task.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    shared: Arc<Shared>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        gate(router.clone(), Arc::clone(&shared), req)
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let result = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                            Err(e) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Faults, then the router, then the counters.
async fn gate(
    router: Router,
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> std::result::Result<Response, InjectedReset> {
    let route = Route::classify(req.method(), req.uri().path());
    let decision = shared.faults.decide(route);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let resp = match decision.action {
        Some(Action::Reset) => {
            shared.counters.record(route, STATUS_CONNECTION_RESET);
            return Err(InjectedReset);
        }
        Some(Action::Respond { status, retry_after }) => {
            fault_response(&shared, route, status, retry_after, req.headers())
        }
        None => {
            let resp: std::result::Result<Response, Infallible> = router.oneshot(req.map(Body::new)).await;
            match resp {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    shared.counters.record(route, resp.status().as_u16());
    Ok(resp)
}

fn fault_response(
    shared: &Shared,
    route: Route,
    status: u16,
    retry_after: Option<u64>,
    headers: &http::HeaderMap,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = if route.is_arm() {
        let code = match status.as_u16() {
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            500 => "InternalServerError",
            502 => "BadGateway",
            504 => "GatewayTimeout",
            _ => "InjectedFault",
        };
        let mut r = ArmError::new(
            status.as_u16(),
            code,
            format!("Injected fault: HTTP {}.", status.as_u16()),
        )
        .into_response();
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert("x-ms-request-id", v.clone());
            r.headers_mut().insert("x-ms-correlation-request-id", v);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                "x-ms-ratelimit-remaining-subscription-writes",
                HeaderValue::from(0),
            );
            r.headers_mut().insert(
                "x-ms-ratelimit-remaining-subscription-reads",
                HeaderValue::from(0),
            );
        }
        r
    } else {
        EntraError::transient(status).into_response_for(shared, headers)
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
