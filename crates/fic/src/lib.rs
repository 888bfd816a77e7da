//! The one federated identity credential (FIC) idbind keeps on each user-assigned managed
//! identity (DESIGN.md, flow 1), on top of [`idbind_arm`].
//!
//! [`FicManager::ensure`] lists the identity's credentials and reuses any with idbind's issuer and
//! subject, whatever its name; otherwise it creates one, never blindly: at Entra's limit of 20 it
//! returns [`Error::LimitReached`] listing what is there. Writes to one identity are serialized in
//! the process; 409 Conflicts from other processes and failed or uncertain writes are retried with
//! backoff, listing again first. [`FicManager::delete_if_unused`] is the opt-in garbage
//! collection, deciding through a caller-supplied check.
//!
//! ```
//! use std::sync::Arc;
//! use idbind_arm::{ArmClient, ClientSecretCredential, CloudConfig, RetryPolicy, PUBLIC_ARM_SCOPE};
//! use idbind_fic::{EnsureOutcome, FicManager, GcOutcome};
//! use idbind_model::{FicSpec, IssuerBaseUrl, DEFAULT_FIC_NAME};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The idbind emulator stands in for Azure; against Azure use CloudConfig::public().
//! let emulator = idbind_emulator::start(Default::default()).await?;
//! let identity = emulator.create_identity(&emulator.default_subscription(), "rg", "payments")?;
//! let sp = emulator.default_principal();
//! let cloud = CloudConfig::custom(emulator.base_url(), emulator.base_url(), PUBLIC_ARM_SCOPE)?;
//! let credential =
//!     ClientSecretCredential::new(&cloud.authority_host, sp.tenant_id, sp.client_id, sp.client_secret)?;
//! let manager = FicManager::new(ArmClient::new(cloud, Arc::new(credential), RetryPolicy::default())?);
//!
//! let spec = FicSpec::derive(
//!     DEFAULT_FIC_NAME,
//!     &IssuerBaseUrl::parse("https://issuer.example.com")?,
//!     &identity.resource_id,
//!     &identity.tenant_id,
//!     &identity.client_id,
//! )?;
//! let ensured = manager.ensure(&identity.resource_id, &spec).await?;
//! assert_eq!((ensured.outcome, ensured.fic.name.as_str()), (EnsureOutcome::Created, "idbind"));
//! // Idempotent: the second call finds it.
//! assert_eq!(manager.ensure(&identity.resource_id, &spec).await?.outcome, EnsureOutcome::Present);
//!
//! // Opt-in GC: the caller decides whether any cluster key is left in the identity's JWKS.
//! let gc = manager.delete_if_unused(&identity.resource_id, &spec, || async { Ok(true) }).await?;
//! assert_eq!(gc, GcOutcome::Deleted { name: "idbind".into() });
//! # Ok(())
//! # }
//! ```

mod error;
mod locks;
mod manager;

pub use error::{Error, FicSummary, Result};
pub use manager::{EnsureOutcome, Ensured, FicManager, GcOutcome};
