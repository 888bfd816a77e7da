//! Turning flags into the clients the controller uses: the Azure credential and cloud, the ARM
//! client (with metrics on retries), and the issuer store.

use std::sync::Arc;

use idbind_arm::{
    ArmClient, ArmOptions, ClientSecretCredential, CloudConfig, Credential, HttpOptions,
    ManagedIdentityCredential, PUBLIC_ARM_SCOPE, RetryPolicy, WorkloadIdentityCredential,
};
use idbind_issuer::{BlobAuth, BlobStore, DirectoryStore, IssuerStore};
use idbind_model::{ClientId, TenantId};

use crate::args::{AzureArgs, Cloud, CredentialKind, IssuerArgs, StoreLocation};
use crate::metrics::Metrics;
use crate::{Error, Result};

/// The cloud named by the flags.
pub fn cloud(args: &AzureArgs) -> Result<CloudConfig> {
    let custom = || -> Result<CloudConfig> {
        let authority = args
            .azure_authority_host
            .as_deref()
            .ok_or_else(|| Error::config("--azure-authority-host", "required with --azure-cloud custom"))?;
        let arm = args
            .arm_endpoint
            .as_deref()
            .ok_or_else(|| Error::config("--arm-endpoint", "required with --azure-cloud custom"))?;
        let scope = args.arm_scope.as_deref().unwrap_or(PUBLIC_ARM_SCOPE);
        CloudConfig::custom(authority, arm, scope)
            .map_err(|e| Error::config("--azure-cloud custom", e.to_string()))
    };
    match args.azure_cloud {
        Cloud::Public => Ok(CloudConfig::public()),
        Cloud::Usgov => Ok(CloudConfig::us_government()),
        Cloud::China => Ok(CloudConfig::china()),
        Cloud::Custom => custom(),
    }
}

fn http_options(args: &AzureArgs) -> Result<HttpOptions> {
    let mut http = HttpOptions::default();
    if let Some(path) = &args.azure_ca_file {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| Error::config("--azure-ca-file", format!("cannot read {}: {e}", path.display())))?;
        http = http.root_certificates_pem(pem);
    }
    Ok(http)
}

