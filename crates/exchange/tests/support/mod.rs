//! The world an exchanger lives in, on loopback: the Kubernetes API emulator (TokenRequest,
//! TokenReview, SubjectAccessReview, IdentityBindings), the Azure emulator (Entra), and an issuer
//! served from a directory store, with one managed identity bound end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idbind_emulator::{Emulator, EmulatorConfig, FicInfo, IdentityInfo, Route};
use idbind_exchange::{
    ExchangeRequest, Exchanger, ExchangerConfig, ManualClock, TokenResponse, write_key_dir,
};
use idbind_issuer::{ClusterName, DirectoryStore, KeySet, Publisher};
use idbind_model::{
    AllowedSubject, DEFAULT_SA_TOKEN_AUDIENCE, FederatedCredentialStatus, IdentityBinding,
    IdentityBindingSpec, IdentityBindingStatus, IssuerBaseUrl, ManagedIdentityRef, condition, set_condition,
};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt as _, ResourceExt as _};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;

pub const NS: &str = "apps";
pub const SA: &str = "app";
pub const INTRUDER: &str = "intruder";
pub const SCOPE: &str = "https://management.azure.com/.default";
pub const ENTRA_TOKEN_LIFETIME: Duration = Duration::from_secs(3000);

/// Requests the exchanger sent to the Kubernetes API, by path.
#[derive(Clone, Default)]
pub struct KubeCalls(Arc<Mutex<HashMap<String, u64>>>);

impl KubeCalls {
    fn record(&self, path: &str) {
        let kind = if path.ends_with("/tokenreviews") {
            "tokenreview"
        } else if path.ends_with("/subjectaccessreviews") {
            "sar"
        } else {
            "other"
        };
        *self.0.lock().entry(kind.to_owned()).or_default() += 1;
    }

    pub fn token_reviews(&self) -> u64 {
        self.0.lock().get("tokenreview").copied().unwrap_or(0)
    }

    pub fn access_reviews(&self) -> u64 {
        self.0.lock().get("sar").copied().unwrap_or(0)
    }
}

/// Aborts a spawned server when dropped.
pub struct ServerGuard(tokio::task::JoinHandle<()>);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One bound identity.
pub struct Bound {
    pub identity: IdentityInfo,
    pub binding_name: String,
    pub issuer: String,
}

pub struct World {
    pub kube: KubeEmulator,
    pub admin: kube::Client,
    pub azure: Emulator,
    pub issuer_base: IssuerBaseUrl,
    pub publisher: Publisher,
    pub keys: Mutex<KeySet>,
    pub keys_dir: tempfile::TempDir,
    _issuer_dir: tempfile::TempDir,
    _issuer_server: ServerGuard,
    pub clock: ManualClock,
    pub calls: KubeCalls,
    pub exchanger: Exchanger,
    pub registry: Registry,
    pub bound: Bound,
    pub entra_ca: Option<String>,
}

pub struct Options {
    pub key_reload_interval: Duration,
    /// Serve Entra over HTTPS with a test CA.
    pub entra_tls: bool,
    /// Give the exchanger that CA (as its only trust root).
    pub trust_entra_ca: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            key_reload_interval: Duration::from_secs(3600),
            entra_tls: false,
            trust_entra_ca: false,
        }
    }
}

impl World {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("idbind_exchange=debug")
            .with_test_writer()
            .try_init();
        let kube = KubeEmulator::start().await.unwrap();
        let admin = kube.client().unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
        crds.create(&PostParams::default(), &IdentityBinding::crd())
            .await
            .unwrap();
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: meta(NS),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
        for name in [SA, INTRUDER] {
            sas.create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta(name),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }

