//! One idbind member cluster on this machine: the Kubernetes API emulator, `idbind-controller`,
//! `idbind-proxy` and kubelet-lite, as separate processes wired like a cluster would wire them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use idbind_model::{AllowedSubject, IdentityBinding, IdentityBindingSpec, ManagedIdentityRef};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{
    Container, KeyToPath, Namespace, Pod, PodSpec, ProjectedVolumeSource, SecretVolumeSource, ServiceAccount,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use super::azure::EmulatorInfo;
use super::client::PodEnv;
use super::kubelet::Kubelet;
use super::process::{Process, ProcessSpec, Readiness};
use super::{Binaries, eventually, free_port};
use crate::util;

/// idbind's namespace (controller `--namespace`).
pub const NAMESPACE: &str = "idbind";
/// The proxy's Service name (controller `--proxy-service`); its DNS name is the SNI name.
pub const PROXY_SERVICE: &str = "idbind-proxy";
/// The proxy's TLS server name, `<service>.<namespace>.svc` (the controller's default).
pub const SNI_NAME: &str = "idbind-proxy.idbind.svc";
/// The signing-key Secret (controller `--signing-key-secret`).
const SIGNING_KEY_SECRET: &str = "idbind-signing-keys";
/// The proxy's TLS Secret (controller `--proxy-tls-secret`).
const PROXY_TLS_SECRET: &str = "idbind-proxy-tls";
/// The MutatingWebhookConfiguration (controller `--webhook-configuration`).
const WEBHOOK_CONFIGURATION: &str = "idbind";
/// What AKS injects as `AZURE_AUTHORITY_HOST`; in proxy mode SDKs keep only its path, and
/// azure-identity requires https.
pub const POD_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// The CRD manifest `cargo xtask codegen` writes.
const CRD_FILE: &str = "deploy/crds/identitybindings.idbind.dev.yaml";

const KEYS_MOUNT: &str = "/var/run/secrets/idbind/signing-keys";
const TLS_MOUNT: &str = "/var/run/secrets/idbind/tls";
const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The container name of the workload pods this module creates.
pub const WORKLOAD_CONTAINER: &str = "app";

/// How long any one thing may take before a step fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Where this cluster's issuer documents go.
#[derive(Clone, Debug)]
pub enum IssuerRole {
    /// The controller serves `issuer_dir` over HTTP on loopback (and publishes into it).
    Serve,
    /// Another cluster's controller serves `issuer_dir` at this base URL; this one only publishes.
    Publish {
        /// The base URL of the serving cluster.
        base_url: String,
    },
}

/// How to set up a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Cluster name (prefix of its key ids).
    pub name: String,
    /// Directory of this cluster's files (kubeconfig, pods/).
    pub dir: PathBuf,
    /// Directory of the log files.
    pub logs: PathBuf,
    /// The shared issuer directory store.
    pub issuer_dir: PathBuf,
    /// Serve the issuer or only publish.
    pub issuer: IssuerRole,
    /// `--fic-gc` (`retain` or `delete`).
    pub fic_gc: String,
}

impl ClusterOptions {
    fn log_name(&self, component: &str) -> String {
        format!("{}-{component}", self.name)
    }
}

/// Addresses of a running cluster, for reports.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Kubernetes API.
    pub kube_api: String,
    /// Controller admin port.
    pub controller_admin: SocketAddr,
    /// Issuer base URL (served by this controller or another).
    pub issuer_base_url: String,
    /// The admission webhook URL the API server calls.
    pub webhook_url: Option<String>,
    /// Proxy HTTPS listener.
    pub proxy: SocketAddr,
    /// Proxy admin port.
    pub proxy_admin: SocketAddr,
}

/// A running cluster. Dropping it kills its processes; [`Cluster::stop`] stops them in order.
pub struct Cluster {
    options: ClusterOptions,
    binaries: Binaries,
    azure: EmulatorInfo,
    kubeconfig: PathBuf,
    client: kube::Client,
    kube: Process,
    controller: Option<Process>,
    controller_args: Vec<String>,
    proxy: Option<Process>,
    kubelet: Option<Kubelet>,
    endpoints: Endpoints,
}

