//! [`Stack`]: one idbind member cluster on loopback, with a bound identity and the token proxy.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use idbind_arm::{ArmClient, ClientSecretCredential, CloudConfig, PUBLIC_ARM_SCOPE, RetryPolicy};
use idbind_emulator::{Emulator, EmulatorConfig, IdentityInfo, Route};
use idbind_exchange::{BindingLookup, Exchanger, ExchangerConfig, write_key_dir};
use idbind_fic::FicManager;
use idbind_issuer::{ClusterName, DirectoryStore, KeySet, Publisher, RotationStep};
use idbind_model::{
    AllowedSubject, ClientId, DEFAULT_FIC_NAME, DEFAULT_SA_TOKEN_AUDIENCE, FederatedCredentialStatus,
    FicSpec, IdentityBinding, IdentityBindingSpec, IdentityBindingStatus, IssuerBaseUrl, ManagedIdentityRef,
    TenantId, condition, set_condition,
};
use idbind_proxy::{
    AdminServer, ProxyMetrics, ProxyServer, ReadinessReport, ServerOptions, ServerTls, Surface, SurfaceConfig,
};
use idbind_testkit::KubeEmulator;
use idbind_tls::CertificateAuthority;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt as _, Resource as _};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

use crate::error::{Result, Step as _};

/// Namespace of the workloads.
pub const NAMESPACE: &str = "apps";
/// The service account the binding allows (its token is in [`Stack::token_file`]).
pub const ALLOWED_SA: &str = "workload";
/// A service account of the same namespace that RBAC does not allow.
pub const DENIED_SA: &str = "intruder";
/// The scope the tests ask for.
pub const SCOPE: &str = "https://management.azure.com/.default";

const CLUSTER: &str = "east";
const IDENTITY: &str = "payments";
const PROXY_NAMESPACE: &str = "idbind-system";
const PROXY_SA: &str = "idbind-proxy";
/// What AKS injects as `AZURE_AUTHORITY_HOST`; in proxy mode only its path matters to clients.
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com/";

/// Where the token proxy runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// In this process, started by [`StackBuilder::start`].
    #[default]
    InProcess,
    /// Not started: run the `idbind-proxy` binary with [`Stack::proxy_args`] (see
    /// [`ProxyProcess`](crate::ProxyProcess)).
    External,
}

type Tweak<T> = Box<dyn FnOnce(&mut T) + Send>;

/// Options of a [`Stack`].
pub struct StackBuilder {
    mode: ProxyMode,
    emulator: EmulatorConfig,
    exchanger: Vec<Tweak<ExchangerConfig>>,
    surface: Vec<Tweak<SurfaceConfig>>,
    server: Vec<Tweak<ServerOptions>>,
    tls_check_interval: Duration,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self {
            mode: ProxyMode::InProcess,
            emulator: EmulatorConfig::default(),
            exchanger: Vec::new(),
            surface: Vec::new(),
            server: Vec::new(),
            tls_check_interval: Duration::ZERO,
        }
    }
}

impl StackBuilder {
    /// Where the proxy runs (default in-process).
    pub fn proxy_mode(mut self, mode: ProxyMode) -> Self {
        self.mode = mode;
        self
    }

    /// The Azure emulator's configuration (its listen address is always loopback port 0).
    pub fn emulator(mut self, config: EmulatorConfig) -> Self {
        self.emulator = config;
        self
    }

    /// Adjusts the in-process exchanger's configuration.
    pub fn exchanger(mut self, tweak: impl FnOnce(&mut ExchangerConfig) + Send + 'static) -> Self {
        self.exchanger.push(Box::new(tweak));
        self
    }

    /// Adjusts the in-process proxy's HTTP surface.
    pub fn surface(mut self, tweak: impl FnOnce(&mut SurfaceConfig) + Send + 'static) -> Self {
        self.surface.push(Box::new(tweak));
        self
    }

    /// Adjusts the in-process proxy's listener.
    pub fn server(mut self, tweak: impl FnOnce(&mut ServerOptions) + Send + 'static) -> Self {
        self.server.push(Box::new(tweak));
        self
    }

    /// How often the proxy looks at its certificate files (default: on every handshake).
    pub fn tls_check_interval(mut self, interval: Duration) -> Self {
        self.tls_check_interval = interval;
        self
    }

