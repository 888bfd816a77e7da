//! The exchanger: authenticate, authorize, find the binding, then serve a token from the cache or
//! from one upstream exchange.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use idbind_issuer::{AssertionClaims, DEFAULT_ASSERTION_LIFETIME, MintedAssertion, mint_assertion};
use idbind_model::ClientId;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::authn::{Authenticator, AuthnConfig};
use crate::authz::{Authorizer, AuthzConfig};
use crate::bindings::{BindingIndex, BindingLookup, BindingTarget};
use crate::clock::{Clock, SystemClock};
use crate::entra::{EntraClient, EntraConfig, EntraToken, TokenRequest};
use crate::keys::KeyFiles;
use crate::metrics::OutcomeLabels;
use crate::token_cache::{CacheKey, TokenCache, TokenCacheConfig, TokenLookup};
use crate::{ExchangeError, ExchangeRequest, Metrics, Result, TokenResponse, normalize_scope};

/// Everything an [`Exchanger`] needs besides a Kubernetes client.
#[derive(Clone)]
pub struct ExchangerConfig {
    /// TokenReview settings (audience, cache).
    pub authn: AuthnConfig,
    /// SubjectAccessReview cache settings.
    pub authz: AuthzConfig,
    /// Token cache settings.
    pub token_cache: TokenCacheConfig,
    /// Entra client settings (authority, timeouts, retries, trust roots).
    pub entra: EntraConfig,
    /// Directory of the mounted signing-key Secret.
    pub keys_dir: PathBuf,
    /// How often the key directory is re-read (default 10 s).
    pub key_reload_interval: Duration,
    /// Lifetime of minted assertions (default 5 min).
    pub assertion_lifetime: Duration,
    /// The clock of the caches and of token lifetimes (default: the system clock). Assertions are
    /// always stamped with the system clock, since Entra checks them against real time.
    pub clock: Arc<dyn Clock>,
}

impl ExchangerConfig {
    /// Defaults for an authority host (e.g. `https://login.microsoftonline.com`) and a key
    /// directory.
    pub fn new(authority: url::Url, keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            authn: AuthnConfig::default(),
            authz: AuthzConfig::default(),
            token_cache: TokenCacheConfig::default(),
            entra: EntraConfig::new(authority),
            keys_dir: keys_dir.into(),
            key_reload_interval: Duration::from_secs(10),
            assertion_lifetime: DEFAULT_ASSERTION_LIFETIME,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ExchangerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangerConfig")
            .field("authn", &self.authn)
            .field("authz", &self.authz)
            .field("token_cache", &self.token_cache)
            .field("entra", &self.entra)
            .field("keys_dir", &self.keys_dir)
            .field("key_reload_interval", &self.key_reload_interval)
            .field("assertion_lifetime", &self.assertion_lifetime)
            .finish_non_exhaustive()
    }
}

/// What `/readyz` needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The binding index holds a complete list of IdentityBindings.
    pub bindings_synced: bool,
    /// Signing keys are loaded.
    pub keys_loaded: bool,
}

impl Readiness {
    /// Both.
    pub fn is_ready(&self) -> bool {
        self.bindings_synced && self.keys_loaded
    }
}

struct Inner {
    authn: Authenticator,
    authz: Arc<Authorizer>,
    index: Arc<BindingIndex>,
    tokens: Arc<TokenCache>,
    keys: Arc<KeyFiles>,
    entra: Arc<EntraClient>,
    metrics: Metrics,
    assertion_lifetime: Duration,
}

/// Aborts the background tasks when the last [`Exchanger`] clone goes.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Exchanges service-account tokens for Entra access tokens. Cheap to clone; background tasks
/// (binding watch, key reload) stop when the last clone is dropped.
#[derive(Clone)]
pub struct Exchanger {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger")
            .field("readiness", &self.readiness())
            .finish_non_exhaustive()
    }
}

impl Exchanger {
    /// Builds the exchanger, registers its metrics into `registry`, loads the signing keys (a
    /// missing or invalid set is logged and retried; the exchanger is not ready meanwhile) and
    /// starts watching IdentityBindings and the key directory. Must run inside a tokio runtime.
    pub fn start(client: kube::Client, config: ExchangerConfig, registry: &mut Registry) -> Result<Self> {
        let metrics = Metrics::register(registry);
        Self::start_with_metrics(client, config, metrics)
    }

