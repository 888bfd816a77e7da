//! Shared harness: an Azure emulator, Kubernetes API emulators with the CRD installed, an issuer
//! directory store served on loopback, and controllers configured against them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use idbind_controller::args::Args;
use idbind_controller::runtime::{Running, RuntimeBuilder};
use idbind_emulator::{EmulatorConfig, IdentityInfo};
use idbind_issuer::{DirectoryStore, IssuerStore, Jwks, Publisher};
use idbind_model::{AllowedSubject, IdentityBinding, IdentityBindingSpec, IssuerBaseUrl, ManagedIdentityRef};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};

/// How long any condition may take before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`, failing the test after [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Azure emulator plus one issuer directory store served over HTTP.
pub struct World {
    pub azure: idbind_emulator::Emulator,
    pub issuer_dir: tempfile::TempDir,
    pub issuer_base: String,
    pub store: Arc<dyn IssuerStore>,
    issuer_server: tokio::task::JoinHandle<()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.issuer_server.abort();
    }
}

impl World {
    pub async fn start() -> Self {
        init_logs();
        let azure = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
        let issuer_dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn IssuerStore> = Arc::new(DirectoryStore::new(issuer_dir.path()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = idbind_issuer::router(store.clone());
        let issuer_server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            azure,
            issuer_dir,
            issuer_base: format!("http://{addr}/issuer"),
            store,
            issuer_server,
        }
    }

    pub fn identity(&self, name: &str) -> IdentityInfo {
        self.azure
            .create_identity(&self.azure.default_subscription(), "rg", name)
            .unwrap()
    }

    pub fn publisher(&self) -> Publisher {
        Publisher::new(
            self.store.clone(),
            IssuerBaseUrl::parse(&self.issuer_base).unwrap(),
        )
    }

    pub async fn jwks(&self, id: &IdentityInfo) -> Option<Jwks> {
        self.publisher()
            .read_jwks(&id.tenant_id, &id.client_id)
            .await
            .unwrap()
    }

    /// Key ids in the identity's JWKS.
    pub async fn kids(&self, id: &IdentityInfo) -> Vec<String> {
        self.jwks(id)
            .await
            .map(|j| j.keys.iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default()
    }

    pub fn fics(&self, id: &IdentityInfo) -> Vec<idbind_emulator::FicInfo> {
        self.azure.fics(&id.resource_id).unwrap_or_default()
    }

    /// Controller flags against this world.
    pub fn args(&self, cluster: &str, extra: &[&str]) -> Args {
        let sp = self.azure.default_principal();
        let base = self.azure.base_url().to_owned();
        let store = format!("dir:{}", self.issuer_dir.path().display());
        let tenant = sp.tenant_id.to_string();
        let client = sp.client_id.to_string();
        let secret = format!("--azure-client-secret={}", sp.client_secret);
        let mut argv: Vec<String> = [
            "idbind-controller",
            "--cluster-name",
            cluster,
            "--namespace",
            "idbind",
            "--azure-cloud",
            "custom",
            "--azure-authority-host",
            &base,
            "--arm-endpoint",
            &base,
            "--azure-tenant-id",
            &tenant,
            "--azure-client-id",
            &client,
            &secret,
            "--issuer-base-url",
            &self.issuer_base,
            "--issuer-store",
            &store,
            "--admin-listen",
            "127.0.0.1:0",
            "--lease-duration",
            "2s",
            "--lease-renew-deadline",
            "1s",
            "--lease-retry-period",
            "100ms",
            "--error-backoff-min",
            "100ms",
            "--error-backoff-max",
            "1s",
            "--arm-max-attempts",
            "2",
            "--arm-max-elapsed",
            "2s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        Args::try_parse_from(argv).unwrap()
    }
}

use clap::Parser as _;

/// One Kubernetes API emulator with the CRD and the idbind namespace.
pub struct Cluster {
    pub kube: KubeEmulator,
    pub client: kube::Client,
}

impl Cluster {
    pub async fn start() -> Self {
        let kube = KubeEmulator::start().await.unwrap();
        let client = kube.client().unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &IdentityBinding::crd())
            .await
            .unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in ["idbind", "team-a", "team-b"] {
            let obj = Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            namespaces.create(&PostParams::default(), &obj).await.unwrap();
        }
        Self { kube, client }
    }

    pub fn bindings(&self) -> Api<IdentityBinding> {
        Api::all(self.client.clone())
    }

    pub async fn bind(&self, name: &str, id: &IdentityInfo, subjects: &[&str]) -> IdentityBinding {
        let spec = IdentityBindingSpec {
            managed_identity: ManagedIdentityRef {
                resource_id: id.resource_id.to_string(),
            },
            allowed_subjects: subjects
                .iter()
                .map(|s| AllowedSubject::parse(s).unwrap())
                .collect(),
        };
        self.bindings()
            .create(&PostParams::default(), &IdentityBinding::new(name, spec))
            .await
            .unwrap()
    }

    /// Binds `id` `n` times at once as `<prefix>-<i>`, binding `i` allowing `team-<i>/app`;
    /// returns the names.
    pub async fn bind_many(&self, prefix: &str, id: &IdentityInfo, n: usize) -> Vec<String> {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        futures::future::join_all(names.iter().enumerate().map(|(i, name)| async move {
            let subject = format!("team-{i}/app");
            self.bind(name, id, &[subject.as_str()]).await
        }))
        .await;
        names
    }

    pub async fn get(&self, name: &str) -> Option<IdentityBinding> {
        self.bindings().get_opt(name).await.unwrap()
    }

    /// Waits until the binding's condition `type_` has `reason` for the current generation.
    pub async fn wait_condition(&self, name: &str, type_: &str, reason: &str) -> IdentityBinding {
        eventually(&format!("{name}: {type_} with reason {reason}"), || async {
            let b = self.get(name).await?;
            let current = b.status.as_ref()?.observed_generation == b.metadata.generation;
            let c = b.condition(type_)?;
            (current && c.reason == reason).then_some(b)
        })
        .await
    }

    pub async fn wait_ready(&self, name: &str) -> IdentityBinding {
        let mut last = None;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let b = self.get(name).await;
            if let Some(b) = b.as_ref().filter(|b| b.is_ready()) {
                return b.clone();
            }
            last = b.or(last);
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {name} to be Ready; last seen: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str) {
        eventually(&format!("{name} to be deleted"), || async {
            self.get(name).await.is_none().then_some(())
        })
        .await;
    }

    /// This cluster's key set, from its signing key Secret.
    pub async fn keyset(&self) -> Option<idbind_issuer::KeySet> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "idbind");
        let s = secrets.get_opt("idbind-signing-keys").await.unwrap()?;
        let data = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        Some(idbind_issuer::KeySet::from_secret_data(&data).unwrap())
    }

    /// The kids in this cluster's signing key Secret (current, next, previous).
    pub async fn secret_kids(&self) -> Vec<String> {
        let Some(keys) = self.keyset().await else {
            return vec![];
        };
        keys.published_keys().into_iter().map(|k| k.kid).collect()
    }

    /// The kid that signs now.
    pub async fn current_kid(&self) -> String {
        self.keyset().await.unwrap().signing_key().kid().to_owned()
    }

    pub async fn start_controller(&self, args: Args) -> Running {
        RuntimeBuilder::new(args)
            .client(self.client.clone())
            .start()
            .await
            .unwrap()
    }
}

/// The value of the first sample in Prometheus text `metrics` whose line starts with `series`
/// (0 when there is none).
pub fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Plain GET returning status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Logs to the test output (`RUST_LOG` overrides the default filter).
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,idbind_controller=debug".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
