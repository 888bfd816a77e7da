//! Managed-identity credential through the instance metadata service (IMDS).

use std::fmt;

use async_trait::async_trait;
use idbind_model::ClientId;
use url::Url;

use super::cache::TokenCache;
use super::token_endpoint::fetch_token;
use super::{AccessToken, Credential};
use crate::retry::{RetryPolicy, is_retryable_status};
use crate::{Error, HttpOptions, Result};

const NAME: &str = "ManagedIdentityCredential";

/// The IMDS token endpoint of Azure VMs and VM scale sets.
pub const IMDS_TOKEN_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Tokens for the managed identity of the machine (system-assigned, or the user-assigned identity
/// `client_id`), from IMDS:
/// `GET {endpoint}?api-version=2018-02-01&resource=<scope without /.default>[&client_id=…]` with
/// `Metadata: true`. Never goes through a proxy.
pub struct ManagedIdentityCredential {
    endpoint: Url,
    client_id: Option<ClientId>,
    http: reqwest::Client,
    retry: RetryPolicy,
    cache: TokenCache,
}

impl ManagedIdentityCredential {
    /// A credential for the system-assigned identity (`None`) or the user-assigned identity
    /// `client_id`, at the standard IMDS endpoint.
    pub fn new(client_id: Option<ClientId>) -> Result<Self> {
        let endpoint =
            Url::parse(IMDS_TOKEN_ENDPOINT).map_err(|e| Error::config("IMDS endpoint", e.to_string()))?;
        Self::with_options(
            endpoint,
            client_id,
            &HttpOptions::default(),
            RetryPolicy::default(),
        )
    }

    /// A credential against another endpoint (tests, emulators), with transport options and a
    /// retry policy. IMDS answers 404 and 410 while an identity is being assigned or IMDS is
    /// upgrading; those are retried like 429 and 5xx.
    pub fn with_options(
        endpoint: Url,
        client_id: Option<ClientId>,
        http: &HttpOptions,
        retry: RetryPolicy,
    ) -> Result<Self> {
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host().is_none() {
            return Err(Error::config(
                "IMDS endpoint",
                format!("{endpoint} is not an http(s) URL"),
            ));
        }
        Ok(Self {
            endpoint,
            client_id,
            http: http.build(true)?,
            retry,
            cache: TokenCache::default(),
        })
    }

    #[tracing::instrument(name = "token", level = "debug", skip(self), fields(credential = NAME, client_id = ?self.client_id))]
    async fn fetch(&self, scope: &str) -> Result<AccessToken> {
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let client_id = self.client_id.map(|c| c.to_string());
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", "2018-02-01")
                .append_pair("resource", resource);
            if let Some(c) = &client_id {
                query.append_pair("client_id", c);
            }
        }
        fetch_token(NAME, &self.retry, is_imds_retryable, || {
            self.http.get(url.clone()).header("Metadata", "true")
        })
        .await
    }
}

fn is_imds_retryable(status: u16) -> bool {
    status == 404 || status == 410 || is_retryable_status(status)
}

#[async_trait]
impl Credential for ManagedIdentityCredential {
    async fn token(&self, scope: &str) -> Result<AccessToken> {
        self.cache.get(scope, || self.fetch(scope)).await
    }
}

impl fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("endpoint", &self.endpoint.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}