    /// [`Exchanger::start`] with metrics the caller created (or [`Metrics::default`] for none).
    pub fn start_with_metrics(
        client: kube::Client,
        config: ExchangerConfig,
        metrics: Metrics,
    ) -> Result<Self> {
        let clock = config.clock;
        let entra = Arc::new(EntraClient::new(config.entra, metrics.clone())?);
        let keys = Arc::new(KeyFiles::new(config.keys_dir, metrics.clone()));
        keys.reload_logged();
        let index = Arc::new(BindingIndex::new());
        let tokens = Arc::new(TokenCache::new(
            config.token_cache,
            Arc::clone(&clock),
            metrics.clone(),
        ));
        let authz = Arc::new(Authorizer::new(
            client.clone(),
            config.authz,
            Arc::clone(&clock),
            metrics.clone(),
        ));
        let authn = Authenticator::new(client.clone(), config.authn, Arc::clone(&clock), metrics.clone());

        let watch = {
            let (index, tokens, authz) = (Arc::clone(&index), Arc::clone(&tokens), Arc::clone(&authz));
            tokio::spawn(index.watch(client, move |gone: &[ClientId]| {
                for client_id in gone {
                    tokens.invalidate(client_id);
                    authz.forget_client(client_id);
                }
            }))
        };
        let reload = tokio::spawn(Arc::clone(&keys).follow(config.key_reload_interval));
        let inner = Inner {
            authn,
            authz,
            index,
            tokens,
            keys,
            entra,
            metrics,
            assertion_lifetime: config.assertion_lifetime,
        };
        Ok(Self {
            inner: Arc::new(inner),
            _tasks: Arc::new(Tasks(vec![watch, reload])),
        })
    }

    /// Exchanges a service-account token for an Entra access token: TokenReview, then the
    /// binding, then SubjectAccessReview, then the token cache or one upstream exchange.
    pub async fn exchange(&self, request: ExchangeRequest) -> Result<TokenResponse, ExchangeError> {
        let result = self.inner.exchange(&request).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => {
                tracing::info!(
                    client_id = %truncate(&request.client_id), correlation_id = %request.correlation_id,
                    status = e.status().as_u16(), error = e.error_code(), rejection = %e.rejection(),
                    description = e.description(), "exchange refused"
                );
                e.rejection().as_str()
            }
        };
        self.inner
            .metrics
            .exchanges
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        result
    }

    /// Whether the binding index is synced and keys are loaded.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            bindings_synced: self.inner.index.is_synced(),
            keys_loaded: self.inner.keys.current().is_some(),
        }
    }

    /// Waits until the binding index has synced.
    pub async fn wait_synced(&self) {
        self.inner.index.wait_synced().await;
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The binding index.
    pub fn bindings(&self) -> &BindingIndex {
        &self.inner.index
    }

    /// The signing keys (e.g. to force a reload or read the `kid` in use).
    pub fn keys(&self) -> &KeyFiles {
        &self.inner.keys
    }

    /// The token cache.
    pub fn token_cache(&self) -> &TokenCache {
        &self.inner.tokens
    }
}

