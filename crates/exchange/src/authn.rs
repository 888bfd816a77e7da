//! Authentication of service-account tokens by TokenReview, cached by token hash.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

use crate::clock::{Clock, from_unix_seconds};
use crate::flight_cache::{FlightCache, Lookup};
use crate::jwt::{self, TokenHash};
use crate::kube_error::classify;
use crate::{ExchangeError, Metrics};

/// Who a service-account token belongs to, as the API server's TokenReview said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `system:serviceaccount:<namespace>:<name>` for service accounts.
    pub username: String,
    /// The service account's uid.
    pub uid: Option<String>,
    /// Groups, e.g. `system:serviceaccounts`, `system:serviceaccounts:<namespace>`.
    pub groups: Vec<String>,
    /// Extra attributes (pod name and uid, node, credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.username)
    }
}

/// Settings of the [`Authenticator`].
#[derive(Clone, Debug)]
pub struct AuthnConfig {
    /// The audience tokens must carry (default `api://AKSIdentityBinding`).
    pub audience: String,
    /// How long an authenticated token is cached (default and maximum sensible value: 2 min); an
    /// entry never outlives the token's `exp`.
    pub ttl: Duration,
    /// How long a rejected token is cached (default 10 s), so a client looping with a bad token
    /// does not load the API server.
    pub negative_ttl: Duration,
    /// Most tokens cached (default 10,000).
    pub capacity: usize,
}

impl Default for AuthnConfig {
    fn default() -> Self {
        Self {
            audience: idbind_model::DEFAULT_SA_TOKEN_AUDIENCE.to_owned(),
            ttl: Duration::from_secs(120),
            negative_ttl: Duration::from_secs(10),
            capacity: 10_000,
        }
    }
}

type Outcome = Result<Arc<Identity>, ExchangeError>;

/// Authenticates service-account tokens with TokenReview (`authentication.k8s.io/v1`) for one
/// audience. Results are cached under the token's SHA-256; concurrent requests with one token
/// cause one review.
pub struct Authenticator {
    api: Api<TokenReview>,
    config: AuthnConfig,
    cache: Arc<FlightCache<TokenHash, Outcome>>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl Authenticator {
    /// An authenticator calling the API server behind `client`.
    pub fn new(client: kube::Client, config: AuthnConfig, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        let cache = Arc::new(FlightCache::new(config.capacity, Arc::clone(&clock), || {
            Err(ExchangeError::unavailable("shutting down", None))
        }));
        Self {
            api: Api::all(client),
            config,
            cache,
            clock,
            metrics,
        }
    }

    /// Authenticates `token` (already trimmed).
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Identity>, ExchangeError> {
        let peek = jwt::peek(token).map_err(ExchangeError::unauthenticated)?;
        let hash = TokenHash::of(token);
        let exp = peek.exp.map(from_unix_seconds);
        if exp.is_some_and(|exp| exp <= self.clock.now()) {
            tracing::debug!(token = %hash, "service-account token expired");
            return Err(ExchangeError::unauthenticated(
                "the service-account token has expired",
            ));
        }
        let api = self.api.clone();
        let audience = self.config.audience.clone();
        let token = token.to_owned();
        let (ttl, negative_ttl) = (self.config.ttl, self.config.negative_ttl);
        let (outcome, lookup) = self
            .cache
            .get_or_fetch(
                hash,
                review(api, token, audience, hash),
                move |outcome, now| match outcome {
                    Ok(_) => {
                        let until = now + ttl;
                        let until = exp.map_or(until, |exp| until.min(exp));
                        (until > now).then_some(until)
                    }
                    Err(e) if e.rejection() == crate::Rejection::Unauthenticated => Some(now + negative_ttl),
                    Err(_) => None,
                },
            )
            .await;
        self.metrics.cache("authn", lookup_label(lookup));
        outcome
    }
}

pub(crate) fn lookup_label(lookup: Lookup) -> &'static str {
    match lookup {
        Lookup::Hit => "hit",
        Lookup::Miss => "miss",
        Lookup::Joined => "joined",
    }
}

async fn review(api: Api<TokenReview>, token: String, audience: String, hash: TokenHash) -> Outcome {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token,
            audiences: Some(vec![audience.clone()]),
        },
        ..Default::default()
    };
    let response = api
        .create(&PostParams::default(), &request)
        .await
        .map_err(|e| classify(&e, "TokenReview"))?;
    let status = response.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let reason = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not authenticated".to_owned());
        tracing::info!(token = %hash, %reason, "service-account token rejected by TokenReview");
        return Err(ExchangeError::unauthenticated(format!(
            "the service-account token was rejected by the Kubernetes API server: {reason}"
        )));
    }
    // An audience-aware API server returns the audiences it validated (TokenReview API docs).
    if !status.audiences.as_ref().is_some_and(|a| a.contains(&audience)) {
        tracing::info!(token = %hash, "TokenReview did not confirm the audience");
        return Err(ExchangeError::unauthenticated(format!(
            "the service-account token is not valid for audience '{audience}'"
        )));
    }
    let Some(user) = status.user else {
        return Err(ExchangeError::unauthenticated(
            "TokenReview returned no user for the token",
        ));
    };
    let identity = Identity {
        username: user.username.unwrap_or_default(),
        uid: user.uid,
        groups: user.groups.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    };
    if identity.username.is_empty() {
        return Err(ExchangeError::unauthenticated(
            "TokenReview returned an empty user name",
        ));
    }
    tracing::debug!(token = %hash, user = %identity.username, "service-account token authenticated");
    Ok(Arc::new(identity))
}
