//! An Azure emulator for idbind and its users: the Entra ID token endpoint (client secrets and
//! federated client assertions, validated as Entra does by fetching the issuer's discovery
//! document and JWKS), the ARM subset for user-assigned managed identities and their federated
//! identity credentials (with ARM's rules, 409 on concurrent writes and per-caller throttling),
//! fault injection and request counters. One loopback listener serves everything, so
//! [`Emulator::base_url`] is both the authority host and the ARM endpoint; an admin surface
//! lives under `/_emulator` (see [`admin`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use idbind_emulator::{EmulatorConfig, Route};
//!
//! let emulator = idbind_emulator::start(EmulatorConfig::default()).await?;
//! let sub = emulator.default_subscription();
//! let identity = emulator.create_identity(&sub, "rg", "payments")?;
//! assert_eq!(identity.resource_id.name(), "payments");
//!
//! // idbind's own principal gets an ARM token with its client secret.
//! let sp = emulator.default_principal();
//! let resp: serde_json::Value = reqwest::Client::new()
//!     .post(emulator.token_url(&sp.tenant_id))
//!     .form(&[
//!         ("grant_type", "client_credentials"),
//!         ("client_id", &sp.client_id.to_string()),
//!         ("client_secret", &sp.client_secret),
//!         ("scope", "https://management.azure.com/.default"),
//!     ])
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(resp["token_type"], "Bearer");
//! assert_eq!(emulator.counters().get(Route::EntraToken, 200), 1);
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Routes are named by [`Route`] (`entra.token`, `arm.identity.get`, `arm.fic.put`, ...);
//! faults ([`Fault`]) and [`Counters`] use these names.
//!
//! # Entra
//! `POST /{tenant}/oauth2/v2.0/token` accepts `client_credentials` with a client secret (service
//! principals; also `client_secret_basic`) or a `jwt-bearer` client assertion (identities). An
//! assertion is checked against the identity's federated credentials in this order: JWT shape
//! (AADSTS50027), not one of this emulator's tokens (700222), no credential at all (70021), issuer
//! (700211, exact string), subject (700213, exact and case-sensitive), audience (700212), RS256 only
//! (700027), `exp`/`nbf` within [`EmulatorConfig::clock_skew`] (700024), then the issuer's
//! `/.well-known/openid-configuration` and `jwks_uri` (50166 when unreachable; cached for
//! [`EmulatorConfig::jwks_cache_ttl`], refetched once on an unknown `kid`; plain http only for
//! loopback hosts) and the signature (700027). Other codes: 900144 (missing parameter), 90002
//! (unknown tenant), 700016 (unknown client id), 7000218 (no secret or assertion), 7000215 (wrong
//! secret), 700022/70011 (scope). Issued tokens are RS256 JWTs with `iss = {base_url}/{tenant}/v2.0`,
//! `aud` from the scope, `appid`, `oid` = `sub`, `tid`, `idtyp: app`, `xms_mirid` (identities),
//! verifiable with the JWKS at [`Emulator::jwks_url`].
//!
//! # ARM
//! Bearer tokens from this emulator for `https://management.azure.com/` (401
//! `AuthenticationFailed`, `InvalidAuthenticationToken`, `ExpiredAuthenticationToken`,
//! `InvalidAuthenticationTokenAudience`, `InvalidAuthenticationTokenTenant`); principals limited by
//! ARM scopes get 403 `AuthorizationFailed`. `api-version` must be one of
//! [`IDENTITY_API_VERSIONS`] / [`FIC_API_VERSIONS`] (400 `MissingApiVersionParameter`,
//! `InvalidApiVersionParameter`, `NoRegisteredProviderFound`). Federated credentials follow the
//! documented rules: name pattern (400), exactly one audience `api://AzureADTokenExchange` (400),
//! non-empty properties (400), unique issuer+subject (400), parent identity (404
//! `ParentResourceNotFound`), at most 20 per identity (400 [`FIC_LIMIT_CODE`], the emulator's own
//! code: Entra's is undocumented), concurrent writes to one identity (409
//! `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`, see
//! [`EmulatorConfig::fic_write_hold`]). Every caller has token buckets per operation class
//! ([`ThrottleConfig`]; 429 `TooManyRequests` with `Retry-After` and
//! `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}`).
//!
//! # Faults
//! [`Fault`]s add latency, fail the next N requests, fail a random fraction, answer 429 bursts
//! with `Retry-After`, or take a route (or all, [`RouteSelector::All`]) down: [`Fault::outage`]
//! answers 503, [`Fault::connection_reset`] closes the connection without an answer (counted with
//! status [`STATUS_CONNECTION_RESET`]). The admin surface is never faulted nor counted.
//!
//! # State and seeds
//! With [`EmulatorConfig::state_file`] everything (tenants, principals, subscriptions, identities,
//! credentials and the token-signing key) is loaded at start and rewritten after every change via
//! a temp file, fsync and rename, so a crash loses at most the change being written and the file
//! is never torn. A [`Seed`] (YAML or JSON, see `examples/seed.yaml`) is applied after loading.
//!
//! # Binary
//! `idbind-emulator --listen 127.0.0.1:8443 [--tls-cert F --tls-key F] [--advertised-host NAME]
//! [--seed FILE] [--state FILE] [--jwks-cache-secs N] [--issuer-ca PEM] [--no-throttle]` prints one
//! JSON line ([`EmulatorInfo`]: `baseUrl`, `authorityHost`, `armEndpoint`, `adminUrl`, `tenantId`,
//! `subscriptionId`, `clientId`, `clientSecret`, `jwksUrl`, `openidConfigurationUrl`) when ready,
//! logs to stderr, and exits cleanly on SIGTERM or ctrl-c.

