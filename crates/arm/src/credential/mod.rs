//! Credentials: where bearer tokens for ARM (and other Azure resources) come from.

mod cache;
mod client_secret;
mod managed_identity;
mod static_token;
mod token_endpoint;
mod workload_identity;

use std::fmt;

use async_trait::async_trait;

pub use client_secret::ClientSecretCredential;
pub use managed_identity::{IMDS_TOKEN_ENDPOINT, ManagedIdentityCredential};
pub use static_token::StaticTokenCredential;
pub use workload_identity::WorkloadIdentityCredential;

use crate::Result;

/// A source of bearer tokens.
///
/// Implementations cache tokens and refresh them before they expire, so callers may ask for a token
/// before every request.
#[async_trait]
pub trait Credential: Send + Sync {
    /// A token for `scope` (e.g. `https://management.azure.com/.default`).
    async fn token(&self, scope: &str) -> Result<AccessToken>;
}

/// A string that must never reach a log: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Send it where it belongs; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bearer token and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    /// The token (redacted in `Debug`).
    pub secret: Secret,
    /// When the token stops being valid.
    pub expires_at: jiff::Timestamp,
}

impl AccessToken {
    /// A token valid until `expires_at`.
    pub fn new(secret: impl Into<Secret>, expires_at: jiff::Timestamp) -> Self {
        Self {
            secret: secret.into(),
            expires_at,
        }
    }
}

#[async_trait]
impl<C: Credential + ?Sized> Credential for std::sync::Arc<C> {
    async fn token(&self, scope: &str) -> Result<AccessToken> {
        (**self).token(scope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let t = AccessToken::new("eyJhbGciOi.super.secret", jiff::Timestamp::UNIX_EPOCH);
        let debug = format!("{t:?}");
        assert!(!debug.contains("super"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(t.secret.to_string(), "<redacted>");
        assert_eq!(t.secret.expose(), "eyJhbGciOi.super.secret");
    }
}
