//! Start-up configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use idbind_model::MAX_FICS_PER_IDENTITY;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::faults::Fault;
use crate::routes::RouteSelector;
use crate::seed::Seed;

/// How to start an emulator. `EmulatorConfig::default()` listens on `127.0.0.1:0` over plain
/// HTTP, keeps state in memory only and uses the settings documented on each field.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen (default `127.0.0.1:0`: a free loopback port).
    pub listen: SocketAddr,
    /// Serve HTTPS with this rustls configuration (see `idbind_tls::server_config`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The host name to put in URLs instead of the listen IP (for example `localhost` when the
    /// TLS certificate names it).
    pub advertised_host: Option<String>,
    /// Persist everything in this file (atomically after each change) and load it at start.
    pub state_file: Option<PathBuf>,
    /// Tenants, principals and resources to create at start (existing ones are updated).
    pub seed: Option<Seed>,
    /// Time source for tokens, assertion checks and throttle refills (default: system clock).
    pub clock: Arc<dyn Clock>,
    /// Lifetime of issued access tokens (default 24 h minus 5 min, like managed-identity tokens).
    pub token_lifetime: Duration,
    /// Allowed clock skew on assertion `exp`/`nbf` and ARM bearer tokens (default 5 min).
    pub clock_skew: Duration,
    /// How long fetched issuer documents (discovery + JWKS) are cached (default 0: fetched on
    /// every assertion; real Entra caches for up to about an hour). An unknown `kid` always
    /// refetches.
    pub jwks_cache_ttl: Duration,
    /// Extra trust roots (PEM) for https issuer fetches, added to the system roots.
    pub issuer_trust_roots_pem: Vec<String>,
    /// Timeout of one issuer document fetch (default 10 s).
    pub issuer_fetch_timeout: Duration,
    /// How long a FIC write holds its identity: another FIC write to the same identity during the
    /// hold gets `409 ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`. The
    /// write's response is sent when the hold ends (default 25 ms).
    pub fic_write_hold: Duration,
    /// Maximum FICs per identity (default 20, Entra's limit).
    pub max_fics_per_identity: usize,
    /// Per-caller ARM throttling.
    pub throttle: ThrottleConfig,
    /// Faults active from the start.
    pub faults: Vec<(RouteSelector, Fault)>,
    /// When true (default), every subscription and resource group exists: one seen for the first
    /// time is created in the caller's tenant. When false, unknown ones get ARM's 404
    /// `SubscriptionNotFound` / `ResourceGroupNotFound`.
    pub auto_create_containers: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: None,
            advertised_host: None,
            state_file: None,
            seed: None,
            clock: Arc::new(SystemClock),
            token_lifetime: Duration::from_secs(24 * 3600 - 300),
            clock_skew: Duration::from_secs(300),
            jwks_cache_ttl: Duration::ZERO,
            issuer_trust_roots_pem: Vec::new(),
            issuer_fetch_timeout: Duration::from_secs(10),
            fic_write_hold: Duration::from_millis(25),
            max_fics_per_identity: MAX_FICS_PER_IDENTITY,
            throttle: ThrottleConfig::default(),
            faults: Vec::new(),
            auto_create_containers: true,
        }
    }
}

/// One token bucket: `capacity` requests at once, refilled at `refill_per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Maximum tokens (burst size).
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// Per-caller token-bucket throttling of ARM requests by operation class. A throttled request gets
/// `429 TooManyRequests` with `Retry-After`; every ARM answer carries
/// `x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleConfig {
    /// Whether throttling applies at all.
    pub enabled: bool,
    /// GET and list requests.
    pub reads: Bucket,
    /// PUT requests.
    pub writes: Bucket,
    /// DELETE requests.
    pub deletes: Bucket,
}

impl Default for ThrottleConfig {
    /// ARM's published per-subscription token buckets: reads 250 (+25/s), writes 200 (+10/s),
    /// deletes 200 (+10/s).
    fn default() -> Self {
        Self {
            enabled: true,
            reads: Bucket {
                capacity: 250,
                refill_per_second: 25.0,
            },
            writes: Bucket {
                capacity: 200,
                refill_per_second: 10.0,
            },
            deletes: Bucket {
                capacity: 200,
                refill_per_second: 10.0,
            },
        }
    }
}

impl ThrottleConfig {
    /// No throttling.
    pub fn unlimited() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The same bucket for every class.
    pub fn uniform(capacity: u32, refill_per_second: f64) -> Self {
        let b = Bucket {
            capacity,
            refill_per_second,
        };
        Self {
            enabled: true,
            reads: b,
            writes: b,
            deletes: b,
        }
    }
}