impl Inner {
    async fn exchange(&self, req: &ExchangeRequest) -> Result<TokenResponse, ExchangeError> {
        let raw_client_id = req.client_id.trim();
        if raw_client_id.is_empty() {
            return Err(ExchangeError::invalid_request("the request has no client_id"));
        }
        let client_id = ClientId::parse(raw_client_id).map_err(|_| {
            ExchangeError::invalid_request(format!(
                "client_id '{}' is not a GUID like 00000000-0000-0000-0000-000000000000",
                truncate(raw_client_id)
            ))
        })?;
        let scope = match normalize_scope(&req.scope) {
            Some(scope) => scope,
            None if req.scope.trim().is_empty() => {
                return Err(ExchangeError::invalid_request("the request has no scope"));
            }
            None => {
                return Err(ExchangeError::invalid_scope(format!(
                    "scope '{}' names no resource; expected e.g. https://management.azure.com/.default",
                    truncate(req.scope.trim())
                )));
            }
        };
        let assertion = req.assertion.trim();
        if assertion.is_empty() {
            return Err(ExchangeError::invalid_request(
                "the request has no client_assertion",
            ));
        }
        if !self.index.is_synced() {
            return Err(ExchangeError::unavailable(
                "the proxy has not loaded the IdentityBindings yet",
                Some(Duration::from_secs(1)),
            ));
        }

        let identity = self.authn.authenticate(assertion).await?;
        let target = match self.index.lookup(&client_id) {
            BindingLookup::Served(target) => target,
            BindingLookup::Unbound => {
                return Err(ExchangeError::unbound(format!(
                    "no IdentityBinding in this cluster has client id {client_id}"
                )));
            }
            BindingLookup::NotReady { reason, .. } => {
                return Err(ExchangeError::unbound(format!(
                    "the IdentityBinding for client id {client_id} is not Ready ({reason})"
                )));
            }
            BindingLookup::Conflict { bindings } => {
                return Err(ExchangeError::unbound(format!(
                    "IdentityBindings {} for client id {client_id} disagree on tenant, issuer or subject",
                    bindings.join(", ")
                )));
            }
        };
        if let Some(hint) = req.tenant_hint.as_deref()
            && !hint.eq_ignore_ascii_case(&target.tenant_id.to_string())
        {
            tracing::debug!(%client_id, tenant_hint = hint, tenant = %target.tenant_id, "ignoring the tenant in the request path");
        }
        self.authz.authorize(&identity, &client_id).await?;

        let correlation_id = if req.correlation_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.correlation_id.clone()
        };
        let fetch = Fetch {
            entra: Arc::clone(&self.entra),
            keys: Arc::clone(&self.keys),
            target,
            scope: scope.clone(),
            claims: req.claims.clone().filter(|c| !c.trim().is_empty()),
            correlation_id,
            lifetime: self.assertion_lifetime,
        };
        if fetch.claims.is_some() {
            self.metrics.cache("token", "bypass");
            let token = fetch.run().await?;
            tracing::info!(%client_id, user = %identity, "exchanged a token (claims, not cached)");
            return Ok(uncached_response(&token));
        }
        let key = CacheKey { client_id, scope };
        let (result, lookup) = self.tokens.get(key, move || fetch.run()).await;
        self.metrics.cache("token", lookup.as_str());
        if lookup == TokenLookup::Miss {
            tracing::info!(%client_id, user = %identity, "exchanged a token");
        } else {
            tracing::debug!(%client_id, user = %identity, lookup = lookup.as_str(), "served a cached token");
        }
        result
    }
}

/// One upstream exchange, owning what it needs so it can outlive the request that started it.
struct Fetch {
    entra: Arc<EntraClient>,
    keys: Arc<KeyFiles>,
    target: Arc<BindingTarget>,
    scope: String,
    claims: Option<String>,
    correlation_id: String,
    lifetime: Duration,
}

impl Fetch {
    async fn run(self) -> Result<EntraToken, ExchangeError> {
        let claims = AssertionClaims::new(self.target.issuer.clone(), self.target.subject.clone())
            .with_lifetime(self.lifetime);
        let keys = Arc::clone(&self.keys);
        let mint = move || -> Result<MintedAssertion, ExchangeError> {
            let set = keys.current().ok_or_else(|| {
                ExchangeError::unavailable(
                    "the proxy has no signing keys (the key Secret is not mounted or not valid)",
                    Some(Duration::from_secs(5)),
                )
            })?;
            let now = jiff::Timestamp::try_from(SystemTime::now())
                .map_err(|e| ExchangeError::internal(format!("the system clock is unusable: {e}")))?;
            mint_assertion(set.signing_key(), &claims, now)
                .map_err(|e| ExchangeError::internal(format!("signing the client assertion failed: {e}")))
        };
        let request = TokenRequest {
            tenant: &self.target.tenant_id,
            client_id: &self.target.client_id,
            scope: &self.scope,
            claims: self.claims.as_deref(),
            correlation_id: &self.correlation_id,
        };
        self.entra.request_token(request, &mint).await
    }
}

fn uncached_response(token: &EntraToken) -> TokenResponse {
    TokenResponse {
        token_type: "Bearer",
        expires_in: token.expires_in,
        ext_expires_in: token.ext_expires_in,
        access_token: token.access_token.clone(),
        refresh_in: token.refresh_in.filter(|r| *r < token.expires_in),
    }
}

/// At most 64 characters of untrusted input, for messages and logs.
fn truncate(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}
