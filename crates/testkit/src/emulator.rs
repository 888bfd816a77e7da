//! [`KubeEmulator`]: start, connect, seed and stop the emulated API server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::{MutatingAdmission, ServiceMap};
use crate::auth::{ServiceAccountIssuer, TokenBinding, UserInfo};
use crate::cluster::{Cluster, WriteOptions};
use crate::error::{Error, Result};
use crate::kubeconfig;
use crate::server::{self, Access, ServerState, Settings};

/// Options of an emulator; finish with [`KubeEmulatorBuilder::start`].
#[derive(Clone, Debug)]
pub struct KubeEmulatorBuilder {
    listen: SocketAddr,
    tls: bool,
    tls_names: Vec<String>,
    admin_token: Option<String>,
    history_limit: usize,
    bookmark_interval: Duration,
    seeds: Vec<Value>,
    kubeconfig_path: Option<PathBuf>,
}

impl Default for KubeEmulatorBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tls: true,
            tls_names: vec!["localhost".to_string()],
            admin_token: None,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            seeds: Vec::new(),
            kubeconfig_path: None,
        }
    }
}

impl KubeEmulatorBuilder {
    /// The address to listen on (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Serve plain HTTP instead of HTTPS (default HTTPS with the emulator's own CA).
    pub fn plain_http(mut self) -> Self {
        self.tls = false;
        self
    }

    /// An extra DNS name for the server certificate (`localhost` is always included).
    pub fn tls_name(mut self, name: impl Into<String>) -> Self {
        self.tls_names.push(name.into());
        self
    }

    /// The admin bearer token (default: random).
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// How many changes are kept for watches to resume from (default 10,000); older
    /// resourceVersions get 410 Gone.
    pub fn history_limit(mut self, changes: usize) -> Self {
        self.history_limit = changes;
        self
    }

    /// How often watches that allow bookmarks get one (default 5 s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// An object to create at start (any served kind, e.g. a CRD or a namespace), in order.
    pub fn seed(mut self, object: impl Serialize) -> Result<Self> {
        let value = serde_json::to_value(object).map_err(|e| Error::Invalid {
            what: "seed object".into(),
            message: e.to_string(),
        })?;
        self.seeds.push(value);
        Ok(self)
    }

