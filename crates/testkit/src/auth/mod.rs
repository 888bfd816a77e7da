//! Authentication and authorization of the Kubernetes API emulator, as kube-apiserver does them.
//!
//! - [`ServiceAccountIssuer`]: the emulator's service-account issuer (one RSA-2048 key per
//!   instance), its OIDC discovery and JWKS documents, TokenRequest minting
//!   ([`ServiceAccountIssuer::request_token`]) and TokenReview
//!   ([`ServiceAccountIssuer::review_token`]), with kube-apiserver's checks and error messages.
//! - [`BearerAuthenticator`]: who an API request is, from its `Authorization` header (static
//!   admin token, service-account tokens for the API audience, or anonymous).
//! - [`AccessReviewer`]: `system:masters` plus RBAC through [`idbind_rbac`]; answers
//!   SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectAccessReview, and authorizes
//!   every request ([`AccessReviewer::authorize`]).
//! - [`bootstrap_rbac`]: the default ClusterRoles and bindings the API server starts with.
//!
//! Nothing here touches storage: the server passes an [`ObjectLookup`] over its objects (to check
//! that service accounts and bound pods exist with the UIDs in a token) and an
//! [`RbacSnapshot`](idbind_rbac::RbacSnapshot) of its RBAC objects. Time comes from a
//! [`Clock`], so tests move a [`ManualClock`] instead of sleeping.
//!
//! ```
//! use idbind_testkit::auth::{ManualClock, MemoryObjects, ObjectInfo, ObjectKind, ServiceAccountIssuer, TokenBinding};
//! use idbind_testkit::auth::{ObjectRef, TokenError};
//! use std::{sync::Arc, time::Duration};
//!
//! let clock = ManualClock::starting_now();
//! let issuer = ServiceAccountIssuer::builder("https://127.0.0.1:6443").clock(Arc::new(clock.clone())).build()?;
//! let objects = MemoryObjects::new();
//! objects.insert(ObjectKind::ServiceAccount, "apps", "web", ObjectInfo::new("sa-uid"));
//! let binding = TokenBinding {
//!     namespace: "apps".into(),
//!     service_account: ObjectRef::new("web", "sa-uid"),
//!     ..Default::default()
//! };
//! let audience = ["api://AKSIdentityBinding".to_owned()];
//! let minted = issuer.mint(&binding, &audience, 600)?;
//! assert!(issuer.authenticate_token(&minted.token, &audience, &objects).is_ok());
//!
//! clock.advance(Duration::from_secs(600 + 61));
//! let err = issuer.authenticate_token(&minted.token, &audience, &objects).unwrap_err();
//! assert_eq!(err, TokenError::Expired);
//! assert_eq!(err.status_error(), "[invalid bearer token, service account token has expired]");
//! # Ok::<(), idbind_testkit::auth::Error>(())
//! ```

mod authenticator;
mod authz;
mod bootstrap;
mod claims;
mod clock;
mod error;
mod issuer;
mod jws;
mod lookup;
mod token_review;
mod user;

pub use authenticator::{ADMIN_USER, BearerAuthenticator, Unauthorized};
pub use authz::{AccessReviewer, RequestAttributes};
pub use bootstrap::bootstrap_rbac;
pub use claims::{KubernetesClaims, ObjectRef, ServiceAccountClaims};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, FieldError, Result};
pub use issuer::{
    DEFAULT_EXPIRATION_SECONDS, DEFAULT_LEEWAY, IssuerBuilder, JWKS_CONTENT_TYPE, JWKS_PATH,
    MAX_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS, MintedToken, OPENID_CONFIGURATION_PATH,
    ServiceAccountIssuer, TokenBinding,
};
pub use lookup::{MemoryObjects, ObjectInfo, ObjectKind, ObjectLookup};
pub use token_review::{Authenticated, TokenError};
pub use user::{
    ANONYMOUS_USER, EXTRA_CREDENTIAL_ID, EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME, EXTRA_POD_UID,
    SERVICE_ACCOUNT_USER_PREFIX, SERVICE_ACCOUNTS_GROUP, SYSTEM_AUTHENTICATED, SYSTEM_MASTERS,
    SYSTEM_UNAUTHENTICATED, UserInfo, service_account_username,
};

pub use idbind_rbac::{Decision, NonResourceAttributes, RbacSnapshot, ResourceAttributes};