    /// Starts everything; returns when the proxy (if in-process) serves the binding.
    pub async fn start(self) -> Result<Stack> {
        Stack::start_with(self).await
    }
}

/// The in-process proxy and what tests look at.
pub struct RunningProxy {
    /// The exchanger behind the proxy.
    pub exchanger: Exchanger,
    /// The HTTPS listener.
    pub server: ProxyServer,
    /// The admin listener.
    pub admin: AdminServer,
    /// The serving certificate (reload counter).
    pub tls: ServerTls,
    /// The surface's metrics.
    pub metrics: ProxyMetrics,
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One member cluster of idbind with a bound identity, on loopback. See the crate docs.
pub struct Stack {
    kube: KubeEmulator,
    admin: kube::Client,
    azure: Emulator,
    dir: tempfile::TempDir,
    _issuer_server: AbortOnDrop,
    publisher: Publisher,
    keys: Mutex<KeySet>,
    ca: CertificateAuthority,
    sni: String,
    identity: IdentityInfo,
    fic: FicSpec,
    binding: String,
    proxy_kubeconfig: PathBuf,
    external_proxy: OnceLock<SocketAddr>,
    proxy: Option<RunningProxy>,
}

impl Stack {
    /// Options.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// A stack with default options and the proxy in-process.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    async fn start_with(options: StackBuilder) -> Result<Self> {
        let dir = tempfile::tempdir().step("creating a temporary directory")?;
        for sub in ["keys", "tls", "issuer"] {
            std::fs::create_dir(dir.path().join(sub)).step(format!("creating {sub}/"))?;
        }

