//! Client-secret credential (a service principal's secret, client-credentials grant).

use std::fmt;

use async_trait::async_trait;
use idbind_model::{ClientId, TenantId};
use url::Url;

use super::cache::TokenCache;
use super::token_endpoint::fetch_token;
use super::{AccessToken, Credential, Secret};
use crate::cloud::endpoint_url;
use crate::retry::{RetryPolicy, is_retryable_status};
use crate::{HttpOptions, Result};

const NAME: &str = "ClientSecretCredential";

/// Tokens for a service principal from its client secret
/// (`POST {authority}/{tenant}/oauth2/v2.0/token`, `grant_type=client_credentials`).
pub struct ClientSecretCredential {
    token_url: Url,
    client_id: ClientId,
    secret: Secret,
    http: reqwest::Client,
    retry: RetryPolicy,
    cache: TokenCache,
}

impl ClientSecretCredential {
    /// A credential for `client_id` in `tenant` at `authority_host` (e.g.
    /// [`CloudConfig::authority_host`](crate::CloudConfig::authority_host)).
    pub fn new(
        authority_host: &Url,
        tenant: TenantId,
        client_id: ClientId,
        secret: impl Into<Secret>,
    ) -> Result<Self> {
        Self::with_options(
            authority_host,
            tenant,
            client_id,
            secret,
            &HttpOptions::default(),
            RetryPolicy::default(),
        )
    }

    /// Like [`new`](Self::new), with transport options and a retry policy for the token endpoint.
    pub fn with_options(
        authority_host: &Url,
        tenant: TenantId,
        client_id: ClientId,
        secret: impl Into<Secret>,
        http: &HttpOptions,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let token_url = token_url(authority_host, &tenant)?;
        Ok(Self {
            token_url,
            client_id,
            secret: secret.into(),
            http: http.build(false)?,
            retry,
            cache: TokenCache::default(),
        })
    }

    #[tracing::instrument(name = "token", level = "debug", skip(self), fields(credential = NAME, client_id = %self.client_id))]
    async fn fetch(&self, scope: &str) -> Result<AccessToken> {
        let client_id = self.client_id.to_string();
        fetch_token(NAME, &self.retry, is_retryable_status, || {
            self.http.post(self.token_url.clone()).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("scope", scope),
            ])
        })
        .await
    }
}

#[async_trait]
impl Credential for ClientSecretCredential {
    async fn token(&self, scope: &str) -> Result<AccessToken> {
        self.cache.get(scope, || self.fetch(scope)).await
    }
}

impl fmt::Debug for ClientSecretCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`.
pub(crate) fn token_url(authority_host: &Url, tenant: &TenantId) -> Result<Url> {
    let base = endpoint_url("authority host", authority_host.as_str())?;
    base.join(&format!("{tenant}/oauth2/v2.0/token"))
        .map_err(|e| crate::Error::config("authority host", format!("{authority_host}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_keeps_an_authority_path() {
        let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap();
        let u = token_url(&Url::parse("https://login.microsoftonline.com").unwrap(), &tenant).unwrap();
        assert_eq!(
            u.as_str(),
            "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        );
        let u = token_url(&Url::parse("http://127.0.0.1:9/entra").unwrap(), &tenant).unwrap();
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:9/entra/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let c = ClientSecretCredential::new(
            &Url::parse("https://login.microsoftonline.com/").unwrap(),
            TenantId::new_random(),
            ClientId::new_random(),
            "hunter2",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
