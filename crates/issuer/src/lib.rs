//! The issuer side of idbind: each member cluster signs client assertions with its own RSA keys,
//! and every user-assigned identity's issuer publishes the union of the public keys of the
//! clusters bound to it (DESIGN.md, "The key idea").
//!
//! - [`SigningKey`], [`KeySet`] and the rotation state machine ([`RotationStep`],
//!   [`RotationPolicy`]), stored in a Kubernetes Secret's `data` ([`KeySet::to_secret_data`]);
//! - [`mint_assertion`]: RS256 client assertions for Entra's federated credential exchange;
//! - [`DiscoveryDocument`] and [`Jwks`], with pure operations on one cluster's keys;
//! - [`IssuerStore`] with ETag compare-and-swap: [`DirectoryStore`] (served by [`router`]),
//!   [`BlobStore`] (Azure Blob Storage or Azurite) and [`MemoryStore`];
//! - [`Publisher`]: `publish` and `withdraw` a cluster's keys, safe against concurrent clusters.
//!
//! ```
//! use std::sync::Arc;
//! use idbind_issuer::{AssertionClaims, ClusterName, KeySet, MemoryStore, Publisher, mint_assertion};
//! use idbind_model::{ClientId, IssuerBaseUrl, TenantId};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let now = jiff::Timestamp::now();
//! let keys = KeySet::generate(ClusterName::parse("east-1")?, now)?;
//!
//! let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111")?;
//! let client = ClientId::parse("22222222-2222-2222-2222-222222222222")?;
//! let publisher = Publisher::new(Arc::new(MemoryStore::new()), IssuerBaseUrl::parse("https://issuer.example.com")?);
//! let outcome = publisher.publish(&tenant, &client, keys.cluster(), &keys.published_keys()).await?;
//! assert!(outcome.jwks_written && outcome.discovery_written);
//!
//! let claims = AssertionClaims::new(outcome.issuer, "/subscriptions/…/userassignedidentities/payments");
//! let assertion = mint_assertion(keys.signing_key(), &claims, now)?;
//! let jwks = publisher.read_jwks(&tenant, &client).await?.expect("published");
//! assert!(jwks.find(&assertion.kid).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assertion;
mod documents;
mod error;
mod keys;
mod publisher;
mod rotation;
mod serve;
mod store;

pub use assertion::{
    AssertionClaims, AssertionPayload, DEFAULT_ASSERTION_LIFETIME, MAX_ASSERTION_LIFETIME, MintedAssertion,
    mint_assertion,
};
pub use documents::{DiscoveryDocument, Jwks, discovery_path, jwks_path};
pub use error::{Error, Result};
pub use keys::{ClusterName, Jwk, PUBLISHED_AT_MEMBER, SigningKey, kid_cluster};
pub use publisher::{PublishOutcome, Publisher, RetryPolicy, WithdrawOutcome};
pub use rotation::{
    KeySet, RotationPhase, RotationPolicy, RotationStep, SECRET_CURRENT_KEY, SECRET_NEXT_KEY,
    SECRET_PREVIOUS_KEY, SECRET_STATE_KEY,
};
pub use serve::{ServeOptions, router, router_with};
pub use store::{
    BlobAuth, BlobStore, DirectoryStore, ETag, IssuerStore, MemoryStore, Precondition, STORAGE_SCOPE,
    validate_path,
};
