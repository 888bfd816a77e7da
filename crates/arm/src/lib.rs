//! Azure Resource Manager client for idbind: credentials, user-assigned managed identities and
//! their federated identity credentials (FICs).
//!
//! - [`Credential`] is where bearer tokens come from: [`ClientSecretCredential`],
//!   [`WorkloadIdentityCredential`] (a federated token file), [`ManagedIdentityCredential`] (IMDS)
//!   and [`StaticTokenCredential`]. The first three cache tokens per scope, refresh them before
//!   they expire (5 minutes before, or at half-life for short-lived tokens) and make one refresh
//!   at a time per scope.
//! - [`CloudConfig`] names the Entra authority host, the ARM endpoint and the ARM token scope of a
//!   cloud: [`CloudConfig::public`], [`CloudConfig::us_government`], [`CloudConfig::china`] or
//!   [`CloudConfig::custom`] (the idbind emulator).
//! - [`ArmClient`] has typed operations ([`ArmClient::get_identity`], [`ArmClient::list_fics`],
//!   [`ArmClient::put_fic`], ...). Requests are retried per [`RetryPolicy`] on 408, 429, 5xx
//!   (not 501/505) and transport failures, honouring `Retry-After`; errors are typed
//!   ([`enum@Error`], [`ArmError`] with status, ARM code, message and request ids).
//!
//! No HTTP types appear in the API, and tokens never reach a log: [`Secret`] prints `<redacted>`.
//!
//! ```
//! use std::sync::Arc;
//! use idbind_arm::{ArmClient, CloudConfig, Credential, RetryPolicy, StaticTokenCredential, PUBLIC_ARM_SCOPE};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> idbind_arm::Result<()> {
//! let credential = Arc::new(StaticTokenCredential::new("a-token"));
//! let token = credential.token(PUBLIC_ARM_SCOPE).await?;
//! assert_eq!(token.secret.expose(), "a-token");
//! assert_eq!(format!("{:?}", token.secret), "Secret(<redacted>)");
//!
//! // An emulator on loopback serves both Entra and ARM at one base URL.
//! let cloud = CloudConfig::custom("http://127.0.0.1:8080", "http://127.0.0.1:8080", PUBLIC_ARM_SCOPE)?;
//! let client = ArmClient::new(cloud, credential, RetryPolicy::default())?;
//! assert_eq!(client.api_version(), idbind_arm::MANAGED_IDENTITY_API_VERSION);
//! assert_eq!(CloudConfig::public().arm_endpoint.as_str(), "https://management.azure.com/");
//! # Ok(())
//! # }
//! ```
//!
//! Against the idbind emulator (the same code runs against Azure with [`CloudConfig::public`]):
//!
//! ```
//! use std::sync::Arc;
//! use idbind_arm::{ArmClient, ClientSecretCredential, CloudConfig, FicProperties, RetryPolicy, PUBLIC_ARM_SCOPE};
//! use idbind_model::{IdentityResourceId, ENTRA_FIC_AUDIENCE};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = idbind_emulator::start(Default::default()).await?;
//! let sp = emulator.default_principal();
//! let cloud = CloudConfig::custom(emulator.base_url(), emulator.base_url(), PUBLIC_ARM_SCOPE)?;
//! let credential =
//!     ClientSecretCredential::new(&cloud.authority_host, sp.tenant_id, sp.client_id, sp.client_secret)?;
//! let arm = ArmClient::new(cloud, Arc::new(credential), RetryPolicy::default())?;
//!
//! let id = IdentityResourceId::new(&emulator.default_subscription(), "rg", "payments")?;
//! let identity = arm.create_identity(&id, "westeurope").await?;
//! assert_eq!(arm.get_identity(&id).await?.client_id, identity.client_id);
//!
//! let properties = FicProperties {
//!     issuer: "https://issuer.example.com/tenant/client".into(),
//!     subject: id.to_lowercase(),
//!     audiences: vec![ENTRA_FIC_AUDIENCE.into()],
//! };
//! arm.put_fic(&id, "idbind", &properties).await?;
//! assert_eq!(arm.list_fics(&id).await?.len(), 1);
//! assert!(arm.delete_fic(&id, "idbind").await?);
//! assert!(arm.get_fic(&id, "idbind").await?.is_none());
//! # Ok(())
//! # }
//! ```

mod client;
mod cloud;
mod credential;
mod error;
mod http;
mod lro;
mod models;
mod retry;

pub use client::{ArmClient, ArmOptions, MANAGED_IDENTITY_API_VERSION};
pub use cloud::{CloudConfig, PUBLIC_ARM_SCOPE};
pub use credential::{
    AccessToken, ClientSecretCredential, Credential, IMDS_TOKEN_ENDPOINT, ManagedIdentityCredential, Secret,
    StaticTokenCredential, WorkloadIdentityCredential,
};
pub use error::{ArmError, BoxError, CredentialError, Error, Result};
pub use http::HttpOptions;
pub use models::{FederatedCredential, FicProperties, Identity};
pub use retry::{RetryEvent, RetryPolicy};
