//! ARM access for the `fic`, `issuer` and `doctor` commands: flags mirroring the controller's
//! (`--azure-*`), with `IDBIND_*` environment fallbacks and then the standard `AZURE_*` variables
//! the Azure CLI and SDKs read.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use idbind_arm::{
    ArmClient, ArmOptions, ClientSecretCredential, CloudConfig, Credential, HttpOptions, Identity,
    ManagedIdentityCredential, PUBLIC_ARM_SCOPE, RetryPolicy, WorkloadIdentityCredential,
};
use idbind_model::{ClientId, IdentityResourceId, TenantId};

use crate::cluster::error_chain;
use crate::exit::Failure;

/// Azure clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cloud {
    /// Azure public cloud.
    Public,
    /// Azure US Government.
    Usgov,
    /// Azure operated by 21Vianet.
    China,
    /// `--azure-authority-host` and `--arm-endpoint` (implied when either is given).
    Custom,
}

/// How to reach ARM.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Azure")]
pub struct AzureArgs {
    /// Tenant of your Azure principal [fallback env: AZURE_TENANT_ID].
    #[arg(long, env = "IDBIND_AZURE_TENANT_ID", value_name = "GUID")]
    pub azure_tenant_id: Option<String>,
    /// Client id of your Azure principal [fallback env: AZURE_CLIENT_ID].
    #[arg(long, env = "IDBIND_AZURE_CLIENT_ID", value_name = "GUID")]
    pub azure_client_id: Option<String>,
    /// Client secret of your Azure principal [fallback env: AZURE_CLIENT_SECRET].
    #[arg(
        long,
        env = "IDBIND_AZURE_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub azure_client_secret: Option<String>,
    /// Federated token file for workload identity [fallback env: AZURE_FEDERATED_TOKEN_FILE].
    #[arg(long, env = "IDBIND_AZURE_FEDERATED_TOKEN_FILE", value_name = "FILE")]
    pub azure_federated_token_file: Option<PathBuf>,
    /// Azure cloud.
    #[arg(long, env = "IDBIND_AZURE_CLOUD", value_enum, default_value = "public")]
    pub azure_cloud: Cloud,
    /// Entra authority host (implies `--azure-cloud custom`) [fallback env: AZURE_AUTHORITY_HOST].
    #[arg(long, env = "IDBIND_AZURE_AUTHORITY_HOST", value_name = "URL")]
    pub azure_authority_host: Option<String>,
    /// ARM endpoint (implies `--azure-cloud custom`).
    #[arg(long, env = "IDBIND_ARM_ENDPOINT", value_name = "URL")]
    pub arm_endpoint: Option<String>,
    /// Scope of ARM tokens in a custom cloud.
    #[arg(long, env = "IDBIND_ARM_SCOPE", default_value = PUBLIC_ARM_SCOPE, value_name = "SCOPE")]
    pub arm_scope: String,
    /// Extra trust roots (PEM file) for Entra and ARM (emulators with their own CA).
    #[arg(long, env = "IDBIND_AZURE_CA_FILE", value_name = "FILE")]
    pub azure_ca_file: Option<PathBuf>,
}

