//! The HTTP(S) surface: an accept loop (hyper, HTTP/1.1 and HTTP/2, optional rustls) serving one
//! axum handler that routes API paths.

mod access;
mod handlers;
mod path;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use access::Access;

use crate::cluster::Cluster;

/// Settings of a running server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// `host:port` the server is reachable at (for `/api`'s serverAddressByClientCIDRs).
    pub server_address: String,
}

/// Everything requests need.
pub struct ServerState {
    /// The cluster state and API semantics.
    pub cluster: Arc<Cluster>,
    /// Authentication and authorization.
    pub access: Arc<Access>,
    /// Cancelled when the emulator stops (ends watches and connections).
    pub shutdown: CancellationToken,
    /// Settings.
    pub settings: Settings,
    /// Mutating admission (MutatingWebhookConfigurations) of pod creates.
    pub admission: crate::admission::MutatingAdmission,
    /// Cancelled (and replaced) to end every open watch.
    pub watches: parking_lot::Mutex<CancellationToken>,
}

impl ServerState {
    /// A token that ends a watch when the server stops or watches are disconnected.
    pub fn watch_token(&self) -> CancellationToken {
        self.watches.lock().clone()
    }

    /// Ends every open watch (clients resume from their last resourceVersion).
    pub fn disconnect_watches(&self) {
        let mut current = self.watches.lock();
        current.cancel();
        *current = self.shutdown.child_token();
    }
}

/// The axum application.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new().fallback(handlers::handle).with_state(state)
}

/// Serves connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let served = match acceptor {
                Some(acceptor) => {
                    let tls_stream = tokio::select! {
                        () = shutdown.cancelled() => return,
                        s = acceptor.accept(stream) => match s {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        },
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = conn => r,
                    }
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = conn => r,
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