    /// Where to write the admin kubeconfig (default: a file in a temporary directory).
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig_path = Some(path.into());
        self
    }

    /// Binds, writes the kubeconfig and starts serving.
    pub async fn start(self) -> Result<KubeEmulator> {
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: self.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: self.listen.to_string(),
            source,
        })?;
        let host_ip = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        let server_address = SocketAddr::new(host_ip, addr.port()).to_string();
        let scheme = if self.tls { "https" } else { "http" };
        let base_url = format!("{scheme}://{server_address}");
        let (tls_config, ca_pem) = if self.tls {
            let ca = idbind_tls::CertificateAuthority::generate(
                "idbind-kube-emulator-ca",
                Duration::from_secs(365 * 86_400),
            )
            .map_err(|e| Error::Tls(e.to_string()))?;
            let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
            if !ips.contains(&host_ip) {
                ips.push(host_ip);
            }
            let cert = ca
                .issue_server_cert(&self.tls_names, &ips, Duration::from_secs(365 * 86_400))
                .map_err(|e| Error::Tls(e.to_string()))?;
            let config = idbind_tls::server_config(&cert.cert_pem, &cert.key_pem)
                .map_err(|e| Error::Tls(e.to_string()))?;
            (Some(Arc::new(config)), Some(ca.cert_pem().to_string()))
        } else {
            (None, None)
        };
        let issuer = ServiceAccountIssuer::builder(base_url.clone())
            .build()
            .map_err(|e| Error::Issuer(e.to_string()))?;
        let admin_token = self
            .admin_token
            .unwrap_or_else(|| format!("admin-{}", uuid::Uuid::new_v4().simple()));
        let access = Arc::new(Access::new(issuer, &admin_token));
        let cluster = Arc::new(Cluster::new(self.history_limit));
        bootstrap(&cluster)?;
        for seed in self.seeds {
            create_value(&cluster, seed)?;
        }
        let shutdown = CancellationToken::new();
        let services = Arc::new(ServiceMap::new());
        let state = Arc::new(ServerState {
            cluster: cluster.clone(),
            access: access.clone(),
            shutdown: shutdown.clone(),
            settings: Settings {
                bookmark_interval: self.bookmark_interval,
                server_address,
            },
            admission: MutatingAdmission::with_services(services.clone()),
            watches: parking_lot::Mutex::new(shutdown.child_token()),
        });
        let (dir, kubeconfig_path) = match self.kubeconfig_path {
            Some(path) => (None, path),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("idbind-kube-emulator")
                    .tempdir()
                    .map_err(Error::TempDir)?;
                let path = dir.path().join("kubeconfig");
                (Some(dir), path)
            }
        };
        let emulator_dir = match &dir {
            Some(d) => d.path().to_path_buf(),
            None => kubeconfig_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        kubeconfig::write(
            &kubeconfig_path,
            &kubeconfig::render(&base_url, ca_pem.as_deref(), "admin", &admin_token, "default"),
        )?;
        let state_handle = state.clone();
        let task = tokio::spawn(server::serve(
            listener,
            tls_config,
            server::router(state),
            shutdown.clone(),
        ));
        tracing::info!(%base_url, "Kubernetes API emulator started");
        Ok(KubeEmulator {
            base_url,
            addr,
            ca_pem,
            admin_token,
            kubeconfig_path,
            dir: emulator_dir,
            _tempdir: dir,
            cluster,
            access,
            services,
            state: state_handle,
            shutdown,
            task,
        })
    }
}

/// Stores the bootstrap RBAC objects (cluster-admin, system:discovery, ...).
fn bootstrap(cluster: &Cluster) -> Result<()> {
    let snapshot = crate::auth::bootstrap_rbac();
    let values = snapshot
        .cluster_roles
        .iter()
        .map(serde_json::to_value)
        .chain(snapshot.cluster_role_bindings.iter().map(serde_json::to_value))
        .chain(snapshot.roles.iter().map(serde_json::to_value))
        .chain(snapshot.role_bindings.iter().map(serde_json::to_value));
    for value in values {
        let value = value.map_err(|e| Error::Invalid {
            what: "bootstrap RBAC".into(),
            message: e.to_string(),
        })?;
        create_value(cluster, value)?;
    }
    Ok(())
}

fn create_value(cluster: &Cluster, value: Value) -> Result<()> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let what = format!("{kind} {name:?}");
    let rt = cluster
        .registry()
        .by_kind(&api_version, &kind)
        .ok_or_else(|| Error::Rejected {
            what: what.clone(),
            message: format!("no kind {kind} in {api_version}"),
        })?;
    let ns = if rt.namespaced {
        value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    cluster
        .create(&rt, &ns, value, &WriteOptions::default())
        .map(|_| ())
        .map_err(|e| Error::Rejected {
            what,
            message: e.message,
        })
}

/// A running Kubernetes API emulator. Stops when dropped.
pub struct KubeEmulator {
    base_url: String,
    addr: SocketAddr,
    ca_pem: Option<String>,
    admin_token: String,
    kubeconfig_path: PathBuf,
    dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    cluster: Arc<Cluster>,
    access: Arc<Access>,
    services: Arc<ServiceMap>,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for KubeEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEmulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl KubeEmulator {
    /// Starts an emulator with default options (HTTPS on `127.0.0.1:0`).
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options.
    pub fn builder() -> KubeEmulatorBuilder {
        KubeEmulatorBuilder::default()
    }

    /// `https://127.0.0.1:<port>` (or `http://` with [`KubeEmulatorBuilder::plain_http`]).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) clients must trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The admin bearer token (user `admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kube client with admin credentials.
    pub fn client(&self) -> Result<kube::Client> {
        self.client_for_token(&self.admin_token)
    }

    /// A kube client authenticating with `token`.
    pub fn client_for_token(&self, token: &str) -> Result<kube::Client> {
        let uri: http::Uri = self
            .base_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::Client(e.to_string()))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".to_string();
        if let Some(pem) = &self.ca_pem {
            let certs = idbind_tls::parse_certs(pem).map_err(|e| Error::Tls(e.to_string()))?;
            config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
        }
        config.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(config).map_err(|e| Error::Client(e.to_string()))
    }

