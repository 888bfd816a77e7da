//! A fixed token (tests, and tools handed a token from elsewhere).

use std::fmt;

use async_trait::async_trait;

use super::{AccessToken, Credential, Secret};
use crate::Result;

/// Always returns the same token, for every scope.
#[derive(Clone)]
pub struct StaticTokenCredential {
    token: AccessToken,
}

impl StaticTokenCredential {
    /// A token that the credential reports as valid for 24 hours from now.
    pub fn new(token: impl Into<Secret>) -> Self {
        let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        Self {
            token: AccessToken::new(token, expires_at),
        }
    }

    /// A token with a known expiry.
    pub fn with_expiry(token: impl Into<Secret>, expires_at: jiff::Timestamp) -> Self {
        Self {
            token: AccessToken::new(token, expires_at),
        }
    }
}

#[async_trait]
impl Credential for StaticTokenCredential {
    async fn token(&self, _scope: &str) -> Result<AccessToken> {
        Ok(self.token.clone())
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenCredential")
            .field("expires_at", &self.token.expires_at)
            .finish_non_exhaustive()
    }
}
