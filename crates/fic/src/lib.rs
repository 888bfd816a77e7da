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
//! use idbind_arm::{ArmClient, CloudConfig, RetryPolicy, StaticTokenCredential, PUBLIC_ARM_SCOPE};
//! use idbind_fic::FicManager;
//! use idbind_model::{ClientId, FicSpec, IdentityResourceId, IssuerBaseUrl, TenantId, DEFAULT_FIC_NAME};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cloud = CloudConfig::custom("http://127.0.0.1:8080", "http://127.0.0.1:8080", PUBLIC_ARM_SCOPE)?;
//! let arm = ArmClient::new(cloud, Arc::new(StaticTokenCredential::new("token")), RetryPolicy::default())?;
//! let manager = FicManager::new(arm);
//!
//! let identity = IdentityResourceId::new("00000000-0000-0000-0000-000000000001", "rg", "payments")?;
//! let spec = FicSpec::derive(
//!     DEFAULT_FIC_NAME,
//!     &IssuerBaseUrl::parse("https://issuer.example.com")?,
//!     &identity,
//!     &TenantId::parse("11111111-1111-1111-1111-111111111111")?,
//!     &ClientId::parse("22222222-2222-2222-2222-222222222222")?,
//! )?;
//! assert_eq!(spec.subject, identity.to_lowercase());
//! // manager.ensure(&identity, &spec).await? returns the credential and how it was found.
//! # let _ = (manager, spec);
//! # Ok(())
//! # }
//! ```

mod error;
mod locks;
mod manager;

pub use error::{Error, FicSummary, Result};
pub use manager::{EnsureOutcome, Ensured, FicManager, GcOutcome};