fn standard_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl AzureArgs {
    fn tenant(&self) -> Option<String> {
        self.azure_tenant_id
            .clone()
            .or_else(|| standard_env("AZURE_TENANT_ID"))
    }

    fn client(&self) -> Option<String> {
        self.azure_client_id
            .clone()
            .or_else(|| standard_env("AZURE_CLIENT_ID"))
    }

    fn secret(&self) -> Option<String> {
        self.azure_client_secret
            .clone()
            .or_else(|| standard_env("AZURE_CLIENT_SECRET"))
    }

    fn token_file(&self) -> Option<PathBuf> {
        self.azure_federated_token_file
            .clone()
            .or_else(|| standard_env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
    }

    fn authority(&self) -> Option<String> {
        self.azure_authority_host
            .clone()
            .or_else(|| standard_env("AZURE_AUTHORITY_HOST"))
    }

    /// Whether any credential setting is present (doctor skips ARM checks otherwise).
    pub fn configured(&self) -> bool {
        self.secret().is_some() || self.token_file().is_some() || self.arm_endpoint.is_some()
    }

    /// The cloud the flags name.
    pub fn cloud(&self) -> anyhow::Result<CloudConfig> {
        let custom = self.azure_cloud == Cloud::Custom
            || self.arm_endpoint.is_some()
            || self.azure_authority_host.is_some();
        if !custom {
            return Ok(match self.azure_cloud {
                Cloud::Usgov => CloudConfig::us_government(),
                Cloud::China => CloudConfig::china(),
                Cloud::Public | Cloud::Custom => CloudConfig::public(),
            });
        }
        let authority = self.authority().ok_or_else(|| {
            Failure::usage("a custom cloud needs --azure-authority-host")
                .hint("pass --azure-authority-host URL (the Entra host)")
        })?;
        let arm = self.arm_endpoint.as_deref().ok_or_else(|| {
            Failure::usage("a custom cloud needs --arm-endpoint")
                .hint("pass --arm-endpoint URL (the ARM endpoint)")
        })?;
        CloudConfig::custom(&authority, arm, &self.arm_scope)
            .map_err(|e| Failure::usage(format!("invalid custom cloud: {e}")).into())
    }

    fn http(&self) -> anyhow::Result<HttpOptions> {
        let mut http = HttpOptions::default().user_agent(concat!("idbind-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.azure_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read --azure-ca-file {}: {e}", path.display()))
            })?;
            http = http.root_certificates_pem(pem);
        }
        Ok(http)
    }

    fn credential(&self, cloud: &CloudConfig, http: &HttpOptions) -> anyhow::Result<Arc<dyn Credential>> {
        let tenant = || -> anyhow::Result<TenantId> {
            let raw = self.tenant().ok_or_else(|| {
                Failure::usage(
                    "no Azure tenant: --azure-tenant-id (or AZURE_TENANT_ID) is required for this credential",
                )
            })?;
            Ok(TenantId::parse(&raw).map_err(|e| Failure::usage(format!("--azure-tenant-id: {e}")))?)
        };
        let client = || -> anyhow::Result<Option<ClientId>> {
            self.client()
                .map(|raw| {
                    ClientId::parse(&raw)
                        .map_err(|e| Failure::usage(format!("--azure-client-id: {e}")).into())
                })
                .transpose()
        };
        let required_client = || -> anyhow::Result<ClientId> {
            client()?.ok_or_else(|| {
                Failure::usage("no Azure client id: --azure-client-id (or AZURE_CLIENT_ID) is required for this credential")
                    .into()
            })
        };
        let config_error = |e: idbind_arm::Error| Failure::usage(format!("Azure credential: {e}"));
        let retry = RetryPolicy::default().max_attempts(2);
        if let Some(secret) = self.secret() {
            return Ok(Arc::new(
                ClientSecretCredential::with_options(
                    &cloud.authority_host,
                    tenant()?,
                    required_client()?,
                    secret,
                    http,
                    retry,
                )
                .map_err(config_error)?,
            ));
        }
        if let Some(file) = self.token_file() {
            return Ok(Arc::new(
                WorkloadIdentityCredential::with_options(
                    &cloud.authority_host,
                    tenant()?,
                    required_client()?,
                    file,
                    http,
                    retry,
                )
                .map_err(config_error)?,
            ));
        }
        Ok(Arc::new(
            ManagedIdentityCredential::new(client()?).map_err(config_error)?,
        ))
    }

    /// An ARM client for the flags. Requests retry twice at most: a person is waiting.
    pub fn arm(&self) -> anyhow::Result<ArmClient> {
        let cloud = self.cloud()?;
        let http = self.http()?;
        let credential = self.credential(&cloud, &http)?;
        let retry = RetryPolicy::default().max_attempts(3);
        ArmClient::with_options(cloud, credential, retry, ArmOptions::default().http(http))
            .map_err(|e| Failure::usage(format!("ARM client: {e}")).into())
    }
}

/// Turns an ARM error into a failure naming what was attempted and what to check.
pub fn arm_error(action: &str, e: &idbind_arm::Error) -> anyhow::Error {
    let text = error_chain(e);
    let failure = if e.is_credential() && text.contains("could not connect") {
        Failure::unreachable(format!("{action}: cannot reach Entra for an ARM token: {text}"))
            .hint("check --azure-authority-host / --azure-cloud and your network")
    } else if e.is_credential() {
        Failure::failed(format!("{action}: no ARM token: {text}")).hint(
            "check --azure-tenant-id, --azure-client-id and --azure-client-secret (or AZURE_TENANT_ID, \
             AZURE_CLIENT_ID, AZURE_CLIENT_SECRET), or --azure-federated-token-file",
        )
    } else {
        match e.status() {
            Some(401) => Failure::failed(format!("{action}: ARM rejected the token: {text}"))
                .hint("check --azure-cloud / --arm-endpoint and your principal's tenant"),
            Some(403) => Failure::failed(format!("{action}: not allowed: {text}")).hint(
                "your Azure principal needs a role such as Managed Identity Contributor (to write) or Reader (to read) \
                 on the identity or its resource group",
            ),
            Some(_) => Failure::failed(format!("{action}: {text}")),
            None if e.is_uncertain() => Failure::unreachable(format!("{action}: ARM could not be reached: {text}"))
                .hint("check --arm-endpoint / --azure-cloud and your network"),
            None => Failure::failed(format!("{action}: {text}")),
        }
    };
    failure.into()
}

/// Reads a user-assigned identity; a missing one is a failure naming its subscription and group.
pub async fn get_identity(arm: &ArmClient, id: &IdentityResourceId) -> anyhow::Result<Identity> {
    match arm.get_identity(id).await {
        Ok(identity) => Ok(identity),
        Err(e) if e.is_not_found() => Err(Failure::failed(format!(
            "ARM has no user-assigned identity {id} (subscription {}, resource group {})",
            id.subscription(),
            id.resource_group()
        ))
        .hint("check the --identity resource ID: az identity show --ids <resource id>")
        .into()),
        Err(e) => Err(arm_error(&format!("reading identity {}", id.name()), &e)),
    }
}
