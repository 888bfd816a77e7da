//! Authentication of API requests from their `Authorization` header: static bearer tokens (the
//! admin token of the kubeconfig, and any users a test adds), service-account tokens for the API
//! server's audience, and anonymous requests.

use aws_lc_rs::constant_time::verify_slices_are_equal;

use super::issuer::ServiceAccountIssuer;
use super::lookup::ObjectLookup;
use super::token_review::TokenError;
use super::user::{SYSTEM_MASTERS, UserInfo};

/// User name of the emulator's admin.
pub const ADMIN_USER: &str = "admin";

/// Why a request was not authenticated: the API server answers `401 Unauthorized`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unauthorized {
    /// No credentials and anonymous requests are disabled.
    #[error("no credentials and anonymous requests are disabled")]
    NoCredentials,
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("invalid Authorization header: expected \"Bearer <token>\"")]
    MalformedHeader,
    /// The token is not a static token and not a valid service-account token.
    #[error("{}", .0.status_error())]
    InvalidToken(TokenError),
}

/// Authenticates API requests by bearer token.
///
/// ```
/// use idbind_testkit::auth::{BearerAuthenticator, MemoryObjects, ServiceAccountIssuer};
///
/// let issuer = ServiceAccountIssuer::new("https://127.0.0.1:6443")?;
/// let auth = BearerAuthenticator::new(issuer, "s3cret");
/// let user = auth.authenticate(Some("Bearer s3cret"), &MemoryObjects::new()).unwrap();
/// assert_eq!(user.username, "admin");
/// assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
/// assert!(auth.authenticate(Some("Bearer nope"), &MemoryObjects::new()).is_err());
/// assert_eq!(auth.authenticate(None, &MemoryObjects::new()).unwrap().username, "system:anonymous");
/// # Ok::<(), idbind_testkit::auth::Error>(())
/// ```
#[derive(Clone)]
pub struct BearerAuthenticator {
    issuer: ServiceAccountIssuer,
    static_tokens: Vec<(String, UserInfo)>,
    anonymous: bool,
}

impl std::fmt::Debug for BearerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthenticator")
            .field("issuer", &self.issuer.issuer())
            .field(
                "static_users",
                &self
                    .static_tokens
                    .iter()
                    .map(|(_, u)| &u.username)
                    .collect::<Vec<_>>(),
            )
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl BearerAuthenticator {
    /// Accepts `admin_token` as user `admin` in `system:masters`, service-account tokens of
    /// `issuer` valid for the API audiences, and anonymous requests (kube-apiserver's default
    /// `--anonymous-auth=true`).
    pub fn new(issuer: ServiceAccountIssuer, admin_token: impl Into<String>) -> Self {
        Self {
            issuer,
            static_tokens: vec![(admin_token.into(), UserInfo::new(ADMIN_USER, [SYSTEM_MASTERS]))],
            anonymous: true,
        }
    }

    /// Also accepts `token` as `user` (as a `--token-auth-file` line does).
    /// `system:authenticated` is added to its groups.
    pub fn with_static_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.static_tokens.push((token.into(), user));
        self
    }

    /// Allows or rejects requests without credentials.
    pub fn with_anonymous(mut self, allowed: bool) -> Self {
        self.anonymous = allowed;
        self
    }

    /// The service-account issuer whose tokens are accepted.
    pub fn issuer(&self) -> &ServiceAccountIssuer {
        &self.issuer
    }

    /// Authenticates a request from its `Authorization` header value (`None` when absent).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        objects: &dyn ObjectLookup,
    ) -> Result<UserInfo, Unauthorized> {
        let Some(header) = authorization else {
            return if self.anonymous {
                Ok(UserInfo::anonymous())
            } else {
                Err(Unauthorized::NoCredentials)
            };
        };
        let mut parts = header.trim().splitn(2, ' ');
        let (scheme, token) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default().trim(),
        );
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Unauthorized::MalformedHeader);
        }
        self.authenticate_token(token, objects)
    }

    /// Authenticates a bearer token.
    pub fn authenticate_token(
        &self,
        token: &str,
        objects: &dyn ObjectLookup,
    ) -> Result<UserInfo, Unauthorized> {
        for (known, user) in &self.static_tokens {
            if verify_slices_are_equal(known.as_bytes(), token.as_bytes()).is_ok() {
                return Ok(user.clone().with_authenticated_group());
            }
        }
        self.issuer
            .authenticate_token(token, &[], objects)
            .map(|a| a.user)
            .map_err(Unauthorized::InvalidToken)
    }
}