    /// Writes a kubeconfig for `user` authenticating with `token` to `path`.
    pub fn write_kubeconfig(&self, path: &Path, user: &str, token: &str) -> Result<()> {
        kubeconfig::write(
            path,
            &kubeconfig::render(&self.base_url, self.ca_pem.as_deref(), user, token, "default"),
        )
    }

    /// Writes a kubeconfig for `user` with `token` next to the admin kubeconfig; returns its path.
    pub fn kubeconfig_for_token(&self, user: &str, token: &str) -> Result<PathBuf> {
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.dir.join(format!("kubeconfig-{safe}"));
        self.write_kubeconfig(&path, user, token)?;
        Ok(path)
    }

    /// Accepts `token` as user `username` in `groups` from now on (plus `system:authenticated`),
    /// as a `--token-auth-file` entry does. Authorization is RBAC for such users.
    pub fn add_user_token(&self, token: &str, username: &str, groups: &[&str]) {
        self.access
            .add_static_token(token, UserInfo::new(username, groups.iter().copied()));
    }

    /// The service-account issuer (its documents are also served at
    /// `/.well-known/openid-configuration` and `/openid/v1/jwks`).
    pub fn issuer(&self) -> &ServiceAccountIssuer {
        self.access.issuer()
    }

    /// Mints a token for an existing service account, valid for the API server (audience: the
    /// issuer) for `expiration_seconds`; use it as a bearer token to act as the service account.
    pub fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        expiration_seconds: i64,
    ) -> Result<String> {
        let sa = self
            .cluster
            .stored_one(
                &crate::registry::GroupResource::new("", "serviceaccounts"),
                namespace,
                name,
            )
            .ok_or_else(|| Error::Issuer(format!("serviceaccount {namespace}/{name} does not exist")))?;
        let binding = TokenBinding {
            namespace: namespace.to_string(),
            service_account: crate::auth::ObjectRef::new(name, crate::meta::uid(&sa)),
            ..Default::default()
        };
        let audiences = self.issuer().api_audiences().to_vec();
        self.issuer()
            .mint(&binding, &audiences, expiration_seconds)
            .map(|m| m.token)
            .map_err(|e| Error::Issuer(e.to_string()))
    }

    /// A kube client acting as an existing service account (token valid for one hour).
    pub fn service_account_client(&self, namespace: &str, name: &str) -> Result<kube::Client> {
        let token = self.service_account_token(namespace, name, 3600)?;
        self.client_for_token(&token)
    }

    /// Where webhooks' `clientConfig.service` references are reached: map a Service (namespace,
    /// name, port) to a local address, e.g. a test webhook server on `127.0.0.1:<port>`.
    pub fn services(&self) -> &ServiceMap {
        &self.services
    }

    /// Forgets the watch history: watches resuming from any earlier resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.cluster.compact();
    }

    /// Ends every open watch now (as an API server restart or a load balancer would); clients
    /// resume from their last resourceVersion, or relist after 410 Gone.
    pub fn disconnect_watches(&self) {
        self.state.disconnect_watches();
    }

    /// Changes how many changes are kept for watches.
    pub fn set_history_limit(&self, changes: usize) {
        self.cluster.set_history_limit(changes);
    }

    /// The current resourceVersion (incremented by every write).
    pub fn resource_version(&self) -> u64 {
        self.cluster.resource_version()
    }

    /// Stops serving (also done on drop): open watches and connections end.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}