        // Entra tokens shorter than the SA tokens (3600 s), so moving the clock across a token's
        // lifetime keeps the SA token valid.
        let mut azure_config = EmulatorConfig {
            token_lifetime: ENTRA_TOKEN_LIFETIME,
            ..Default::default()
        };
        let mut entra_ca = None;
        if options.entra_tls {
            let ca = idbind_tls::CertificateAuthority::generate("entra test CA", Duration::from_secs(3600))
                .unwrap();
            let leaf = ca
                .issue_server_cert(
                    &["localhost".into()],
                    &["127.0.0.1".parse().unwrap()],
                    Duration::from_secs(3600),
                )
                .unwrap();
            azure_config.tls = Some(Arc::new(
                idbind_tls::server_config(&leaf.cert_pem, &leaf.key_pem).unwrap(),
            ));
            entra_ca = Some(ca.cert_pem().to_owned());
        }
        let azure = idbind_emulator::start(azure_config).await.unwrap();

        // The issuer: a directory store served over HTTP on loopback.
        let issuer_dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DirectoryStore::new(issuer_dir.path()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = idbind_issuer::router(store.clone());
        let server = ServerGuard(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }));
        let issuer_base = IssuerBaseUrl::parse(&format!("http://{addr}")).unwrap();
        let publisher = Publisher::new(store, issuer_base.clone());

        let keys = KeySet::generate(ClusterName::parse("east").unwrap(), jiff::Timestamp::now()).unwrap();
        let keys_dir = tempfile::tempdir().unwrap();
        write_key_dir(keys_dir.path(), &keys).unwrap();

        let clock = ManualClock::starting_now();
        let calls = KubeCalls::default();
        let mut registry = Registry::default();
        let mut config = ExchangerConfig::new(azure.base_url().parse().unwrap(), keys_dir.path());
        config.clock = Arc::new(clock.clone());
        config.key_reload_interval = options.key_reload_interval;
        config.entra.backoff_base = Duration::from_millis(5);
        config.entra.backoff_max = Duration::from_millis(20);
        if options.trust_entra_ca {
            config.entra.extra_roots_pem = entra_ca.clone().map(String::into_bytes);
            config.entra.only_extra_roots = true;
        }
        let exchanger = Exchanger::start(counting_client(&kube, &calls), config, &mut registry).unwrap();

        let mut world = Self {
            kube,
            admin,
            azure,
            issuer_base,
            publisher,
            keys: Mutex::new(keys),
            keys_dir,
            _issuer_dir: issuer_dir,
            _issuer_server: server,
            clock,
            calls,
            exchanger,
            registry,
            bound: Bound {
                identity: placeholder_identity(),
                binding_name: String::new(),
                issuer: String::new(),
            },
            entra_ca,
        };
        world.bound = world
            .bind(
                "payments",
                true,
                &[AllowedSubject::parse(&format!("{NS}/{SA}")).unwrap()],
            )
            .await;
        world.exchanger.wait_synced().await;
        let client_id = world.bound.identity.client_id;
        eventually("the binding is indexed", || {
            matches!(
                world.exchanger.bindings().lookup(&client_id),
                idbind_exchange::BindingLookup::Served(_)
            )
        })
        .await;
        world
    }

    /// Creates an identity with its FIC, publishes this cluster's keys to its issuer, generates its
    /// RBAC and creates an IdentityBinding with a status that is Ready (or not).
    pub async fn bind(&self, name: &str, ready: bool, allowed: &[AllowedSubject]) -> Bound {
        let sub = self.azure.default_subscription();
        let identity = self.azure.create_identity(&sub, "rg", name).unwrap();
        let issuer = self
            .issuer_base
            .issuer_for(&identity.tenant_id, &identity.client_id);
        let subject = identity.resource_id.to_lowercase();
        self.azure
            .put_fic(&identity.resource_id, &FicInfo::new("idbind", &issuer, &subject))
            .unwrap();
        let published = self.keys.lock().published_keys();
        let cluster = self.keys.lock().cluster().clone();
        self.publisher
            .publish(&identity.tenant_id, &identity.client_id, &cluster, &published)
            .await
            .unwrap();

        let rbac = idbind_rbac::generate(&identity.client_id, allowed);
        Api::<ClusterRole>::all(self.admin.clone())
            .create(&PostParams::default(), &rbac.cluster_role)
            .await
            .unwrap();
        Api::<ClusterRoleBinding>::all(self.admin.clone())
            .create(&PostParams::default(), &rbac.cluster_role_binding)
            .await
            .unwrap();

        let bindings: Api<IdentityBinding> = Api::all(self.admin.clone());
        let created = bindings
            .create(
                &PostParams::default(),
                &IdentityBinding::new(
                    name,
                    IdentityBindingSpec {
                        managed_identity: ManagedIdentityRef {
                            resource_id: identity.resource_id.to_string(),
                        },
                        allowed_subjects: allowed.to_vec(),
                    },
                ),
            )
            .await
            .unwrap();
        let generation = created.metadata.generation;
        let mut status = IdentityBindingStatus {
            identity_name: Some(name.to_owned()),
            client_id: Some(identity.client_id.to_string()),
            object_id: Some(identity.principal_id.to_string()),
            tenant_id: Some(identity.tenant_id.to_string()),
            oidc_issuer_url: Some(issuer.clone()),
            federated_credential: Some(FederatedCredentialStatus {
                name: "idbind".into(),
                issuer: issuer.clone(),
                subject,
            }),
            observed_generation: generation,
            conditions: vec![],
        };
        let reason = if ready { "Bound" } else { "IssuerNotPublished" };
        set_condition(
            &mut status.conditions,
            condition::READY,
            ready,
            reason,
            "",
            generation,
            jiff::Timestamp::now(),
        );
        self.set_status(name, &status).await;
        Bound {
            identity,
            binding_name: created.name_any(),
            issuer,
        }
    }

    pub async fn set_status(&self, name: &str, status: &IdentityBindingStatus) {
        let bindings: Api<IdentityBinding> = Api::all(self.admin.clone());
        bindings
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    /// A projected service-account token from the TokenRequest API.
    pub async fn sa_token(&self, name: &str, audience: &str, seconds: i64) -> String {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), NS);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                expiration_seconds: Some(seconds),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response: TokenRequest = sas
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .unwrap();
        response.status.unwrap().token.unwrap()
    }

    pub async fn app_token(&self) -> String {
        self.sa_token(SA, DEFAULT_SA_TOKEN_AUDIENCE, 3600).await
    }

    pub fn request(&self, assertion: &str) -> ExchangeRequest {
        ExchangeRequest {
            client_id: self.bound.identity.client_id.to_string(),
            scope: SCOPE.to_owned(),
            assertion: assertion.to_owned(),
            claims: None,
            tenant_hint: None,
            correlation_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn entra_calls(&self) -> u64 {
        self.azure.counters().total(Route::EntraToken)
    }

    /// Checks an access token against the Azure emulator's JWKS and returns its claims.
    pub async fn verify(&self, response: &TokenResponse) -> serde_json::Value {
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &self.entra_ca {
            http = http.tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap());
        }
        let jwks: jsonwebtoken::jwk::JwkSet = http
            .build()
            .unwrap()
            .get(self.azure.jwks_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let header = jsonwebtoken::decode_header(&response.access_token).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid in the emulator's JWKS");
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&response.access_token, &key, &validation)
            .unwrap()
            .claims
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

fn placeholder_identity() -> IdentityInfo {
    IdentityInfo {
        resource_id: idbind_model::IdentityResourceId::new("s", "r", "n").unwrap(),
        client_id: idbind_model::ClientId::new_random(),
        principal_id: idbind_model::PrincipalId::new_random(),
        tenant_id: idbind_model::TenantId::new_random(),
    }
}

/// A kube client for the emulator's admin that counts the requests it sends.
fn counting_client(kube: &KubeEmulator, calls: &KubeCalls) -> kube::Client {
    let mut config = kube::Config::new(kube.base_url().parse().unwrap());
    config.default_namespace = "default".into();
    let certs = idbind_tls::parse_certs(kube.ca_pem().unwrap()).unwrap();
    config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
    config.auth_info.token = Some(kube.admin_token().to_owned().into());
    let calls = calls.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        calls.record(req.uri().path());
        req
    });
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build()
}

/// Polls `cond` until it holds (30 s at most, generous for loaded CI machines).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls an async condition until it holds (30 s at most).
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
