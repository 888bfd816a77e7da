//! Command-line flags of `idbind-controller`, each with an `IDBIND_*` environment fallback.
//!
//! Groups are separate structs flattened into [`Args`] (the policy-controller pattern), so the
//! webhook and certificate modules can add theirs without touching the others.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, ValueEnum};
use idbind_model::IssuerBaseUrl;
use idbind_model::duration::parse_duration;

/// `idbind-controller`: reconciles IdentityBindings, manages this cluster's signing keys and
/// publishes them to the issuers of the bound identities.
#[derive(Clone, Debug, Parser)]
#[command(name = "idbind-controller", version, about, max_term_width = 110)]
pub struct Args {
    /// Cluster identity and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// How to reach ARM.
    #[command(flatten)]
    pub azure: AzureArgs,
    /// Where issuer documents live.
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// Signing keys and their rotation.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Reconciler behaviour.
    #[command(flatten)]
    pub reconcile: ReconcileArgs,
    /// Leader election.
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Admin port.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Proxy TLS (CA, serving certificate, trust bundle).
    #[command(flatten)]
    pub proxy_tls: crate::certs::args::ProxyTlsArgs,
    /// Admission webhook.
    #[command(flatten)]
    pub webhook: crate::webhook::args::WebhookArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Cluster identity and namespace.
#[derive(Clone, Debug, ClapArgs)]
pub struct ClusterArgs {
    /// Name of this cluster (a DNS label); prefixes the key ids this cluster publishes.
    #[arg(long, env = "IDBIND_CLUSTER_NAME")]
    pub cluster_name: String,
    /// Namespace of idbind's own objects (signing key Secret, Lease, proxy CA).
    #[arg(long, env = "IDBIND_NAMESPACE", default_value = "idbind")]
    pub namespace: String,
}

/// Which Azure credential the controller uses for ARM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CredentialKind {
    /// A client secret if one is given, else a federated token file if one is given, else the
    /// managed identity of the machine.
    Auto,
    /// `--azure-client-secret` or `--azure-client-secret-file`.
    ClientSecret,
    /// Workload identity: `--azure-federated-token-file`.
    WorkloadIdentity,
    /// The managed identity of the machine, through IMDS (`--azure-client-id` picks a
    /// user-assigned one).
    ManagedIdentity,
}

/// Azure cloud presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cloud {
    /// Azure public cloud.
    Public,
    /// Azure US Government.
    Usgov,
    /// Azure operated by 21Vianet.
    China,
    /// `--azure-authority-host` and `--arm-endpoint` (and `--arm-scope`).
    Custom,
}

/// How to reach ARM.
#[derive(Clone, Debug, ClapArgs)]
pub struct AzureArgs {
    /// Tenant of the controller's Azure principal.
    #[arg(long, env = "IDBIND_AZURE_TENANT_ID")]
    pub azure_tenant_id: Option<String>,
    /// Client id of the controller's Azure principal.
    #[arg(long, env = "IDBIND_AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,
    /// Client secret of the controller's Azure principal.
    #[arg(long, env = "IDBIND_AZURE_CLIENT_SECRET", hide_env_values = true)]
    pub azure_client_secret: Option<String>,
    /// File holding the client secret (e.g. a mounted Secret).
    #[arg(
        long,
        env = "IDBIND_AZURE_CLIENT_SECRET_FILE",
        conflicts_with = "azure_client_secret"
    )]
    pub azure_client_secret_file: Option<PathBuf>,
    /// Federated token file for workload identity.
    #[arg(long, env = "IDBIND_AZURE_FEDERATED_TOKEN_FILE")]
    pub azure_federated_token_file: Option<PathBuf>,
    /// Which credential to use.
    #[arg(long, env = "IDBIND_AZURE_CREDENTIAL", value_enum, default_value = "auto")]
    pub azure_credential: CredentialKind,
    /// IMDS token endpoint for the managed-identity credential (tests and emulators).
    #[arg(long, env = "IDBIND_AZURE_IMDS_ENDPOINT")]
    pub azure_imds_endpoint: Option<String>,
    /// Azure cloud.
    #[arg(long, env = "IDBIND_AZURE_CLOUD", value_enum, default_value = "public")]
    pub azure_cloud: Cloud,
    /// Entra authority host (with `--azure-cloud custom`).
    #[arg(long, env = "IDBIND_AZURE_AUTHORITY_HOST")]
    pub azure_authority_host: Option<String>,
    /// ARM endpoint (with `--azure-cloud custom`).
    #[arg(long, env = "IDBIND_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Scope of ARM tokens (with `--azure-cloud custom`; default `https://management.azure.com/.default`).
    #[arg(long, env = "IDBIND_ARM_SCOPE")]
    pub arm_scope: Option<String>,
    /// Attempts per ARM call before a reconcile gives up and requeues.
    #[arg(long, env = "IDBIND_ARM_MAX_ATTEMPTS", default_value_t = 4)]
    pub arm_max_attempts: u32,
    /// Longest time one ARM call keeps retrying.
    #[arg(long, env = "IDBIND_ARM_MAX_ELAPSED", value_parser = duration, default_value = "30s")]
    pub arm_max_elapsed: Duration,
    /// Extra trust roots (PEM file) for Entra and ARM (emulators with their own CA).
    #[arg(long, env = "IDBIND_AZURE_CA_FILE")]
    pub azure_ca_file: Option<PathBuf>,
}