        // Kubernetes: CRD, workloads, the proxy's own service account.
        let kube = KubeEmulator::start()
            .await
            .step("starting the Kubernetes API emulator")?;
        let admin = kube.client().step("an admin client")?;
        create(
            &Api::<CustomResourceDefinition>::all(admin.clone()),
            &IdentityBinding::crd(),
            "the CRD",
        )
        .await?;
        create_namespace(&admin, NAMESPACE).await?;
        for sa in [ALLOWED_SA, DENIED_SA] {
            create_service_account_with_pod(&admin, NAMESPACE, sa).await?;
        }
        create_namespace(&admin, PROXY_NAMESPACE).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), PROXY_NAMESPACE);
        create(
            &sas,
            &ServiceAccount {
                metadata: meta(PROXY_SA),
                ..Default::default()
            },
            "the proxy's SA",
        )
        .await?;
        grant_proxy_rbac(&admin, PROXY_NAMESPACE, PROXY_SA).await?;
        let proxy_token = kube
            .service_account_token(PROXY_NAMESPACE, PROXY_SA, 24 * 3600)
            .step("a token for the proxy's service account")?;
        let proxy_user = format!("system:serviceaccount:{PROXY_NAMESPACE}:{PROXY_SA}");
        let proxy_kubeconfig = kube
            .kubeconfig_for_token(&proxy_user, &proxy_token)
            .step("the proxy's kubeconfig")?;

        // Azure: the identity.
        let mut emulator_config = options.emulator;
        emulator_config.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let azure = idbind_emulator::start(emulator_config)
            .await
            .step("starting the Azure emulator")?;
        let identity = azure
            .create_identity(&azure.default_subscription(), "rg", IDENTITY)
            .step("creating the managed identity")?;

        // The issuer, served from a directory store.
        let store = Arc::new(DirectoryStore::new(dir.path().join("issuer")).step("the issuer store")?);
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .step("binding the issuer")?;
        let issuer_addr = listener.local_addr().step("the issuer's address")?;
        let router = idbind_issuer::router(store.clone());
        let issuer_server = AbortOnDrop(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "issuer server stopped");
            }
        }));
        let issuer_base =
            IssuerBaseUrl::parse(&format!("http://{issuer_addr}")).step("the issuer base URL")?;
        let publisher = Publisher::new(store, issuer_base.clone());

        // This cluster's keys, published for the identity; the FIC that trusts them.
        let keys = KeySet::generate(
            ClusterName::parse(CLUSTER).step("cluster name")?,
            jiff::Timestamp::now(),
        )
        .step("generating signing keys")?;
        write_key_dir(&dir.path().join("keys"), &keys).step("writing the key files")?;
        publisher
            .publish(
                &identity.tenant_id,
                &identity.client_id,
                keys.cluster(),
                &keys.published_keys(),
            )
            .await
            .step("publishing the keys")?;
        let fic = FicSpec::derive(
            DEFAULT_FIC_NAME,
            &issuer_base,
            &identity.resource_id,
            &identity.tenant_id,
            &identity.client_id,
        )
        .step("deriving the FIC")?;
        fic_manager(&azure)?
            .ensure(&identity.resource_id, &fic)
            .await
            .step("creating the FIC through ARM")?;

        // The RBAC and the Ready binding the controller would leave behind.
        let allowed = AllowedSubject::parse(&format!("{NAMESPACE}/{ALLOWED_SA}")).step("allowed subject")?;
        let rbac = idbind_rbac::generate(&identity.client_id, std::slice::from_ref(&allowed));
        create(
            &Api::<ClusterRole>::all(admin.clone()),
            &rbac.cluster_role,
            "the ClusterRole",
        )
        .await?;
        create(
            &Api::<ClusterRoleBinding>::all(admin.clone()),
            &rbac.cluster_role_binding,
            "the binding",
        )
        .await?;
        let binding = write_ready_binding(&admin, &identity, &fic, allowed).await?;

        // The serving certificate and the pod's files.
        let ca = CertificateAuthority::generate("idbind test cluster CA", Duration::from_secs(7 * 86400))
            .step("generating the CA")?;
        let sni = aks_sni_name(&uuid::Uuid::new_v4().to_string());
        let mut stack = Self {
            kube,
            admin,
            azure,
            dir,
            _issuer_server: issuer_server,
            publisher,
            keys: Mutex::new(keys),
            ca,
            sni,
            identity,
            fic,
            binding,
            proxy_kubeconfig,
            external_proxy: OnceLock::new(),
            proxy: None,
        };
        stack.rotate_certificate()?;
        std::fs::write(stack.ca_file(), stack.ca.cert_pem()).step("writing the CA file")?;
        let token = stack
            .sa_token(ALLOWED_SA, DEFAULT_SA_TOKEN_AUDIENCE, 3600)
            .await?;
        std::fs::write(stack.token_file(), &token).step("writing the token file")?;

        // Count Entra requests from here on (creating the FIC took an ARM token).
        stack.azure.reset_counters();
        if options.mode == ProxyMode::InProcess {
            let client = stack
                .kube
                .service_account_client(PROXY_NAMESPACE, PROXY_SA)
                .step("the proxy's client")?;
            stack.proxy = Some(
                stack
                    .start_proxy(
                        client,
                        options.exchanger,
                        options.surface,
                        options.server,
                        options.tls_check_interval,
                    )
                    .await?,
            );
        }
        Ok(stack)
    }

    async fn start_proxy(
        &self,
        client: kube::Client,
        exchanger_tweaks: Vec<Tweak<ExchangerConfig>>,
        surface_tweaks: Vec<Tweak<SurfaceConfig>>,
        server_tweaks: Vec<Tweak<ServerOptions>>,
        tls_check_interval: Duration,
    ) -> Result<RunningProxy> {
        let authority = url::Url::parse(self.azure.base_url()).step("the emulator's URL")?;
        let mut config = ExchangerConfig::new(authority, self.keys_dir());
        for tweak in exchanger_tweaks {
            tweak(&mut config);
        }
        let mut registry = Registry::default();
        let exchanger = Exchanger::start(client, config, registry.sub_registry_with_prefix("idbind"))
            .step("starting the exchanger")?;
        let metrics = ProxyMetrics::register(registry.sub_registry_with_prefix("idbind"));

        let mut surface_config = SurfaceConfig::new(url::Url::parse(PUBLIC_AUTHORITY).step("authority")?);
        for tweak in surface_tweaks {
            tweak(&mut surface_config);
        }
        let surface = Arc::new(Surface::new(exchanger.clone(), surface_config, metrics.clone()));
        let tls = ServerTls::from_files(self.tls_cert_file(), self.tls_key_file(), tls_check_interval)
            .step("loading the serving certificate")?;
        let mut server_options = ServerOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        for tweak in server_tweaks {
            tweak(&mut server_options);
        }
        let server = ProxyServer::start(surface, &tls, server_options)
            .await
            .step("starting the proxy")?;
        let readiness = {
            let exchanger = exchanger.clone();
            move || {
                let r = exchanger.readiness();
                ReadinessReport {
                    bindings_synced: r.bindings_synced,
                    keys_loaded: r.keys_loaded,
                    certificate_loaded: true,
                }
            }
        };
        let admin = AdminServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Arc::new(registry),
            readiness,
        )
        .await
        .step("starting the admin listener")?;

        let client_id = self.identity.client_id;
        wait_until("the proxy to serve the binding", Duration::from_secs(30), || {
            matches!(exchanger.bindings().lookup(&client_id), BindingLookup::Served(_))
                && exchanger.readiness().is_ready()
        })
        .await?;
        Ok(RunningProxy {
            exchanger,
            server,
            admin,
            tls,
            metrics,
        })
    }

    /// The Kubernetes API emulator.
    pub fn kube(&self) -> &KubeEmulator {
        &self.kube
    }

    /// An admin client of the Kubernetes API emulator.
    pub fn admin_client(&self) -> kube::Client {
        self.admin.clone()
    }

    /// The Azure emulator.
    pub fn azure(&self) -> &Emulator {
        &self.azure
    }

    /// The bound identity.
    pub fn identity(&self) -> &IdentityInfo {
        &self.identity
    }

    /// The bound identity's client id.
    pub fn client_id(&self) -> ClientId {
        self.identity.client_id
    }

    /// The bound identity's tenant.
    pub fn tenant_id(&self) -> TenantId {
        self.identity.tenant_id
    }

    /// The identity's federated credential: the issuer and subject assertions must carry.
    pub fn fic(&self) -> &FicSpec {
        &self.fic
    }

    /// The IdentityBinding's name.
    pub fn binding_name(&self) -> &str {
        &self.binding
    }

    /// The in-process proxy, if the stack runs one.
    pub fn proxy(&self) -> Option<&RunningProxy> {
        self.proxy.as_ref()
    }

    /// Takes the in-process proxy out (to shut it down).
    pub fn take_proxy(&mut self) -> Option<RunningProxy> {
        self.proxy.take()
    }

    /// Records where an external proxy listens (see [`ProxyMode::External`]).
    pub fn use_external_proxy(&self, addr: SocketAddr) {
        let _ = self.external_proxy.set(addr);
    }

    /// The proxy's HTTPS address (`127.0.0.1:0` if no proxy is known yet).
    pub fn proxy_addr(&self) -> SocketAddr {
        match (&self.proxy, self.external_proxy.get()) {
            (Some(p), _) => p.server.local_addr(),
            (None, Some(addr)) => *addr,
            (None, None) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }

    /// `https://127.0.0.1:<port>`: the `AZURE_KUBERNETES_TOKEN_PROXY` value (no path). The SNI
    /// name comes from `AZURE_KUBERNETES_SNI_NAME`, as on AKS where the URL names the API server.
    pub fn proxy_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.proxy_addr().port())
    }

    /// The SNI name the serving certificate is for (AKS-shaped: `<64 hex>.ests.aks`).
    pub fn sni_name(&self) -> &str {
        &self.sni
    }

    /// The admin listener's base URL (in-process proxy only).
    pub fn admin_url(&self) -> Option<String> {
        self.proxy
            .as_ref()
            .map(|p| format!("http://{}", p.admin.local_addr()))
    }

    /// The directory holding the stack's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The proxy's signing-key directory (the mounted key Secret).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The serving certificate file.
    pub fn tls_cert_file(&self) -> PathBuf {
        self.dir.path().join("tls/tls.crt")
    }

    /// The serving key file.
    pub fn tls_key_file(&self) -> PathBuf {
        self.dir.path().join("tls/tls.key")
    }

    /// The CA file pods get (`AZURE_KUBERNETES_CA_FILE`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The CA in PEM.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The allowed service account's projected token (`AZURE_FEDERATED_TOKEN_FILE`).
    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// A kubeconfig for the proxy's own service account (for the binary's `--kubeconfig`).
    pub fn proxy_kubeconfig(&self) -> &Path {
        &self.proxy_kubeconfig
    }

    /// The environment the webhook gives a pod (PROTOCOL.md §1.2), with the proxy at
    /// [`Stack::proxy_url`] and `AZURE_AUTHORITY_HOST` as AKS sets it.
    pub fn sdk_env(&self) -> Vec<(String, String)> {
        [
            ("AZURE_CLIENT_ID", self.client_id().to_string()),
            ("AZURE_TENANT_ID", self.tenant_id().to_string()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                self.token_file().display().to_string(),
            ),
            ("AZURE_AUTHORITY_HOST", PUBLIC_AUTHORITY.to_owned()),
            ("AZURE_KUBERNETES_TOKEN_PROXY", self.proxy_url()),
            ("AZURE_KUBERNETES_SNI_NAME", self.sni.clone()),
            ("AZURE_KUBERNETES_CA_FILE", self.ca_file().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Flags for the `idbind-proxy` binary serving this stack on loopback port 0.
    pub fn proxy_args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        [
            ("--listen", "127.0.0.1:0".to_owned()),
            ("--admin-listen", "127.0.0.1:0".to_owned()),
            ("--tls-cert", path(&self.tls_cert_file())),
            ("--tls-key", path(&self.tls_key_file())),
            ("--keys-dir", path(&self.keys_dir())),
            ("--authority-host", self.azure.base_url().to_owned()),
            ("--advertised-authority", PUBLIC_AUTHORITY.to_owned()),
            ("--kubeconfig", path(&self.proxy_kubeconfig)),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    /// A client that trusts the stack's CA and reaches [`Stack::sni_name`] at the proxy's address.
    pub fn https_client(&self) -> Result<reqwest::Client> {
        self.https_client_builder()?
            .build()
            .step("building an HTTPS client")
    }

    /// [`Stack::https_client`], to adjust.
    pub fn https_client_builder(&self) -> Result<reqwest::ClientBuilder> {
        let ca = reqwest::Certificate::from_pem(self.ca.cert_pem().as_bytes()).step("the CA for reqwest")?;
        Ok(reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&self.sni, self.proxy_addr()))
    }

    /// `https://<sni>:<port><path>`.
    pub fn token_url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.sni, self.proxy_addr().port())
    }

    /// A client-credentials form for the bound identity.
    pub fn token_form(&self, assertion: &str, scope: &str) -> String {
        let client_id = self.client_id().to_string();
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("scope", scope),
                ("client_assertion_type", idbind_proxy::JWT_BEARER),
                ("client_assertion", assertion),
            ])
            .finish()
    }

    /// A token for a service account of [`NAMESPACE`] from the TokenRequest API, bound to its pod.
    pub async fn sa_token(&self, service_account: &str, audience: &str, seconds: i64) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), NAMESPACE);
        let pod_name = pod_name(service_account);
        let pod = pods
            .get(&pod_name)
            .await
            .step(format!("reading pod {pod_name}"))?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.clone()),
                    uid: pod.meta().uid.clone(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), NAMESPACE);
        let response: TokenRequest = sas
            .create_subresource("token", service_account, &PostParams::default(), &request)
            .await
            .step(format!("TokenRequest for {service_account}"))?;
        response
            .status
            .and_then(|s| s.token)
            .step("the TokenRequest status")
    }

    /// Verifies an access token against the Azure emulator's JWKS; returns its claims.
    pub async fn verify_access_token(&self, token: &str) -> Result<serde_json::Value> {
        let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(self.azure.jwks_url())
            .await
            .step("fetching the emulator's JWKS")?
            .json()
            .await
            .step("reading the emulator's JWKS")?;
        let header = jsonwebtoken::decode_header(token).step("the access token's header")?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| jwks.find(kid))
            .step("the access token's kid")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).step("the emulator's key")?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .step("verifying the access token")?;
        Ok(data.claims)
    }

    /// Checks that a token is the bound identity's: verified, `appid` = client id, `oid` =
    /// principal id, `tid` = tenant, audience from [`SCOPE`].
    pub async fn assert_identity_token(&self, token: &str) -> Result<serde_json::Value> {
        let claims = self.verify_access_token(token).await?;
        let expected = [
            ("appid", self.identity.client_id.to_string()),
            ("oid", self.identity.principal_id.to_string()),
            ("tid", self.identity.tenant_id.to_string()),
            ("aud", "https://management.azure.com/".to_owned()),
        ];
        for (claim, want) in expected {
            if claims[claim].as_str() != Some(want.as_str()) {
                return Err(crate::Error {
                    step: "checking the access token".into(),
                    reason: format!("claim {claim} is {} instead of {want}", claims[claim]),
                });
            }
        }
        Ok(claims)
    }

    /// Requests the Azure emulator served at its Entra token endpoint.
    pub fn entra_calls(&self) -> u64 {
        self.azure.counters().total(Route::EntraToken)
    }

    /// Rotates this cluster's signing key as the controller does: the next key is published to
    /// the identity's JWKS first, then takes over in the key files. Returns the new `kid`.
    pub async fn rotate_signing_key(&self) -> Result<String> {
        let now = jiff::Timestamp::now();
        let (cluster, published) = {
            let mut keys = self.keys.lock();
            keys.apply(RotationStep::PublishNext, now)
                .step("staging the next key")?;
            (keys.cluster().clone(), keys.published_keys())
        };
        self.publisher
            .publish(
                &self.identity.tenant_id,
                &self.identity.client_id,
                &cluster,
                &published,
            )
            .await
            .step("publishing the next key")?;
        let mut keys = self.keys.lock();
        keys.apply(RotationStep::Activate, now)
            .step("activating the next key")?;
        write_key_dir(&self.keys_dir(), &keys).step("writing the key files")?;
        Ok(keys.signing_key().kid().to_owned())
    }

    /// Writes a freshly issued serving certificate and key, each file replaced atomically.
    pub fn rotate_certificate(&self) -> Result<()> {
        let leaf = self
            .ca
            .issue_server_cert(
                &[self.sni.clone(), "localhost".into()],
                &[Ipv4Addr::LOCALHOST.into()],
                Duration::from_secs(86400),
            )
            .step("issuing a serving certificate")?;
        replace_file(&self.tls_cert_file(), leaf.cert_pem.as_bytes())?;
        replace_file(&self.tls_key_file(), leaf.key_pem.as_bytes())
    }

    /// The in-process proxy's `/metrics` text.
    pub async fn metrics_text(&self) -> Result<String> {
        let url = format!(
            "{}/metrics",
            self.admin_url().step("the in-process proxy's admin URL")?
        );
        reqwest::get(url)
            .await
            .step("GET /metrics")?
            .text()
            .await
            .step("reading /metrics")
    }
}