pub mod admin;
mod arm;
mod clock;
mod config;
mod counters;
mod entra;
mod error;
mod faults;
mod jwt;
mod keys;
mod ops;
mod persist;
mod routes;
mod seed;
mod server;
mod state;
mod throttle;
mod urls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use idbind_model::{ClientId, IdentityResourceId, PrincipalId, SubscriptionId, TenantId};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use arm::{FIC_API_VERSIONS, IDENTITY_API_VERSIONS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Bucket, EmulatorConfig, ThrottleConfig};
pub use counters::{Counters, STATUS_CONNECTION_RESET};
pub use error::{Error, Result};
pub use faults::{Fault, OutageMode};
pub use ops::{FicInfo, IdentityInfo, ServicePrincipalCredentials, ServicePrincipalSpec};
pub use routes::{ADMIN_PREFIX, Route, RouteSelector};
pub use seed::{
    Seed, SeedFic, SeedIdentity, SeedResourceGroup, SeedServicePrincipal, SeedSubscription, SeedTenant,
};
pub use state::FIC_LIMIT_CODE;

use crate::entra::issuer_cache::IssuerCache;
use crate::faults::Faults;
use crate::keys::Signer;
use crate::persist::Persister;
use crate::server::{Settings, Shared};
use crate::state::State;
use crate::throttle::Throttle;

/// The scope idbind asks Entra for to call ARM.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// What a running emulator tells its users (the binary prints this as its ready line, see
/// [`start_and_announce`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorInfo {
    /// `http(s)://host:port`, no trailing slash.
    pub base_url: String,
    /// The Entra authority host (= `base_url`).
    pub authority_host: String,
    /// The ARM endpoint (= `base_url`).
    pub arm_endpoint: String,
    /// The admin surface, `{base_url}/_emulator`.
    pub admin_url: String,
    /// The default tenant.
    pub tenant_id: TenantId,
    /// The default subscription.
    pub subscription_id: String,
    /// The default service principal's client id.
    pub client_id: ClientId,
    /// The default service principal's secret.
    pub client_secret: String,
    /// The JWKS of the emulator's token signer.
    pub jwks_url: String,
    /// The default tenant's OpenID configuration.
    pub openid_configuration_url: String,
}

/// A running emulator. Dropping it stops the server (the port is freed once the runtime has
/// processed the abort); [`Emulator::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    addr: SocketAddr,
}

/// Starts an emulator: loads the state file (if any), applies the seed (if any), binds the
/// listener and serves until dropped.
pub async fn start(config: EmulatorConfig) -> Result<Emulator> {
    let persister = config.state_file.clone().map(Persister::new);
    let loaded = match &persister {
        Some(p) => p.load()?,
        None => None,
    };
    let (state, signer) = match loaded {
        Some(state) => {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&state.signing_key)
                .map_err(|e| Error::StateParse {
                    path: config.state_file.clone().unwrap_or_default(),
                    reason: format!("signingKey is not base64: {e}"),
                })?;
            let signer = Signer::from_pkcs8(&der)?;
            (state, signer)
        }
        None => {
            let signer = Signer::generate()?;
            let tenant = TenantId::new_random();
            let principal = ops::new_principal(&ServicePrincipalSpec::default(), tenant);
            let key = base64::engine::general_purpose::STANDARD.encode(signer.pkcs8());
            (
                State::new(key, tenant, principal, &SubscriptionId::new_random().to_string()),
                signer,
            )
        }
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let host = match &config.advertised_host {
        Some(h) => h.clone(),
        None if addr.is_ipv6() => format!("[{}]", addr.ip()),
        None => addr.ip().to_string(),
    };
    let base_url = format!("{scheme}://{host}:{}", addr.port());

    let settings = Settings {
        clock: Arc::clone(&config.clock),
        token_lifetime: config.token_lifetime,
        clock_skew: config.clock_skew,
        max_fics_per_identity: config.max_fics_per_identity,
        auto_create_containers: config.auto_create_containers,
    };
    let issuers = IssuerCache::new(
        config.jwks_cache_ttl,
        config.issuer_fetch_timeout,
        &config.issuer_trust_roots_pem,
    )?;
    let shared = Arc::new(Shared::new(
        settings,
        state,
        signer,
        persister,
        Faults::new(config.faults.iter().copied_pairs()),
        Throttle::new(config.throttle),
        issuers,
        config.fic_write_hold,
        base_url.clone(),
    ));
    if let Some(seed) = &config.seed {
        shared.apply_seed(seed)?;
    }
    shared.persist()?;

    let router = entra::router()
        .merge(admin::router())
        .fallback(arm::handle)
        .with_state(Arc::clone(&shared));
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(server::serve(listener, tls, router, Arc::clone(&shared)));
    tracing::info!(%base_url, "emulator listening");
    Ok(Emulator { shared, task, addr })
}