/// Where the issuer documents of the bound identities live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (`dir:<path>`).
    Dir(PathBuf),
    /// An Azure Blob container (`blob:<container URL>`).
    Blob(String),
}

impl FromStr for StoreLocation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("dir:") {
            if path.is_empty() {
                return Err("dir: needs a path, like dir:/var/lib/idbind/issuer".to_owned());
            }
            Ok(Self::Dir(PathBuf::from(path)))
        } else if let Some(url) = s.strip_prefix("blob:") {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(format!(
                    "blob: needs a container URL, like blob:https://account.blob.core.windows.net/issuer; got {url:?}"
                ));
            }
            Ok(Self::Blob(url.to_owned()))
        } else {
            Err(format!("{s:?} is neither dir:<path> nor blob:<container URL>"))
        }
    }
}

/// Issuer store, public URL and the optional built-in issuer server.
#[derive(Clone, Debug, ClapArgs)]
pub struct IssuerArgs {
    /// Public URL under which the per-identity issuers live (`{base}/{tenantId}/{clientId}`).
    #[arg(long, env = "IDBIND_ISSUER_BASE_URL")]
    pub issuer_base_url: IssuerBaseUrl,
    /// Issuer store: `dir:<path>` or `blob:<container URL>`. Defaults to `dir:<--issuer-dir>`.
    #[arg(long, env = "IDBIND_ISSUER_STORE")]
    pub issuer_store: Option<StoreLocation>,
    /// SAS token for a blob store (with or without the leading `?`). Without it, the controller's
    /// Azure credential gets Entra tokens for Storage (it needs Storage Blob Data Contributor).
    #[arg(long, env = "IDBIND_ISSUER_BLOB_SAS", hide_env_values = true)]
    pub issuer_blob_sas: Option<String>,
    /// Directory store to serve over HTTP(S) with `--issuer-listen` (and to publish into).
    #[arg(long, env = "IDBIND_ISSUER_DIR")]
    pub issuer_dir: Option<PathBuf>,
    /// Serve `--issuer-dir` on this address (issuer server mode).
    #[arg(long, env = "IDBIND_ISSUER_LISTEN", requires = "issuer_dir")]
    pub issuer_listen: Option<SocketAddr>,
    /// TLS certificate (PEM) for the issuer server.
    #[arg(long, env = "IDBIND_ISSUER_TLS_CERT", requires = "issuer_tls_key")]
    pub issuer_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the issuer server.
    #[arg(long, env = "IDBIND_ISSUER_TLS_KEY", requires = "issuer_tls_cert")]
    pub issuer_tls_key: Option<PathBuf>,
}

/// Signing keys and their rotation.
#[derive(Clone, Debug, ClapArgs)]
pub struct KeyArgs {
    /// Secret (in `--namespace`) holding this cluster's signing keys.
    #[arg(
        long,
        env = "IDBIND_SIGNING_KEY_SECRET",
        default_value = "idbind-signing-keys"
    )]
    pub signing_key_secret: String,
    /// Start a new key this long after the current one was activated.
    #[arg(long, env = "IDBIND_KEY_ROTATION_INTERVAL", value_parser = duration, default_value = "30d")]
    pub key_rotation_interval: Duration,
    /// Publish a new key this long before signing with it (Entra caches JWKS for about an hour).
    #[arg(long, env = "IDBIND_KEY_PROPAGATION_DELAY", value_parser = duration, default_value = "2h")]
    pub key_propagation_delay: Duration,
    /// Keep a replaced key published this long (assertion lifetime plus Entra's JWKS cache time).
    #[arg(long, env = "IDBIND_KEY_RETIREMENT_DELAY", value_parser = duration, default_value = "2h")]
    pub key_retirement_delay: Duration,
}

/// What happens to the FIC when the last binding of an identity goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FicGc {
    /// Keep the FIC (as AKS does).
    Retain,
    /// Delete it once no cluster's key is left in the identity's JWKS.
    Delete,
}

