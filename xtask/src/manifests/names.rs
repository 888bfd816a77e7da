//! Every name, port and path the manifests use, in one place.
//!
//! Names the binaries also know (Secrets, ConfigMaps, the Lease, the webhook configuration) are
//! their flag defaults: `xtask/tests/deploy.rs` parses the rendered Deployments with the real flag
//! definitions and fails when a default here and there drift apart.

/// idbind's namespace.
pub const NAMESPACE: &str = "idbind";
/// `app.kubernetes.io/part-of`.
pub const PART_OF: &str = "idbind";
/// `app.kubernetes.io/managed-by` of what `kubectl apply -k` installs (the controller labels what
/// it creates itself `idbind`, so the two never get mixed up).
pub const MANAGED_BY: &str = "kustomize";
/// The workspace version: image tags and `app.kubernetes.io/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Image repository prefix of released images.
pub const IMAGE_REGISTRY: &str = "ghcr.io/idbind";

/// The controller: Deployment, ServiceAccount, RBAC, container name prefix.
pub const CONTROLLER: &str = "idbind-controller";
/// The token proxy: Deployment, ServiceAccount, Service (its DNS name is the proxy's SNI name).
pub const PROXY: &str = "idbind-proxy";
/// Non-secret settings of the controller (a kustomize-generated ConfigMap, hash-suffixed).
pub const CONTROLLER_CONFIG: &str = "idbind-controller-config";
/// Non-secret settings of the proxy.
pub const PROXY_CONFIG: &str = "idbind-proxy-config";
/// Service of the controller's admin port (metrics).
pub const CONTROLLER_METRICS_SERVICE: &str = "idbind-controller-metrics";
/// Service of the proxies' admin port (metrics).
pub const PROXY_METRICS_SERVICE: &str = "idbind-proxy-metrics";
/// Service of the admission webhook (controller `--webhook-service`).
pub const WEBHOOK_SERVICE: &str = "idbind-webhook";
/// Service of the directory issuer served by the controller.
pub const ISSUER_SERVICE: &str = "idbind-issuer";
/// PersistentVolumeClaim of the directory issuer.
pub const ISSUER_PVC: &str = "idbind-issuer";

/// Secret with this cluster's signing keys (controller `--signing-key-secret`); proxies mount it.
pub const SIGNING_KEY_SECRET: &str = "idbind-signing-keys";
/// Secret with the proxy CAs and their state (controller `--proxy-ca-secret`); controller only.
pub const PROXY_CA_SECRET: &str = "idbind-proxy-ca-key";
/// Secret with the proxy serving certificate (controller `--proxy-tls-secret`); proxies mount it.
pub const PROXY_TLS_SECRET: &str = "idbind-proxy-tls";
/// ConfigMap with the proxy trust bundle, in every namespace (controller `--proxy-ca-configmap`).
pub const PROXY_CA_CONFIGMAP: &str = "idbind-proxy-ca";
/// Secret with the webhook CAs and serving certificate (controller `--webhook-secret`).
pub const WEBHOOK_SECRET: &str = "idbind-webhook-tls";
/// The controller's leader-election Lease (controller `--lease-name`).
pub const LEASE: &str = "idbind-controller";
/// The MutatingWebhookConfiguration (controller `--webhook-configuration`).
pub const WEBHOOK_CONFIGURATION: &str = "idbind";
/// Path the webhook serves (the controller's own constant).
pub const WEBHOOK_PATH: &str = idbind_controller::webhook::args::MUTATE_PATH;

/// Secrets an operator creates (never generated, never committed).
pub mod user_secrets {
    /// Client secret of the controller's Azure principal, key [`CLIENT_SECRET_KEY`].
    pub const AZURE_CREDENTIALS: &str = "idbind-azure-credentials";
    /// Key of the client secret in [`AZURE_CREDENTIALS`].
    pub const CLIENT_SECRET_KEY: &str = "client-secret";
    /// TLS certificate (`kubernetes.io/tls`) of the directory issuer's public name.
    pub const ISSUER_TLS: &str = "idbind-issuer-tls";
    /// SAS token of the Blob issuer container, key [`BLOB_SAS_KEY`].
    pub const ISSUER_BLOB_SAS: &str = "idbind-issuer-blob-sas";
    /// Key of the SAS in [`ISSUER_BLOB_SAS`].
    pub const BLOB_SAS_KEY: &str = "sas";
}

/// Container ports (the Services target them by name).
pub mod ports {
    /// Controller admin: `/metrics`, `/healthz`, `/readyz`.
    pub const CONTROLLER_ADMIN: i32 = 9090;
    /// Controller admission webhook (HTTPS).
    pub const WEBHOOK: i32 = 9443;
    /// Controller directory issuer (HTTPS).
    pub const ISSUER: i32 = 8443;
    /// Proxy token endpoint (HTTPS).
    pub const PROXY: i32 = 8443;
    /// Proxy admin: `/metrics`, `/healthz`, `/readyz`.
    pub const PROXY_ADMIN: i32 = 9090;
}

/// Where volumes are mounted.
pub mod paths {
    /// The proxy serving certificate Secret.
    pub const PROXY_TLS_DIR: &str = "/var/run/secrets/idbind/tls";
    /// The signing-key Secret in proxies.
    pub const KEYS_DIR: &str = "/var/run/secrets/idbind/signing-keys";
    /// The operator's Azure credentials Secret in the controller.
    pub const AZURE_CREDENTIALS_DIR: &str = "/var/run/secrets/idbind/azure";
    /// The issuer's TLS Secret in the controller.
    pub const ISSUER_TLS_DIR: &str = "/var/run/secrets/idbind/issuer-tls";
    /// The directory issuer store.
    pub const ISSUER_DIR: &str = "/var/lib/idbind/issuer";
    /// The controller's projected token for Azure workload identity (azwi's path).
    pub const AZURE_TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
    /// File name of that token.
    pub const AZURE_TOKEN_FILE: &str = "azure-identity-token";
    /// Scratch space (the root filesystem is read-only).
    pub const TMP: &str = "/tmp";
}

/// The distroless `nonroot` user and group.
pub const NONROOT_UID: i64 = 65532;