trait CopiedPairs {
    fn copied_pairs(self) -> Vec<(RouteSelector, Fault)>;
}

impl<'a, I: Iterator<Item = &'a (RouteSelector, Fault)>> CopiedPairs for I {
    fn copied_pairs(self) -> Vec<(RouteSelector, Fault)> {
        self.map(|(s, f)| (*s, f.clone())).collect()
    }
}

/// Starts an emulator as the `idbind-emulator` binary and `idbind emulator` do: [`start`], then
/// its [`EmulatorInfo`] as one line of JSON on stdout, the ready line whoever spawned the process
/// waits for. The caller keeps the emulator running and shuts it down.
pub async fn start_and_announce(config: EmulatorConfig) -> Result<Emulator> {
    let emulator = start(config).await?;
    let line = serde_json::to_string(&emulator.info()).map_err(|e| Error::ReadyLine(e.to_string()))?;
    println!("{line}");
    Ok(emulator)
}

pub(crate) fn info_of(shared: &Shared) -> EmulatorInfo {
    let base = shared.base_url().to_owned();
    let (tenant, subscription) = {
        let s = shared.state.read();
        (s.default_tenant, s.default_subscription.clone())
    };
    let sp = shared.default_principal();
    EmulatorInfo {
        authority_host: base.clone(),
        arm_endpoint: base.clone(),
        admin_url: format!("{base}{ADMIN_PREFIX}"),
        tenant_id: tenant,
        subscription_id: subscription,
        client_id: sp
            .as_ref()
            .map(|p| p.client_id)
            .unwrap_or_else(|| ClientId::from_uuid(uuid::Uuid::nil())),
        client_secret: sp.map(|p| p.client_secret).unwrap_or_default(),
        jwks_url: format!("{base}/common/discovery/keys"),
        openid_configuration_url: format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        base_url: base,
    }
}

impl Emulator {
    /// `http(s)://host:port` without trailing slash: the Entra authority host and the ARM endpoint.
    pub fn base_url(&self) -> &str {
        self.shared.base_url()
    }

    /// The ARM endpoint (= [`base_url`](Self::base_url)).
    pub fn arm_endpoint(&self) -> &str {
        self.shared.base_url()
    }

    /// The Entra authority host (= [`base_url`](Self::base_url)).
    pub fn authority_host(&self) -> &str {
        self.shared.base_url()
    }