/// Reconciler behaviour.
#[derive(Clone, Debug, ClapArgs)]
pub struct ReconcileArgs {
    /// Name of the federated identity credential idbind creates on each identity.
    #[arg(long, env = "IDBIND_FIC_NAME", default_value = idbind_model::DEFAULT_FIC_NAME)]
    pub fic_name: String,
    /// FIC garbage collection when the last binding of an identity is deleted.
    #[arg(long, env = "IDBIND_FIC_GC", value_enum, default_value = "retain")]
    pub fic_gc: FicGc,
    /// Reconcile every binding at least this often.
    #[arg(long, env = "IDBIND_RESYNC_INTERVAL", value_parser = duration, default_value = "5m")]
    pub resync_interval: Duration,
    /// First retry delay after a failed reconcile (doubles per consecutive failure).
    #[arg(long, env = "IDBIND_ERROR_BACKOFF_MIN", value_parser = duration, default_value = "2s")]
    pub error_backoff_min: Duration,
    /// Longest retry delay after failed reconciles.
    #[arg(long, env = "IDBIND_ERROR_BACKOFF_MAX", value_parser = duration, default_value = "5m")]
    pub error_backoff_max: Duration,
    /// Bindings reconciled at once.
    #[arg(long, env = "IDBIND_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// How long an identity's ARM answers (its ids, its FIC being in place) are shared by the
    /// reconciles of all its bindings before ARM is asked again; `0s` asks on every reconcile.
    /// Failures are shared for `--error-backoff-min`.
    #[arg(long, env = "IDBIND_ARM_CACHE_TTL", value_parser = duration, default_value = "5m")]
    pub arm_cache_ttl: Duration,
}

/// Leader election.
#[derive(Clone, Debug, ClapArgs)]
pub struct LeaderArgs {
    /// Lease (in `--namespace`) used for leader election.
    #[arg(long, env = "IDBIND_LEASE_NAME", default_value = "idbind-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: `$POD_NAME` or the host name, plus a random suffix).
    #[arg(long, env = "IDBIND_LEADER_IDENTITY")]
    pub leader_identity: Option<String>,
    /// How long a Lease is valid without renewal.
    #[arg(long, env = "IDBIND_LEASE_DURATION", value_parser = duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// How long the leader tries to renew before it steps down.
    #[arg(long, env = "IDBIND_LEASE_RENEW_DEADLINE", value_parser = duration, default_value = "10s")]
    pub lease_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, env = "IDBIND_LEASE_RETRY_PERIOD", value_parser = duration, default_value = "2s")]
    pub lease_retry_period: Duration,
}

/// Admin port.
#[derive(Clone, Debug, ClapArgs)]
pub struct AdminArgs {
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "IDBIND_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Clone, Debug, ClapArgs)]
pub struct LogArgs {
    /// Log filter (`tracing-subscriber` EnvFilter syntax).
    #[arg(long, env = "IDBIND_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, env = "IDBIND_LOG_FORMAT", value_enum, default_value = "plain")]
    pub log_format: LogFormat,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "idbind-controller",
            "--cluster-name",
            "east",
            "--issuer-base-url",
            "https://issuer.example.com/ib",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.cluster.namespace, "idbind");
        assert_eq!(a.keys.signing_key_secret, "idbind-signing-keys");
        assert_eq!(a.keys.key_rotation_interval, Duration::from_secs(30 * 86_400));
        assert_eq!(a.reconcile.fic_name, "idbind");
        assert_eq!(a.reconcile.fic_gc, FicGc::Retain);
        assert_eq!(a.leader.lease_name, "idbind-controller");
        assert_eq!(a.azure.azure_cloud, Cloud::Public);
        assert_eq!(a.issuer.issuer_base_url.as_str(), "https://issuer.example.com/ib");
        assert_eq!(a.log.log_format, LogFormat::Plain);
    }

    #[test]
    fn typed_values() {
        let a = parse(&[
            "--issuer-store",
            "blob:https://acct.blob.core.windows.net/issuer",
            "--fic-gc",
            "delete",
            "--key-rotation-interval",
            "12h",
            "--azure-cloud",
            "custom",
        ])
        .unwrap();
        assert_eq!(
            a.issuer.issuer_store,
            Some(StoreLocation::Blob(
                "https://acct.blob.core.windows.net/issuer".into()
            ))
        );
        assert_eq!(a.reconcile.fic_gc, FicGc::Delete);
        assert_eq!(a.keys.key_rotation_interval, Duration::from_secs(43_200));
        assert_eq!(a.azure.azure_cloud, Cloud::Custom);
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&["--issuer-store", "s3://x"]).unwrap_err().to_string();
        assert!(e.contains("neither dir:<path> nor blob:"), "{e}");
        let e = parse(&["--key-rotation-interval", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("soon"), "{e}");
        let e = Args::try_parse_from([
            "idbind-controller",
            "--cluster-name",
            "a",
            "--issuer-base-url",
            "http://x.example",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = parse(&["--issuer-listen", "127.0.0.1:0"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--issuer-dir"), "{e}");
    }
}
