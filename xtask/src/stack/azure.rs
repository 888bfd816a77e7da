//! The Azure emulator as a process, and the Azure operations the scenarios use.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::Deserialize;

use super::process::{Process, ProcessSpec};

/// ARM api-version for user-assigned identities and their federated credentials.
const MSI_API_VERSION: &str = "2024-11-30";
/// The scope of ARM tokens.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// What the emulator prints when ready (`idbind_emulator::EmulatorInfo`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorInfo {
    /// `http://127.0.0.1:port`: Entra authority host and ARM endpoint.
    pub base_url: String,
    /// The admin surface.
    pub admin_url: String,
    /// The default tenant.
    pub tenant_id: String,
    /// Client id of the default service principal (idbind's ARM credential).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// JWKS of the tokens the emulator issues.
    pub jwks_url: String,
}

/// A user-assigned managed identity.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// ARM resource id.
    pub resource_id: String,
    /// Client id.
    pub client_id: String,
    /// Principal (object) id.
    pub principal_id: String,
    /// Tenant.
    pub tenant_id: String,
}

impl Identity {
    /// The last segment of the resource id.
    pub fn name(&self) -> &str {
        self.resource_id.rsplit('/').next().unwrap_or_default()
    }
}

/// A federated identity credential as ARM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fic {
    /// Name.
    pub name: String,
    /// Issuer.
    pub issuer: String,
    /// Subject.
    pub subject: String,
    /// Audiences.
    pub audiences: Vec<String>,
}

/// Entra's answer to a token request.
#[derive(Clone, Debug)]
pub struct TokenAnswer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// The `idbind-emulator` process.
pub struct AzureEmulator {
    process: Process,
    info: EmulatorInfo,
    http: reqwest::Client,
}

impl AzureEmulator {
    /// Starts it on a loopback port; `jwks_cache_secs` is how long Entra caches issuer documents.
    pub async fn start(binary: &Path, logs: &Path, jwks_cache_secs: u64) -> Result<Self> {
        let spec = ProcessSpec::new("azure-emulator", binary, logs)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--jwks-cache-secs",
                &jwks_cache_secs.to_string(),
            ])
            .env("RUST_LOG", "info");
        let process = Process::start(spec).await?;
        let line = process
            .ready_line()
            .cloned()
            .ok_or_else(|| anyhow!("the Azure emulator printed no ready line"))?;
        let info: EmulatorInfo =
            serde_json::from_value(line).context("parsing the Azure emulator's ready line")?;
        Ok(Self {
            process,
            info,
            http: super::http()?,
        })
    }

    /// Its URLs and default principal.
    pub fn info(&self) -> &EmulatorInfo {
        &self.info
    }

    /// The process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Creates a user-assigned identity through the admin API.
    pub async fn create_identity(&self, resource_group: &str, name: &str) -> Result<Identity> {
        let url = format!("{}/identities", self.info.admin_url);
        let resp = self
            .http
            .post(&url)
            .json(&serde_json::json!({"resourceGroup": resource_group, "name": name}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("creating identity {resource_group}/{name} in the Azure emulator: {status} {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("parsing the identity {text}"))
    }

    /// Token endpoint of a tenant.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.info.base_url)
    }

    async fn arm_token(&self) -> Result<String> {
        let answer = self
            .post_token(
                &self.info.tenant_id,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.info.client_id),
                    ("client_secret", &self.info.client_secret),
                    ("scope", ARM_SCOPE),
                ],
            )
            .await?;
        answer.body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "no ARM token from the emulator: {} {}",
                    answer.status,
                    answer.body
                )
            })
    }

    /// POSTs a token request form to Entra.
    pub async fn post_token(&self, tenant: &str, form: &[(&str, &str)]) -> Result<TokenAnswer> {
        let url = self.token_url(tenant);
        let resp = self
            .http
            .post(&url)
            .form(form)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .json()
            .await
            .with_context(|| format!("the body of POST {url}"))?;
        Ok(TokenAnswer { status, body })
    }

    /// The identity's federated credentials, listed through ARM with idbind's principal.
    pub async fn list_fics(&self, identity: &Identity) -> Result<Vec<Fic>> {
        let token = self.arm_token().await?;
        let url = format!(
            "{}{}/federatedIdentityCredentials?api-version={MSI_API_VERSION}",
            self.info.base_url, identity.resource_id
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .with_context(|| format!("the body of GET {url}"))?;
        if !status.is_success() {
            bail!("listing the FICs of {}: {status} {body}", identity.name());
        }
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Ok(body["value"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|f| Fic {
                        name: text(&f["name"]),
                        issuer: text(&f["properties"]["issuer"]),
                        subject: text(&f["properties"]["subject"]),
                        audiences: f["properties"]["audiences"]
                            .as_array()
                            .map(|a| a.iter().map(text).collect())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// GETs a JSON document (`None` on 404).
    pub async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = resp.status();
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
        Ok(Some(
            resp.json()
                .await
                .with_context(|| format!("the body of GET {url}"))?,
        ))
    }

    /// Stops the process.
    pub async fn stop(&mut self) {
        self.process.stop().await;
    }
}
