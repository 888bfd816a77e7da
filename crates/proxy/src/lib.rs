//! The idbind token proxy: the HTTPS endpoint pods' Azure Identity SDKs send their standard
//! Entra client-credentials request to (`AZURE_KUBERNETES_TOKEN_PROXY`), answering with an Entra
//! access token of the managed identity bound to the pod's service account. The exchange itself
//! (TokenReview, SubjectAccessReview, bindings, assertion, Entra, token cache) is
//! `idbind-exchange`; this crate is the surface around it:
//!
//! - [`Surface`]: routes and parameters as PROTOCOL.md §1.10 requires. A token request is a
//!   `POST` on **any path** (`/`, `/{tenant}/oauth2/v2.0/token`, with a prefix), with its
//!   parameters in an `application/x-www-form-urlencoded` body (any `charset`) or, when the body
//!   is empty, in the query string; `client_assertion` is trimmed, unknown fields ignored, the OIDC
//!   scopes MSAL Go appends dropped, `claims` forwarded. `GET /{tenant}/v2.0/.well-known/
//!   openid-configuration` and `GET /common/discovery/instance` get Entra-shaped documents. The
//!   `Host` header is never looked at. Every refusal is an Entra-shaped JSON error: 4xx for
//!   permanent failures, 503 `temporarily_unavailable` only for transient trouble, and no
//!   `Retry-After` on 4xx other than 429 (SDKs retry anything carrying it).
//! - [`ProxyServer`]: TLS 1.2+ with ALPN `h2` and `http/1.1` ([`ServerTls`] follows certificate
//!   files as they are replaced), handshake and header timeouts, a connection limit, graceful
//!   shutdown.
//! - [`AdminServer`]: `/metrics`, `/healthz`, `/readyz` on a separate plain-HTTP listener.
//! - [`TokenExchange`]: what the surface needs from the exchanger, so it can be driven by a fake.
//!
//! No global state: metrics go into the caller's registry, no crypto provider is installed.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use idbind_exchange::{ExchangeError, ExchangeRequest, Readiness, TokenResponse};
//! use idbind_proxy::{ProxyMetrics, Surface, SurfaceConfig, TokenExchange};
//!
//! /// Answers every request with the same token.
//! struct Fixed;
//!
//! impl TokenExchange for Fixed {
//!     async fn exchange(&self, request: ExchangeRequest) -> Result<TokenResponse, ExchangeError> {
//!         assert_eq!(request.scope, "https://vault.azure.net/.default");
//!         assert_eq!(request.assertion, "eyJ.sa.token");
//!         Ok(TokenResponse {
//!             token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599,
//!             access_token: "entra-token".into(), refresh_in: None,
//!         })
//!     }
//!     fn readiness(&self) -> Readiness {
//!         Readiness { bindings_synced: true, keys_loaded: true }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let authority = url::Url::parse("https://login.microsoftonline.com")?;
//! let surface = Surface::new(Fixed, SurfaceConfig::new(authority), ProxyMetrics::default());
//!
//! // What MSAL Go sends: the OIDC scopes are dropped, the token file's newline trimmed.
//! let body = "grant_type=client_credentials&client_id=22222222-2222-2222-2222-222222222222\
//!     &scope=https%3A%2F%2Fvault.azure.net%2F.default+openid+offline_access+profile\
//!     &client_assertion=eyJ.sa.token%0A&client_info=1\
//!     &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
//! let request = http::Request::post("/any/tenant/oauth2/v2.0/token")
//!     .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
//!     .body(Full::new(Bytes::from(body)))?;
//! let response = surface.handle(request).await;
//! assert_eq!(response.status(), 200);
//! let json: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(json["expires_in"], 3599);
//!
//! // A GET on a token path is refused the way Entra refuses things.
//! let response = surface.handle(http::Request::get("/").body(Full::new(Bytes::new()))?).await;
//! assert_eq!(response.status(), 405);
//! assert_eq!(response.headers()["allow"], "POST");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admin;
mod discovery;
mod exchange;
mod fingerprint;
mod metrics;
mod params;
mod server;
mod surface;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use admin::{AdminServer, ReadinessReport};
pub use exchange::TokenExchange;
pub use metrics::{ConnectionLabels, ProxyMetrics, RequestLabels, RouteLabels};
pub use params::{CLIENT_CREDENTIALS, JWT_BEARER};
pub use server::{ProxyServer, ServerOptions, ShutdownOutcome};
pub use surface::{DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT, Surface, SurfaceConfig};
pub use tls::ServerTls;

/// Everything that can go wrong setting up the proxy's listeners.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not bind.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The serving certificate or key file is unusable.
    #[error("serving certificate {path}: {source}")]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        #[source]
        source: idbind_tls::Error,
    },
    /// The TLS configuration could not be built or reloaded.
    #[error("TLS: {source}")]
    Tls {
        /// Why.
        #[source]
        source: idbind_tls::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