impl Cluster {
    /// Starts everything, reporting each step through `progress`.
    pub async fn start(
        options: ClusterOptions,
        binaries: &Binaries,
        azure: &EmulatorInfo,
        progress: &dyn Fn(&str),
    ) -> Result<Self> {
        std::fs::create_dir_all(&options.dir)
            .with_context(|| format!("creating {}", options.dir.display()))?;
        let kubeconfig = options.dir.join("kubeconfig");
        progress("Kubernetes API emulator");
        let kube = Process::start(
            ProcessSpec::new(
                &options.log_name("kube-api"),
                &binaries.kube_emulator,
                &options.logs,
            )
            .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .args([&kubeconfig]),
        )
        .await?;
        let kube_api = kube.ready_field("base_url")?;
        let client = client_from(&kubeconfig).await?;

        progress("IdentityBinding CRD from deploy/crds/");
        install_crd(&client).await?;
        ensure_namespace(&client, NAMESPACE).await?;

        let mut cluster = Self {
            binaries: binaries.clone(),
            azure: azure.clone(),
            kubeconfig,
            client,
            kube,
            controller: None,
            controller_args: Vec::new(),
            proxy: None,
            kubelet: None,
            endpoints: Endpoints {
                kube_api,
                controller_admin: SocketAddr::from(([127, 0, 0, 1], 0)),
                issuer_base_url: String::new(),
                webhook_url: None,
                proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
                proxy_admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            options,
        };
        progress("idbind-controller (keys, certificates, webhook, issuer)");
        cluster.start_controller_fresh().await?;
        cluster.wait_controller_objects().await?;

        progress("kubelet-lite and idbind-proxy");
        let kubelet = Kubelet::start(cluster.client.clone(), &cluster.options.dir.join("pods")).await?;
        cluster.kubelet = Some(kubelet);
        cluster.start_proxy().await?;
        Ok(cluster)
    }

    /// Picks the controller's ports and starts it; retries with other ports if one was taken
    /// between picking and binding.
    async fn start_controller_fresh(&mut self) -> Result<()> {
        let mut last = None;
        for _ in 0..3 {
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let (issuer_args, base_url) = match &self.options.issuer {
                IssuerRole::Serve => {
                    let port = free_port()?;
                    let dir = self.options.issuer_dir.display().to_string();
                    (
                        vec![
                            "--issuer-dir".to_owned(),
                            dir,
                            "--issuer-listen".to_owned(),
                            format!("127.0.0.1:{port}"),
                        ],
                        format!("http://127.0.0.1:{port}"),
                    )
                }
                IssuerRole::Publish { base_url } => (
                    vec![format!(
                        "--issuer-store=dir:{}",
                        self.options.issuer_dir.display()
                    )],
                    base_url.clone(),
                ),
            };
            let a = &self.azure;
            let mut args: Vec<String> = [
                "--cluster-name",
                &self.options.name,
                "--namespace",
                NAMESPACE,
                "--azure-cloud",
                "custom",
                "--azure-authority-host",
                &a.base_url,
                "--arm-endpoint",
                &a.base_url,
                "--azure-tenant-id",
                &a.tenant_id,
                "--azure-client-id",
                &a.client_id,
                "--issuer-base-url",
                &base_url,
                "--admin-listen",
                &admin.to_string(),
                "--webhook-listen",
                "127.0.0.1:0",
                "--webhook-url",
                "https://127.0.0.1:0",
                "--pod-authority-host",
                POD_AUTHORITY_HOST,
                "--proxy-tls-extra-names",
                "127.0.0.1,localhost",
                "--fic-gc",
                &self.options.fic_gc,
                "--error-backoff-min",
                "200ms",
                "--error-backoff-max",
                "5s",
                "--lease-retry-period",
                "500ms",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            args.extend(issuer_args);
            self.controller_args = args;
            self.endpoints.controller_admin = admin;
            self.endpoints.issuer_base_url = base_url;
            match self.spawn_controller().await {
                Ok(p) => {
                    self.controller = Some(p);
                    return Ok(());
                }
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("could not start idbind-controller")))
    }

    async fn spawn_controller(&self) -> Result<Process> {
        let spec = ProcessSpec::new(
            &self.options.log_name("controller"),
            &self.binaries.controller,
            &self.options.logs,
        )
        .args(&self.controller_args)
        .env("KUBECONFIG", &self.kubeconfig)
        .env("IDBIND_AZURE_CLIENT_SECRET", &self.azure.client_secret)
        .env("IDBIND_LOG", "info,idbind_controller=debug")
        .readiness(Readiness::Url(format!(
            "http://{}/readyz",
            self.endpoints.controller_admin
        )));
        Process::start(spec).await
    }

    /// Stops the controller (as a cluster admin scaling it to zero would).
    pub async fn stop_controller(&mut self) {
        if let Some(mut p) = self.controller.take() {
            p.stop().await;
        }
    }

    /// Starts the controller again with the same flags.
    pub async fn restart_controller(&mut self) -> Result<()> {
        self.stop_controller().await;
        self.controller = Some(self.spawn_controller().await?);
        Ok(())
    }

    /// Waits for what the controller creates before pods can use idbind: the signing keys, the
    /// proxy's TLS Secret and the webhook configuration with its CA.
    async fn wait_controller_objects(&mut self) -> Result<()> {
        let log = self.controller_log();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), NAMESPACE);
        for name in [SIGNING_KEY_SECRET, PROXY_TLS_SECRET] {
            eventually(
                &format!("Secret {NAMESPACE}/{name} from the controller"),
                TIMEOUT,
                || {
                    let secrets = secrets.clone();
                    async move { Ok(secrets.get_opt(name).await?.map(|_| ())) }
                },
            )
            .await
            .with_context(|| format!("see {}", log.display()))?;
        }
        let webhooks: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let url = eventually(
            "the MutatingWebhookConfiguration with a CA bundle",
            TIMEOUT,
            || {
                let webhooks = webhooks.clone();
                async move {
                    let Some(config) = webhooks.get_opt(WEBHOOK_CONFIGURATION).await? else {
                        return Ok(None);
                    };
                    let client = config
                        .webhooks
                        .unwrap_or_default()
                        .into_iter()
                        .next()
                        .map(|w| w.client_config);
                    Ok(client
                        .filter(|c| c.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty()))
                        .map(|c| c.url))
                }
            },
        )
        .await
        .with_context(|| format!("see {}", log.display()))?;
        self.endpoints.webhook_url = url;
        Ok(())
    }

    async fn start_proxy(&mut self) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), NAMESPACE);
        if sas.get_opt(PROXY_SERVICE).await?.is_none() {
            sas.create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta(PROXY_SERVICE),
                    ..Default::default()
                },
            )
            .await
            .context("creating the proxy's ServiceAccount")?;
        }
        if pods.get_opt(PROXY_SERVICE).await?.is_none() {
            pods.create(&PostParams::default(), &proxy_pod())
                .await
                .context("creating the proxy pod")?;
        }
        let kubelet = self
            .kubelet
            .as_ref()
            .ok_or_else(|| anyhow!("kubelet-lite is not running"))?;
        let mounted = kubelet.wait_pod(NAMESPACE, PROXY_SERVICE, TIMEOUT).await?;
        let path = |p: &str| mounted.host_path("proxy", p);
        let spec = ProcessSpec::new(
            &self.options.log_name("proxy"),
            &self.binaries.proxy,
            &self.options.logs,
        )
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .args([path(&format!("{TLS_MOUNT}/tls.crt"))?])
        .args(["--tls-key"])
        .args([path(&format!("{TLS_MOUNT}/tls.key"))?])
        .args(["--keys-dir"])
        .args([path(KEYS_MOUNT)?])
        .args([
            "--authority-host",
            &self.azure.base_url,
            "--advertised-authority",
            POD_AUTHORITY_HOST,
        ])
        .args(["--kubeconfig"])
        .args([&self.kubeconfig])
        .args(["--log-format", "plain"]);
        let process = Process::start(spec).await?;
        let listen: SocketAddr = process
            .ready_field("listen")?
            .parse()
            .context("the proxy's listen address")?;
        let admin: SocketAddr = process
            .ready_field("admin")?
            .parse()
            .context("the proxy's admin address")?;
        let http = super::http()?;
        let readyz = format!("http://{admin}/readyz");
        eventually("the proxy's /readyz", TIMEOUT, || {
            let (http, readyz) = (http.clone(), readyz.clone());
            async move {
                Ok(http
                    .get(&readyz)
                    .send()
                    .await?
                    .status()
                    .is_success()
                    .then_some(()))
            }
        })
        .await
        .with_context(|| format!("see {}", process.log().display()))?;
        kubelet.set_service(SNI_NAME, 443, listen);
        self.endpoints.proxy = listen;
        self.endpoints.proxy_admin = admin;
        self.proxy = Some(process);
        Ok(())
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Addresses, for reports.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The controller's log file.
    pub fn controller_log(&self) -> PathBuf {
        self.options
            .logs
            .join(format!("{}.log", self.options.log_name("controller")))
    }

    /// The proxy's log file.
    pub fn proxy_log(&self) -> PathBuf {
        self.options
            .logs
            .join(format!("{}.log", self.options.log_name("proxy")))
    }

    /// The running processes, for reports and stale-process cleanup.
    pub fn processes(&self) -> Vec<&Process> {
        [Some(&self.kube), self.controller.as_ref(), self.proxy.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The first process that exited unexpectedly, with its status and log.
    pub fn exited(&mut self) -> Option<String> {
        for p in [
            Some(&mut self.kube),
            self.controller.as_mut(),
            self.proxy.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(status) = p.exited() {
                return Some(format!(
                    "{} exited ({status}); see {}",
                    p.name(),
                    p.log().display()
                ));
            }
        }
        None
    }

    /// Creates an IdentityBinding.
    pub async fn bind(&self, name: &str, resource_id: &str, subjects: &[&str]) -> Result<()> {
        let allowed_subjects = subjects
            .iter()
            .map(|s| AllowedSubject::parse(s).map_err(|e| anyhow!("allowed subject {s:?}: {e}")))
            .collect::<Result<Vec<_>>>()?;
        let spec = IdentityBindingSpec {
            managed_identity: ManagedIdentityRef {
                resource_id: resource_id.to_owned(),
            },
            allowed_subjects,
        };
        Api::<IdentityBinding>::all(self.client.clone())
            .create(&PostParams::default(), &IdentityBinding::new(name, spec))
            .await
            .with_context(|| format!("creating IdentityBinding {name} in cluster {}", self.name()))?;
        Ok(())
    }

    /// Waits until the binding is Ready; on timeout the error shows its conditions.
    pub async fn wait_ready(&self, name: &str) -> Result<IdentityBinding> {
        let api = Api::<IdentityBinding>::all(self.client.clone());
        let result = eventually(
            &format!("IdentityBinding {name} to be Ready in cluster {}", self.name()),
            TIMEOUT,
            || {
                let api = api.clone();
                async move { Ok(api.get_opt(name).await?.filter(IdentityBinding::is_ready)) }
            },
        )
        .await;
        match result {
            Ok(b) => Ok(b),
            Err(e) => {
                let conditions = api
                    .get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.status)
                    .map(|s| {
                        s.conditions
                            .iter()
                            .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_else(|| "no status".into());
                Err(e.context(format!(
                    "conditions: {conditions}; see {}",
                    self.controller_log().display()
                )))
            }
        }
    }

    /// Deletes a binding and waits until it is gone (the controller's finalizer has run).
    pub async fn unbind(&self, name: &str) -> Result<()> {
        let api = Api::<IdentityBinding>::all(self.client.clone());
        api.delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting IdentityBinding {name} in cluster {}", self.name()))?;
        eventually(
            &format!("IdentityBinding {name} to be gone from cluster {}", self.name()),
            TIMEOUT,
            || {
                let api = api.clone();
                async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
            },
        )
        .await
        .with_context(|| format!("see {}", self.controller_log().display()))
    }

    /// Creates (if missing) the namespace and a service account annotated with `client_id`, then
    /// a pod of that service account opted in to identity bindings, and returns the pod's
    /// environment once kubelet-lite has mounted its volumes.
    pub async fn run_workload(
        &self,
        namespace: &str,
        service_account: &str,
        pod: &str,
        client_id: &str,
    ) -> Result<PodEnv> {
        ensure_namespace(&self.client, namespace).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(service_account.to_owned()),
                annotations: Some(BTreeMap::from([(
                    idbind_model::SA_CLIENT_ID_ANNOTATION.to_owned(),
                    client_id.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        if sas.get_opt(service_account).await?.is_none() {
            sas.create(&PostParams::default(), &sa)
                .await
                .with_context(|| format!("creating ServiceAccount {namespace}/{service_account}"))?;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let created = pods
            .create(&PostParams::default(), &workload_pod(pod, service_account))
            .await
            .with_context(|| format!("creating pod {namespace}/{pod} (admission runs the idbind webhook)"))?;
        let injected = created
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.env.as_ref())
            .is_some_and(|env| env.iter().any(|e| e.name == "AZURE_KUBERNETES_TOKEN_PROXY"));
        if !injected {
            bail!(
                "the webhook did not mutate pod {namespace}/{pod} (no AZURE_KUBERNETES_TOKEN_PROXY); see {}",
                self.controller_log().display()
            );
        }
        let kubelet = self
            .kubelet
            .as_ref()
            .ok_or_else(|| anyhow!("kubelet-lite is not running"))?;
        let mounted = kubelet.wait_pod(namespace, pod, TIMEOUT).await?;
        PodEnv::from_container(&mounted.env(WORKLOAD_CONTAINER)?)
    }

    /// This cluster's signing keys, as the proxy's mounted Secret holds them.
    pub async fn signing_keys(&self) -> Result<idbind_issuer::KeySet> {
        let kubelet = self
            .kubelet
            .as_ref()
            .ok_or_else(|| anyhow!("kubelet-lite is not running"))?;
        let mounted = kubelet.wait_pod(NAMESPACE, PROXY_SERVICE, TIMEOUT).await?;
        let dir = mounted.host_path("proxy", KEYS_MOUNT)?;
        idbind_issuer::KeySet::from_dir(&dir)
            .with_context(|| format!("reading the signing keys in {}", dir.display()))
    }

    /// Stops the proxy, the controller, kubelet-lite and the API emulator, in that order.
    pub async fn stop(mut self) {
        if let Some(mut p) = self.proxy.take() {
            p.stop().await;
        }
        self.stop_controller().await;
        self.kubelet.take();
        self.kube.stop().await;
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("building the Kubernetes client")
}

async fn install_crd(client: &kube::Client) -> Result<()> {
    let path = util::root().join(CRD_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .with_context(|| format!("creating the CRD from {CRD_FILE}"))?;
    Ok(())
}

/// Creates a namespace unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        api.create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(name),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    }
    Ok(())
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn secret_volume(volume: &str, secret: &str) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The proxy's pod, as its Deployment's template would have it: the signing keys and serving
/// certificate from Secrets, and a projected service-account token.
fn proxy_pod() -> Pod {
    let api_access = Volume {
        name: "kube-api-access".into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    expiration_seconds: Some(3607),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut tls = secret_volume("tls", PROXY_TLS_SECRET);
    if let Some(s) = tls.secret.as_mut() {
        s.items = Some(
            ["tls.crt", "tls.key"]
                .into_iter()
                .map(|k| KeyToPath {
                    key: k.into(),
                    path: k.into(),
                    ..Default::default()
                })
                .collect(),
        );
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(PROXY_SERVICE.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                PROXY_SERVICE.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(PROXY_SERVICE.into()),
            containers: vec![Container {
                name: "proxy".into(),
                image: Some("ghcr.io/idbind/idbind-proxy:local".into()),
                volume_mounts: Some(vec![
                    mount("signing-keys", KEYS_MOUNT),
                    mount("tls", TLS_MOUNT),
                    mount("kube-api-access", SA_MOUNT),
                ]),
                ..Default::default()
            }],
            volumes: Some(vec![
                secret_volume("signing-keys", SIGNING_KEY_SECRET),
                tls,
                api_access,
            ]),
            ..Default::default()
        }),
        ..Pod::default()
    }
}

/// A workload pod opted in to identity bindings (label + annotation, as on AKS).
fn workload_pod(name: &str, service_account: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                idbind_model::POD_USE_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                idbind_model::POD_USE_IDENTITY_BINDING_ANNOTATION.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(service_account.to_owned()),
            containers: vec![Container {
                name: WORKLOAD_CONTAINER.into(),
                image: Some("mcr.microsoft.com/azure-cli".into()),
                command: Some(vec!["sleep".into(), "infinity".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Pod::default()
    }
}