/// An AKS-shaped SNI name: `"a" + base32hex(sha256("identity-binding" + id)) + ".ests.aks"`, lower
/// case, no padding (the newer format in PROTOCOL.md §4.6). The older hex format makes a 64-character
/// label, over DNS's 63, which rustls (and so the Rust SDK and this proxy's certificates) refuses.
pub fn aks_sni_name(cluster_uid: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("identity-binding{cluster_uid}").as_bytes(),
    );
    let mut out = String::from("a");
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in digest.as_ref() {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out.push_str(".ests.aks");
    out
}

fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).step(format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).step(format!("replacing {}", path.display()))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

fn pod_name(service_account: &str) -> String {
    format!("{service_account}-0")
}

async fn create<K>(api: &Api<K>, object: &K, what: &str) -> Result<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object)
        .await
        .step(format!("creating {what}"))
}

async fn create_namespace(admin: &kube::Client, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    create(
        &namespaces,
        &Namespace {
            metadata: meta(name),
            ..Default::default()
        },
        "a namespace",
    )
    .await
    .map(drop)
}

async fn create_service_account_with_pod(admin: &kube::Client, namespace: &str, name: &str) -> Result<()> {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    create(
        &sas,
        &ServiceAccount {
            metadata: meta(name),
            ..Default::default()
        },
        "a service account",
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
    let pod = Pod {
        metadata: meta(&pod_name(name)),
        spec: Some(PodSpec {
            service_account_name: Some(name.to_owned()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:latest".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    create(&pods, &pod, "a pod").await.map(drop)
}

/// Grants the proxy's service account `namespace/service_account` what the proxy needs:
/// TokenReview, SubjectAccessReview and reading IdentityBindings (ClusterRole and
/// ClusterRoleBinding `idbind-proxy`).
pub async fn grant_proxy_rbac(admin: &kube::Client, namespace: &str, service_account: &str) -> Result<()> {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    };
    let role = ClusterRole {
        metadata: meta("idbind-proxy"),
        rules: Some(vec![
            rule("authentication.k8s.io", "tokenreviews", &["create"]),
            rule("authorization.k8s.io", "subjectaccessreviews", &["create"]),
            rule("idbind.dev", "identitybindings", &["get", "list", "watch"]),
        ]),
        ..Default::default()
    };
    create(
        &Api::<ClusterRole>::all(admin.clone()),
        &role,
        "the proxy's ClusterRole",
    )
    .await?;
    let binding = ClusterRoleBinding {
        metadata: meta("idbind-proxy"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "idbind-proxy".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: service_account.into(),
            namespace: Some(namespace.into()),
            ..Default::default()
        }]),
    };
    create(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        &binding,
        "the proxy's ClusterRoleBinding",
    )
    .await
    .map(drop)
}

fn fic_manager(azure: &Emulator) -> Result<FicManager> {
    let sp = azure.default_principal();
    let base = azure.base_url();
    let authority = url::Url::parse(base).step("the emulator's URL")?;
    let credential =
        ClientSecretCredential::new(&authority, sp.tenant_id, sp.client_id, sp.client_secret.as_str())
            .step("an ARM credential")?;
    let cloud = CloudConfig::custom(base, base, PUBLIC_ARM_SCOPE).step("the emulator's cloud")?;
    let arm = ArmClient::new(cloud, Arc::new(credential), RetryPolicy::default()).step("an ARM client")?;
    Ok(FicManager::new(arm))
}

/// Creates the IdentityBinding and writes the status the controller would write once done.
async fn write_ready_binding(
    admin: &kube::Client,
    identity: &IdentityInfo,
    fic: &FicSpec,
    allowed: AllowedSubject,
) -> Result<String> {
    let bindings: Api<IdentityBinding> = Api::all(admin.clone());
    let spec = IdentityBindingSpec {
        managed_identity: ManagedIdentityRef {
            resource_id: identity.resource_id.to_string(),
        },
        allowed_subjects: vec![allowed],
    };
    let created = create(
        &bindings,
        &IdentityBinding::new(IDENTITY, spec),
        "the IdentityBinding",
    )
    .await?;
    let generation = created.metadata.generation;
    let mut status = IdentityBindingStatus {
        identity_name: Some(IDENTITY.to_owned()),
        client_id: Some(identity.client_id.to_string()),
        object_id: Some(identity.principal_id.to_string()),
        tenant_id: Some(identity.tenant_id.to_string()),
        oidc_issuer_url: Some(fic.issuer.clone()),
        federated_credential: Some(FederatedCredentialStatus {
            name: fic.name.clone(),
            issuer: fic.issuer.clone(),
            subject: fic.subject.clone(),
        }),
        observed_generation: generation,
        conditions: Vec::new(),
    };
    let now = jiff::Timestamp::now();
    for type_ in condition::ALL {
        set_condition(&mut status.conditions, type_, true, "Bound", "", generation, now);
    }
    bindings
        .patch_status(
            IDENTITY,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": status })),
        )
        .await
        .step("writing the binding's status")?;
    Ok(IDENTITY.to_owned())
}

/// Polls `check` every 20 ms until it holds, or fails after `limit`.
pub(crate) async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            return Err(crate::Error {
                step: format!("waiting for {what}"),
                reason: format!("not within {limit:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_are_valid_dns_names() {
        let name = aks_sni_name("3f1c2d4e-0000-4000-8000-000000000000");
        let label = name.strip_suffix(".ests.aks").unwrap();
        assert_eq!(label.len(), 53);
        assert!(label.starts_with('a'));
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
        );
        assert_eq!(name, aks_sni_name("3f1c2d4e-0000-4000-8000-000000000000"));
        assert!(rustls_pki_types::ServerName::try_from(name.as_str()).is_ok());
    }
}
