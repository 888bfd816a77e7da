//! The idbind data path: exchange a pod's service-account token for an Entra access token of the
//! managed identity bound to this cluster. Embeddable: no HTTP server here (that is
//! `idbind-proxy`), no global state, metrics registered into the caller's registry.
//!
//! [`Exchanger::exchange`] runs, for every request:
//! 1. **Request checks**: `client_id` is a GUID, `scope` names a resource once the OIDC scopes
//!    MSAL Go appends are removed ([`normalize_scope`]), `client_assertion` looks like a signed JWT.
//! 2. **Authentication**: TokenReview (`authentication.k8s.io/v1`) with audience
//!    `api://AKSIdentityBinding` (configurable); the API server must confirm the audience.
//!    Cached under the token's SHA-256 for at most 2 minutes and never past the token's `exp`
//!    (read, unverified, only to bound the cache); rejections are cached 10 s.
//! 3. **Binding**: only a client id with a Ready `IdentityBinding` is served; the binding's status
//!    gives tenant, issuer and subject. The index follows the API server with a reflector.
//! 4. **Authorization**: SubjectAccessReview, verb `use-managed-identity`, group
//!    `cid.wi.aks.azure.com`, resource = the client id, cluster-scoped, with the user, groups, uid
//!    and extra from the TokenReview (AKS-compatible RBAC). Allow cached 5 min, deny 30 s, keyed
//!    by user + groups + client id.
//! 5. **Token**: from the [`TokenCache`], keyed by (client id, normalized scope), or from Entra:
//!    an RS256 assertion minted with this cluster's current key (`iss` = the binding's issuer,
//!    `sub` = its subject, `aud` `api://AzureADTokenExchange`, 5-minute lifetime, fresh `jti`,
//!    `kid`), POSTed to `{authority}/{tenant}/oauth2/v2.0/token`.
//!
//! Authentication and authorization run on every request, before the token cache is consulted;
//! the caller's identity is not part of the cache key (the token is the identity's, not the pod's).
//!
//! # Token cache guarantees
//! - **One upstream call per key at a time**: concurrent callers wait for the call in flight and
//!   share its result, success or error. The call runs in its own task, so it completes (and fills
//!   the cache) even if the callers go away.
//! - **Remaining lifetime**: `expires_in` (and `ext_expires_in`) are the seconds *left*, as JSON
//!   integers; `refresh_in` says when the cache itself will refresh.
//! - **Refresh ahead of expiry**: at a point drawn per token from 80–90 % of its lifetime (or
//!   Entra's `refresh_in`, if sooner), the next request is answered from the cache and starts a
//!   background refresh. Idle entries are not refreshed, so tokens of departed pods cost nothing.
//! - **Static stability**: a failed refresh does not evict; when Entra is unavailable (5xx, 429,
//!   timeouts, connection errors), cached tokens are served until they expire.
//! - **Bounded**: at most `capacity` entries (default 10,000), least recently used evicted first.
//! - **Binding gone**: when a client id stops being served (binding deleted, no longer Ready, or
//!   its issuer/subject/tenant changed), its entries are dropped and fetches in progress for it
//!   are not cached.
//! - Requests carrying `claims` (CAE, claims challenges) bypass the cache, after the same checks.
//! - Scope case is kept: case variants are separate entries (see [`normalize_scope`]).
//!
//! # Error mapping
//! Every refusal is an [`ExchangeError`]; [`ExchangeError::to_response`] renders it. Permanent
//! failures are 4xx so SDKs do not retry them; only transient trouble is 503 (PROTOCOL.md §1.7,
//! §1.9). Errors idbind decides have Entra's JSON error shape (`error`, `error_description`
//! starting with `idbind:`, `timestamp`, `trace_id`, `correlation_id`) and no AADSTS codes;
//! Entra's own 4xx answers are passed through unchanged.
//!
//! | case | [`Rejection`] | HTTP | `error` |
//! |---|---|---|---|
//! | `client_id`, `scope` or `client_assertion` missing; `client_id` not a GUID | `InvalidRequest` | 400 | `invalid_request` |
//! | `scope` holds only `openid`/`offline_access`/`profile` | `InvalidScope` | 400 | `invalid_scope` |
//! | `grant_type` not `client_credentials` (HTTP surface) | `UnsupportedGrantType` | 400 | `unsupported_grant_type` |
//! | assertion not a JWT, `alg: none`, expired, wrong audience, bad signature, other issuer, deleted pod or SA — anything TokenReview refuses | `Unauthenticated` | 401 | `invalid_client` |
//! | no IdentityBinding has the client id; binding not Ready, being deleted, or Ready bindings disagree | `Unbound` | 400 | `unauthorized_client` |
//! | RBAC denies `use-managed-identity` on the client id | `Forbidden` | 403 | `unauthorized_client` |
//! | Entra answered 4xx (e.g. 400/401 AADSTS70021, 700016; also 429 after retries) | `UpstreamRejected` | Entra's | Entra's, body verbatim |
//! | Entra 5xx, 408, timeouts or connection errors after retries; Entra 200 without a usable token | `Unavailable` | 503 (`Retry-After`) | `temporarily_unavailable` |
//! | Kubernetes API unreachable, 429 or 5xx on TokenReview/SubjectAccessReview | `Unavailable` | 503 | `temporarily_unavailable` |
//! | binding index not synced yet; no signing keys loaded | `Unavailable` | 503 | `temporarily_unavailable` |
//! | the API server refuses the proxy's own TokenReview/SubjectAccessReview (missing RBAC); signing failed | `Internal` | 500 | `server_error` |
//!
//! A cached token is served instead of a 503 or 429 when one exists for the key and has not
//! expired.
//!
//! # Example (offline)
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use idbind_exchange::{
//!     CacheKey, EntraToken, ExchangeError, ManualClock, Metrics, TokenCache, TokenCacheConfig, normalize_scope,
//! };
//! use idbind_model::ClientId;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! // MSAL Go's extra scopes are dropped; the rest is the cache key.
//! let scope = normalize_scope("https://vault.azure.net/.default openid offline_access profile").unwrap();
//! assert_eq!(scope, "https://vault.azure.net/.default");
//!
//! let clock = ManualClock::starting_now();
//! let cache = TokenCache::new(TokenCacheConfig::default(), Arc::new(clock.clone()), Metrics::default());
//! let key = CacheKey { client_id: ClientId::parse("22222222-2222-2222-2222-222222222222")?, scope };
//! let calls = Arc::new(AtomicUsize::new(0));
//! let fetch = || {
//!     let calls = Arc::clone(&calls);
//!     async move {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         Ok::<_, ExchangeError>(EntraToken {
//!             access_token: "eyJ...".into(), expires_in: 3600, ext_expires_in: 3600, refresh_in: None,
//!         })
//!     }
//! };
//! // Ten concurrent callers, one upstream call.
//! let answers = futures::future::join_all((0..10).map(|_| cache.get(key.clone(), fetch))).await;
//! assert!(answers.iter().all(|(r, _)| r.as_ref().is_ok_and(|t| t.expires_in == 3600)));
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//!
//! // Ten minutes later the same token is served with its remaining lifetime.
//! clock.advance(Duration::from_secs(600));
//! let (token, _) = cache.get(key.clone(), fetch).await;
//! assert_eq!(token?.expires_in, 3000);
//!
//! // An RBAC denial renders as an Entra-shaped 403 that SDKs will not retry.
//! let denied = ExchangeError::forbidden("'system:serviceaccount:ns:app' may not use managed identity ...");
//! let response = denied.to_response("9f3c...");
//! assert_eq!(response.status.as_u16(), 403);
//! let body: serde_json::Value = serde_json::from_slice(&response.body)?;
//! assert_eq!(body["error"], "unauthorized_client");
//! assert_eq!(body["correlation_id"], "9f3c...");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod authn;
mod authz;
mod bindings;
mod clock;
mod entra;
mod error;
mod exchanger;
mod flight_cache;
mod jwt;
mod keys;
mod kube_error;
mod metrics;
mod scope;
mod token_cache;
mod types;

pub use authn::{Authenticator, AuthnConfig, Identity};
pub use authz::{Authorizer, AuthzConfig};
pub use bindings::{BindingIndex, BindingLookup, BindingTarget};
pub use clock::{Clock, ManualClock, SystemClock};
pub use entra::{EntraClient, EntraConfig, EntraToken, TokenRequest};
pub use error::{Error, ErrorResponse, ExchangeError, Rejection, Result, UpstreamResponse};
pub use exchanger::{Exchanger, ExchangerConfig, Readiness};
pub use keys::{KeyFiles, write_key_dir};
pub use metrics::{CacheLabels, Metrics, OutcomeLabels, ReloadLabels, UpstreamErrorLabels};
pub use scope::normalize_scope;
pub use token_cache::{CacheKey, TokenCache, TokenCacheConfig, TokenLookup};
pub use types::{ExchangeRequest, TokenResponse};
