//! The vocabulary of idbind: the `IdentityBinding` custom resource, typed Azure identifiers, and
//! every name derived from them (issuer URLs, the federated identity credential, RBAC object
//! names), and the [`duration`] syntax of the binaries' flags. Pure logic, no I/O.
//!
//! ```
//! use idbind_model::{ClientId, FicSpec, IdentityResourceId, IssuerBaseUrl, TenantId, DEFAULT_FIC_NAME};
//!
//! let identity = IdentityResourceId::parse(
//!     "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/prod/providers/Microsoft.ManagedIdentity/userAssignedIdentities/payments",
//! )?;
//! let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111")?;
//! let client = ClientId::parse("22222222-2222-2222-2222-222222222222")?;
//! let base = IssuerBaseUrl::parse("https://issuer.example.com/")?;
//!
//! let fic = FicSpec::derive(DEFAULT_FIC_NAME, &base, &identity, &tenant, &client)?;
//! assert_eq!(fic.issuer, "https://issuer.example.com/11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222");
//! assert_eq!(fic.subject, identity.to_string().to_lowercase());
//! assert_eq!(idbind_model::rbac_object_name(&client), "use-mi-22222222-2222-2222-2222-222222222222");
//! # Ok::<(), idbind_model::Error>(())
//! ```

mod conditions;
mod crd;
pub mod duration;
mod error;
mod ids;
mod naming;

pub use conditions::set_condition;
pub use crd::{
    AllowedSubject, FederatedCredentialStatus, IdentityBinding, IdentityBindingSpec, IdentityBindingStatus,
    ManagedIdentityRef, condition,
};
pub use error::Error;
pub use ids::{
    ArmResourceId, ClientId, IdentityResourceId, MANAGED_IDENTITY_PROVIDER, PrincipalId, SubscriptionId,
    TenantId, USER_ASSIGNED_IDENTITY_TYPE,
};
pub use naming::*;

/// Re-exported so users of the CRD types need not depend on `k8s-openapi` themselves.
pub use k8s_openapi;