    /// The admin surface: `{base_url}/_emulator`.
    pub fn admin_url(&self) -> String {
        format!("{}{ADMIN_PREFIX}", self.base_url())
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{base_url}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &TenantId) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url())
    }

    /// The `iss` of tokens issued for `tenant`: `{base_url}/{tenant}/v2.0`.
    pub fn issuer(&self, tenant: &TenantId) -> String {
        self.shared.issuer(tenant)
    }

    /// `{base_url}/{tenant}/v2.0/.well-known/openid-configuration`.
    pub fn openid_configuration_url(&self, tenant: &TenantId) -> String {
        format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            self.base_url()
        )
    }

    /// The JWKS of the emulator's token signer: `{base_url}/common/discovery/keys`.
    pub fn jwks_url(&self) -> String {
        format!("{}/common/discovery/keys", self.base_url())
    }

    /// The `kid` of the emulator's token-signing key.
    pub fn signing_kid(&self) -> String {
        self.shared.signer.kid().to_owned()
    }

    /// Everything the binary prints on its ready line.
    pub fn info(&self) -> EmulatorInfo {
        info_of(&self.shared)
    }

    /// The default tenant.
    pub fn default_tenant(&self) -> TenantId {
        self.shared.state.read().default_tenant
    }

    /// The default subscription id.
    pub fn default_subscription(&self) -> String {
        self.shared.state.read().default_subscription.clone()
    }

    /// The default service principal (unrestricted ARM access).
    pub fn default_principal(&self) -> ServicePrincipalCredentials {
        self.shared
            .default_principal()
            .unwrap_or_else(|| ServicePrincipalCredentials {
                tenant_id: self.default_tenant(),
                client_id: ClientId::from_uuid(uuid::Uuid::nil()),
                client_secret: String::new(),
                object_id: PrincipalId::from_uuid(uuid::Uuid::nil()),
            })
    }

    /// Creates a tenant.
    pub fn create_tenant(&self) -> Result<TenantId> {
        self.shared.create_tenant()
    }

    /// Creates a service principal with a random client id and secret and unrestricted ARM access.
    pub fn create_service_principal(&self, tenant: &TenantId) -> Result<ServicePrincipalCredentials> {
        self.shared.create_service_principal(&ServicePrincipalSpec {
            tenant_id: Some(*tenant),
            ..Default::default()
        })
    }

    /// Creates a service principal as specified (ids, secret, ARM scopes).
    pub fn create_service_principal_with(
        &self,
        spec: &ServicePrincipalSpec,
    ) -> Result<ServicePrincipalCredentials> {
        self.shared.create_service_principal(spec)
    }

    /// Creates (or updates) a user-assigned identity, in the subscription's tenant (the default
    /// tenant for a new subscription).
    pub fn create_identity(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<IdentityInfo> {
        self.shared
            .create_identity(subscription, resource_group, name, None)
    }

    /// An identity, if it exists.
    pub fn identity(&self, id: &IdentityResourceId) -> Option<IdentityInfo> {
        self.shared.identity_info(id)
    }

    /// The federated identity credentials of an identity (`None` if it does not exist).
    pub fn fics(&self, id: &IdentityResourceId) -> Option<Vec<FicInfo>> {
        self.shared.fics(id)
    }

    /// Creates or replaces a FIC, checking the same rules as ARM (name, audience, issuer+subject
    /// uniqueness, the 20 limit) but not throttling or the write hold. Returns whether it was created.
    pub fn put_fic(&self, id: &IdentityResourceId, fic: &FicInfo) -> Result<bool> {
        self.shared.put_fic(id, fic)
    }

    /// Sets the ARM scopes an identity's own tokens may act on (default none).
    pub fn set_identity_arm_scopes(&self, id: &IdentityResourceId, scopes: Vec<String>) -> Result<()> {
        self.shared.set_identity_arm_scopes(id, scopes)
    }

    /// Applies a seed document.
    pub fn apply_seed(&self, seed: &Seed) -> Result<()> {
        self.shared.apply_seed(seed)
    }

    /// Sets (replaces) the fault on a route, or on every route with [`RouteSelector::All`].
    pub fn set_fault(&self, selector: impl Into<RouteSelector>, fault: Fault) {
        self.shared.faults.set(selector.into(), fault);
    }

    /// Removes the fault on one route (or the all-routes fault).
    pub fn clear_fault(&self, selector: impl Into<RouteSelector>) {
        self.shared.faults.clear(Some(selector.into()));
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.shared.faults.clear(None);
    }

    /// Requests so far, per route and status.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// Replaces the throttle configuration (buckets start full).
    pub fn set_throttle(&self, config: ThrottleConfig) {
        self.shared.throttle.set(config);
    }

    /// The current throttle configuration.
    pub fn throttle(&self) -> ThrottleConfig {
        self.shared.throttle.config()
    }

    /// Sets how long a FIC write holds its identity (see [`EmulatorConfig::fic_write_hold`]).
    pub fn set_fic_write_hold(&self, hold: Duration) {
        *self.shared.fic_write_hold.lock() = hold;
    }

    /// Forgets every cached issuer document.
    pub fn flush_issuer_cache(&self) {
        self.shared.issuers.flush();
    }

    /// How many times issuer documents were fetched (one discovery + JWKS pair counts once).
    pub fn issuer_fetches(&self) -> u64 {
        self.shared.issuers.fetches()
    }

    /// Writes the state file now (it is also written after every change).
    pub fn persist(&self) -> Result<()> {
        self.shared.persist()
    }

    /// Stops serving, waits for the listener to close, and writes the state file.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The task only ends by being aborted; its result carries nothing.
        let _ = (&mut self.task).await;
        if let Err(e) = self.shared.persist() {
            tracing::error!(error = %e, "final state write failed");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
