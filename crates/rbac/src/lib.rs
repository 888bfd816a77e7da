//! Kubernetes RBAC for idbind: generate the AKS-compatible ClusterRole and ClusterRoleBinding that
//! let service accounts use a managed identity, and evaluate RBAC exactly as the Kubernetes RBAC
//! authorizer does (who may use which identity).
//!
//! - [`generate`] builds `use-mi-<clientId>` objects from an IdentityBinding's `allowedSubjects`.
//! - [`Authorizer`] answers [`can`](Authorizer::can), [`who_can`](Authorizer::who_can) and
//!   SubjectAccessReviews over a [`RbacSnapshot`] of ClusterRoles, ClusterRoleBindings, Roles and
//!   RoleBindings: wildcards, subresources, `resourceNames`, namespace scoping of RoleBindings,
//!   aggregated ClusterRoles, User/Group/ServiceAccount subjects and non-resource URLs.
//!
//! Pure logic, no I/O: rebuild the authorizer from a fresh snapshot when objects change.
//!
//! ```
//! use idbind_model::{AllowedSubject, ClientId};
//! use idbind_rbac::{RbacSnapshot, ResourceAttributes, UserInfo, generate};
//!
//! let client_id = ClientId::parse("22222222-2222-2222-2222-222222222222")?;
//! let allowed = [AllowedSubject::parse("payments/api")?, AllowedSubject::parse("batch")?];
//! let rbac = generate(&client_id, &allowed);
//! assert_eq!(rbac.cluster_role.metadata.name.as_deref(), Some("use-mi-22222222-2222-2222-2222-222222222222"));
//!
//! let authorizer = RbacSnapshot::default().with_generated(rbac).authorizer();
//! let use_identity = ResourceAttributes::use_managed_identity(&client_id);
//! assert!(authorizer.can(&UserInfo::service_account("payments", "api"), &use_identity).allowed);
//! assert!(authorizer.can(&UserInfo::service_account("batch", "any-job"), &use_identity).allowed);
//! assert!(!authorizer.can(&UserInfo::service_account("payments", "web"), &use_identity).allowed);
//!
//! let who = authorizer.who_can_request(&use_identity);
//! assert_eq!(who.iter().map(ToString::to_string).collect::<Vec<_>>(), [
//!     "Group system:serviceaccounts:batch",
//!     "ServiceAccount payments/api",
//! ]);
//! # Ok::<(), idbind_model::Error>(())
//! ```

mod aggregate;
mod error;
mod evaluate;
mod generate;
mod request;
mod rules;
mod selector;
mod subject;

pub use error::{Error, Result};
pub use evaluate::{Authorizer, RbacSnapshot};
pub use generate::{GeneratedRbac, RBAC_AUTHORIZATION_GROUP, generate, normalize_subjects};
pub use request::{
    AUTHENTICATED_GROUP, Decision, NonResourceAttributes, ResourceAttributes, SERVICE_ACCOUNT_USER_PREFIX,
    SERVICE_ACCOUNTS_GROUP, UserInfo, service_account_user_name, service_accounts_group,
};
pub use subject::Subject;
