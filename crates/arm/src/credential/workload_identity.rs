//! Workload-identity credential: a federated token file (a projected service-account token)
//! exchanged for an Entra token with the `jwt-bearer` client-assertion grant.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use idbind_model::{ClientId, TenantId, env};
use url::Url;

use super::cache::TokenCache;
use super::client_secret::token_url;
use super::token_endpoint::fetch_token;
use super::{AccessToken, Credential};
use crate::error::CredentialError;
use crate::retry::{RetryPolicy, is_retryable_status};
use crate::{CloudConfig, Error, HttpOptions, Result};

const NAME: &str = "WorkloadIdentityCredential";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Tokens for `client_id` obtained with the federated token in `token_file`.
///
/// The file is read again for every token request: the kubelet rotates projected tokens.
pub struct WorkloadIdentityCredential {
    token_url: Url,
    client_id: ClientId,
    token_file: PathBuf,
    http: reqwest::Client,
    retry: RetryPolicy,
    cache: TokenCache,
}

impl WorkloadIdentityCredential {
    /// A credential for `client_id` in `tenant` at `authority_host`, presenting `token_file`.
    pub fn new(
        authority_host: &Url,
        tenant: TenantId,
        client_id: ClientId,
        token_file: impl Into<PathBuf>,
    ) -> Result<Self> {
        Self::with_options(
            authority_host,
            tenant,
            client_id,
            token_file,
            &HttpOptions::default(),
            RetryPolicy::default(),
        )
    }

    /// Like [`new`](Self::new), with transport options and a retry policy for the token endpoint.
    pub fn with_options(
        authority_host: &Url,
        tenant: TenantId,
        client_id: ClientId,
        token_file: impl Into<PathBuf>,
        http: &HttpOptions,
        retry: RetryPolicy,
    ) -> Result<Self> {
        Ok(Self {
            token_url: token_url(authority_host, &tenant)?,
            client_id,
            token_file: token_file.into(),
            http: http.build(false)?,
            retry,
            cache: TokenCache::default(),
        })
    }

    /// From the variables the workload-identity webhook injects: `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and, optionally, `AZURE_AUTHORITY_HOST`
    /// (default: the public cloud).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| Error::config(name, "the variable is not set"))
        };
        let tenant = TenantId::parse(required(env::AZURE_TENANT_ID)?.trim())
            .map_err(|e| Error::config(env::AZURE_TENANT_ID, e.to_string()))?;
        let client = ClientId::parse(required(env::AZURE_CLIENT_ID)?.trim())
            .map_err(|e| Error::config(env::AZURE_CLIENT_ID, e.to_string()))?;
        let file = required(env::AZURE_FEDERATED_TOKEN_FILE)?;
        let authority = match lookup(env::AZURE_AUTHORITY_HOST).filter(|v| !v.trim().is_empty()) {
            Some(a) => crate::cloud::endpoint_url(env::AZURE_AUTHORITY_HOST, &a)?,
            None => CloudConfig::public().authority_host,
        };
        Self::new(&authority, tenant, client, file)
    }

    /// The token file this credential reads.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    async fn assertion(&self) -> Result<String> {
        let file = self.token_file.display();
        let text = tokio::fs::read_to_string(&self.token_file).await.map_err(|e| {
            CredentialError::local(
                NAME,
                format!("could not read the federated token file {file}: {e}"),
            )
            .with_source(e)
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(
                CredentialError::local(NAME, format!("the federated token file {file} is empty")).into(),
            );
        }
        Ok(token.to_owned())
    }

    #[tracing::instrument(name = "token", level = "debug", skip(self), fields(credential = NAME, client_id = %self.client_id))]
    async fn fetch(&self, scope: &str) -> Result<AccessToken> {
        let client_id = self.client_id.to_string();
        let assertion = self.assertion().await?;
        fetch_token(NAME, &self.retry, is_retryable_status, || {
            self.http.post(self.token_url.clone()).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_assertion_type", JWT_BEARER),
                ("client_assertion", assertion.as_str()),
                ("scope", scope),
            ])
        })
        .await
    }
}

#[async_trait]
impl Credential for WorkloadIdentityCredential {
    async fn token(&self, scope: &str) -> Result<AccessToken> {
        self.cache.get(scope, || self.fetch(scope)).await
    }
}

impl fmt::Debug for WorkloadIdentityCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(NAME)
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_configuration_is_read_and_checked() {
        let ok = WorkloadIdentityCredential::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "11111111-1111-1111-1111-111111111111"),
            ("AZURE_CLIENT_ID", "22222222-2222-2222-2222-222222222222"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
        ]))
        .unwrap();
        assert_eq!(ok.token_url.host_str(), Some("login.microsoftonline.us"));
        assert_eq!(
            ok.token_file(),
            Path::new("/var/run/secrets/azure/tokens/azure-identity-token")
        );

        let missing = WorkloadIdentityCredential::from_lookup(lookup(&[(
            "AZURE_TENANT_ID",
            "11111111-1111-1111-1111-111111111111",
        )]))
        .unwrap_err()
        .to_string();
        assert!(missing.contains("AZURE_CLIENT_ID"), "{missing}");

        let bad = WorkloadIdentityCredential::from_lookup(lookup(&[
            ("AZURE_TENANT_ID", "contoso"),
            ("AZURE_CLIENT_ID", "22222222-2222-2222-2222-222222222222"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("AZURE_TENANT_ID") && bad.contains("contoso"),
            "{bad}"
        );
    }

    #[tokio::test]
    async fn missing_and_empty_token_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let c = WorkloadIdentityCredential::new(
            &Url::parse("https://login.microsoftonline.com/").unwrap(),
            TenantId::new_random(),
            ClientId::new_random(),
            &path,
        )
        .unwrap();
        let err = c.token("s/.default").await.unwrap_err().to_string();
        assert!(err.contains("could not read") && err.contains("token"), "{err}");
        std::fs::write(&path, "  \n").unwrap();
        let err = c.token("s/.default").await.unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }
}