/// The Azure credential the flags describe.
pub fn credential(args: &AzureArgs, cloud: &CloudConfig) -> Result<Arc<dyn Credential>> {
    let secret = match (&args.azure_client_secret, &args.azure_client_secret_file) {
        (Some(s), _) => Some(s.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    Error::config(
                        "--azure-client-secret-file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let kind = match args.azure_credential {
        CredentialKind::Auto if secret.is_some() => CredentialKind::ClientSecret,
        CredentialKind::Auto if args.azure_federated_token_file.is_some() => CredentialKind::WorkloadIdentity,
        CredentialKind::Auto => CredentialKind::ManagedIdentity,
        k => k,
    };
    let tenant = || -> Result<TenantId> {
        let raw = args
            .azure_tenant_id
            .as_deref()
            .ok_or_else(|| Error::config("--azure-tenant-id", "required for this credential"))?;
        TenantId::parse(raw).map_err(|e| Error::config("--azure-tenant-id", e.to_string()))
    };
    let client_id = || -> Result<Option<ClientId>> {
        args.azure_client_id
            .as_deref()
            .map(|raw| ClientId::parse(raw).map_err(|e| Error::config("--azure-client-id", e.to_string())))
            .transpose()
    };
    let required_client = || -> Result<ClientId> {
        client_id()?.ok_or_else(|| Error::config("--azure-client-id", "required for this credential"))
    };
    let http = http_options(args)?;
    let cfg = |e: idbind_arm::Error| Error::config("Azure credential", e.to_string());
    let credential: Arc<dyn Credential> = match kind {
        CredentialKind::ClientSecret => {
            let secret = secret.ok_or_else(|| {
                Error::config(
                    "--azure-client-secret",
                    "a client secret (or --azure-client-secret-file) is required",
                )
            })?;
            Arc::new(
                ClientSecretCredential::with_options(
                    &cloud.authority_host,
                    tenant()?,
                    required_client()?,
                    secret,
                    &http,
                    RetryPolicy::default(),
                )
                .map_err(cfg)?,
            )
        }
        CredentialKind::WorkloadIdentity => {
            let file = args.azure_federated_token_file.clone().ok_or_else(|| {
                Error::config(
                    "--azure-federated-token-file",
                    "required for the workload-identity credential",
                )
            })?;
            Arc::new(
                WorkloadIdentityCredential::with_options(
                    &cloud.authority_host,
                    tenant()?,
                    required_client()?,
                    file,
                    &http,
                    RetryPolicy::default(),
                )
                .map_err(cfg)?,
            )
        }
        CredentialKind::ManagedIdentity | CredentialKind::Auto => match &args.azure_imds_endpoint {
            None => Arc::new(ManagedIdentityCredential::new(client_id()?).map_err(cfg)?),
            Some(endpoint) => {
                let url = url::Url::parse(endpoint)
                    .map_err(|e| Error::config("--azure-imds-endpoint", format!("{endpoint:?}: {e}")))?;
                Arc::new(
                    ManagedIdentityCredential::with_options(url, client_id()?, &http, RetryPolicy::default())
                        .map_err(cfg)?,
                )
            }
        },
    };
    Ok(credential)
}

/// The ARM client, counting retried attempts in `metrics`.
pub fn arm_client(
    args: &AzureArgs,
    cloud: CloudConfig,
    credential: Arc<dyn Credential>,
    metrics: &Arc<Metrics>,
) -> Result<ArmClient> {
    let m = metrics.clone();
    let retry = RetryPolicy::default()
        .max_attempts(args.arm_max_attempts.max(1))
        .max_elapsed(args.arm_max_elapsed)
        .on_retry(move |ev| m.arm_call(ev.operation, ev.status));
    let options = ArmOptions::default().http(http_options(args)?);
    ArmClient::with_options(cloud, credential, retry, options)
        .map_err(|e| Error::config("ARM client", e.to_string()))
}

/// The issuer store the flags name (`--issuer-store`, else `dir:<--issuer-dir>`). A blob store
/// uses `--issuer-blob-sas` when given, else Entra tokens for Storage from `credential`.
pub fn issuer_store(args: &IssuerArgs, credential: Arc<dyn Credential>) -> Result<Arc<dyn IssuerStore>> {
    let location = match (&args.issuer_store, &args.issuer_dir) {
        (Some(l), _) => l.clone(),
        (None, Some(dir)) => StoreLocation::Dir(dir.clone()),
        (None, None) => {
            return Err(Error::config(
                "--issuer-store",
                "name the issuer store: --issuer-store dir:<path> or blob:<container URL>, or --issuer-dir",
            ));
        }
    };
    let cfg = |e: idbind_issuer::Error| Error::config("--issuer-store", e.to_string());
    Ok(match location {
        StoreLocation::Dir(path) => {
            std::fs::create_dir_all(&path).map_err(|e| {
                Error::config(
                    "--issuer-store",
                    format!("cannot create directory {}: {e}", path.display()),
                )
            })?;
            Arc::new(DirectoryStore::new(path).map_err(cfg)?)
        }
        StoreLocation::Blob(url) => {
            let auth = match &args.issuer_blob_sas {
                Some(sas) => BlobAuth::Sas(sas.clone()),
                None => BlobAuth::Bearer(credential),
            };
            Arc::new(BlobStore::new(&url, auth).map_err(cfg)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::Args;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "idbind-controller",
            "--cluster-name",
            "east",
            "--issuer-base-url",
            "https://i.example",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn missing_settings_are_named() {
        let a = args(&["--azure-cloud", "custom"]);
        let e = cloud(&a.azure).unwrap_err().to_string();
        assert!(e.contains("--azure-authority-host"), "{e}");
        let e = issuer_store(&a.issuer, Arc::new(idbind_arm::StaticTokenCredential::new("t")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--issuer-store"), "{e}");
        let a = args(&["--azure-credential", "client-secret", "--azure-tenant-id", "x"]);
        let e = credential(&a.azure, &CloudConfig::public())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--azure-client-secret"), "{e}");
    }

    #[test]
    fn credential_choice_follows_the_flags() {
        let tenant = "11111111-1111-1111-1111-111111111111";
        let client = "22222222-2222-2222-2222-222222222222";
        let a = args(&[
            "--azure-tenant-id",
            tenant,
            "--azure-client-id",
            client,
            "--azure-client-secret=s3cr3t",
        ]);
        assert!(credential(&a.azure, &CloudConfig::public()).is_ok());
        let a = args(&[
            "--azure-tenant-id",
            "not-a-guid",
            "--azure-client-id",
            client,
            "--azure-client-secret=s",
        ]);
        let e = credential(&a.azure, &CloudConfig::public())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--azure-tenant-id") && !e.contains("s3cr3t"), "{e}");
        let dir = std::env::temp_dir();
        let a = args(&["--issuer-store", &format!("dir:{}", dir.display())]);
        let cred: Arc<dyn Credential> = Arc::new(idbind_arm::StaticTokenCredential::new("t"));
        assert!(issuer_store(&a.issuer, cred.clone()).is_ok());
        let a = args(&["--issuer-store", "blob:https://acct.blob.core.windows.net/issuer"]);
        assert!(
            issuer_store(&a.issuer, cred).is_ok(),
            "a blob store without SAS uses the credential"
        );
    }
}
