//! A full signing-key rotation and a proxy CA renewal, both driven by the real controller on the
//! real clock, while clients request tokens through the real proxy in a loop: no request fails.
//!
//! - The controller (its library, with the proxy TLS management the binary installs) runs against
//!   the Kubernetes API emulator and the Azure emulator, with short rotation and renewal delays:
//!   it binds a managed identity, keeps the signing keys in Secret `idbind/idbind-signing-keys`,
//!   the serving certificate in Secret `idbind/idbind-proxy-tls` and the trust bundle in
//!   ConfigMap `idbind-proxy-ca` of every namespace.
//! - A kubelet stand-in ([`MountedVolume`]) mounts the two Secrets into the proxy's directories
//!   and the ConfigMap of the workload's namespace into the pod's CA file, with kubelet's atomic
//!   `..data` swap. The proxy (in-process, as the binary assembles it) follows its files.
//! - Clients (some keep their connections, some open a new TLS connection per request, all with
//!   the SNI name) re-read the CA file as an SDK does and ask for tokens with a TokenRequest token
//!   (audience `api://AKSIdentityBinding`), rotating among a few scopes (served from the proxy's
//!   cache) and asking for a new scope every few requests (a real exchange with Entra, whose
//!   assertion the Azure emulator verifies against the identity's JWKS, fetched every time).
//! - Entra traffic goes through a recording pass-through, so the test sees which key signed each
//!   assertion Entra checked, and what Entra answered.
//!
//! The test waits (polling the Secrets, the ConfigMap, the JWKS and the proxy) until the signing
//! key went through publish next → activate → retire and the CA through introduce → switch →
//! retire, with enough successful requests after each, then checks that nothing failed, that
//! Entra accepted every assertion (signed with the old key, then the new one), that every access
//! token verifies as the identity's, and that a client trusting only the CA it started with is
//! now refused (the renewal really replaced the CA; without the overlapping bundle, clients fail
//! in the window between the switch and the proxy's reload).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use clap::Parser as _;
use idbind_controller::args::Args;
use idbind_controller::certs::metrics::CertMetrics;
use idbind_controller::runtime::{Running, RuntimeBuilder};
use idbind_emulator::{EmulatorConfig, IdentityInfo, Route};
use idbind_exchange::{BindingLookup, Exchanger, ExchangerConfig};
use idbind_issuer::{DirectoryStore, IssuerStore, Publisher};
use idbind_model::{
    AllowedSubject, DEFAULT_SA_TOKEN_AUDIENCE, IdentityBinding, IdentityBindingSpec, IssuerBaseUrl,
    ManagedIdentityRef,
};
use idbind_proxy::{
    ConnectionLabels, ProxyMetrics, ProxyServer, ServerOptions, ServerTls, Surface, SurfaceConfig,
};
use idbind_testkit::KubeEmulator;
use idbind_tests::{MountedVolume, aks_sni_name};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;
use kube::api::{Api, ObjectMeta, PostParams};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

/// The controller's namespace (keys Secret, TLS Secret, Lease).
const IDBIND_NS: &str = "idbind";
/// The workload's namespace and service account.
const APPS_NS: &str = "apps";
const WORKLOAD_SA: &str = "workload";
const WORKLOAD_POD: &str = "workload-0";
const PROXY_SA: &str = "idbind-proxy";
const BINDING: &str = "payments";
const KEYS_SECRET: &str = "idbind-signing-keys";
const TLS_SECRET: &str = "idbind-proxy-tls";
const CA_CONFIGMAP: &str = "idbind-proxy-ca";

/// Signing keys: a new key 8 s after the current one became current, signing 3 s after it was
/// published, the old one withdrawn 3 s after that. A full rotation takes 14 s from start.
const KEY_FLAGS: [&str; 6] = [
    "--key-rotation-interval",
    "8s",
    "--key-propagation-delay",
    "3s",
    "--key-retirement-delay",
    "3s",
];
/// Proxy CA: renewal starts 8 s after a CA is created (validity 1 h, renewal 1 h − 8 s before
/// expiry); the new CA signs 3 s after joining the bundle, the old one leaves it 3 s later.
const CA_FLAGS: [&str; 12] = [
    "--proxy-ca-validity",
    "3600s",
    "--proxy-ca-renew-before",
    "3592s",
    "--proxy-cert-validity",
    "30m",
    "--proxy-cert-renew-before",
    "10m",
    "--proxy-ca-propagation-delay",
    "3s",
    "--proxy-ca-retire-delay",
    "3s",
];
/// How often the kubelet stand-in re-reads the mounted objects (kubelet: about a minute, against
/// delays of hours; here 100 ms against delays of seconds).
const KUBELET_SYNC: Duration = Duration::from_millis(100);
/// How often the proxy re-reads its key directory (the binary's default is 10 s, against a 2 h
/// retirement delay).
const KEY_RELOAD: Duration = Duration::from_millis(250);
/// How often the proxy looks at its certificate files (the binary's default).
const TLS_RELOAD: Duration = Duration::from_secs(1);

/// Successful requests required after (and between) each observed rotation step.
const AFTER_EACH_STEP: u64 = 25;
/// Entra exchanges signed with the new key required after the old key was withdrawn, and
/// requests on fresh connections required after the old CA left the bundle.
const AFTER_RETIREMENT: u64 = 5;
/// How long the rotations may take once the clients run.
const ROTATION_DEADLINE: Duration = Duration::from_secs(45);

/// Scopes served mostly from the proxy's token cache.
const CACHED_SCOPES: [&str; 3] = [
    "https://management.azure.com/.default",
    "https://vault.azure.net/.default",
    "https://storage.azure.com/.default",
];
/// Every this many requests a client asks for a scope nobody asked for: a real Entra exchange.
const NEW_SCOPE_EVERY: u64 = 4;

// ---------------------------------------------------------------------------------------------
// Polling.

async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(router: axum::Router) -> (SocketAddr, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, AbortOnDrop(task))
}

// ---------------------------------------------------------------------------------------------
// Entra, seen from the wire: a pass-through recording each assertion's `kid` and the answer.

#[derive(Clone, Debug)]
struct UpstreamCall {
    kid: Option<String>,
    status: u16,
}

struct EntraTap {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<UpstreamCall>>,
}

impl EntraTap {
    fn calls(&self) -> Vec<UpstreamCall> {
        self.calls.lock().clone()
    }

    fn len(&self) -> usize {
        self.calls.lock().len()
    }
}

async fn tap_forward(
    State(tap): State<Arc<EntraTap>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kid = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "client_assertion")
        .and_then(|(_, assertion)| jsonwebtoken::decode_header(assertion.as_ref()).ok()?.kid);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = tap
        .client
        .request(method, format!("{}{path}", tap.upstream))
        .body(body);
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    let (status, content_type, bytes) = match request.send().await {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get(header::CONTENT_TYPE).cloned();
            match r.bytes().await {
                Ok(b) => (status, ct, b),
                Err(_) => (StatusCode::BAD_GATEWAY, None, Bytes::new()),
            }
        }
        Err(_) => (StatusCode::BAD_GATEWAY, None, Bytes::new()),
    };
    tap.calls.lock().push(UpstreamCall {
        kid,
        status: status.as_u16(),
    });
    let mut response = (status, bytes).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects.

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

async fn create<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), object).await.unwrap();
}

/// The CRD, the namespaces, the workload (service account and pod) and the proxy's service account
/// with what it needs (TokenReview, SubjectAccessReview, IdentityBindings).
async fn prepare_cluster(admin: &kube::Client) {
    create(&Api::all(admin.clone()), &IdentityBinding::crd()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    eventually("the CRD to be served", Duration::from_secs(30), || async {
        crds.get_opt("identitybindings.idbind.dev")
            .await
            .ok()
            .flatten()
            .map(drop)
    })
    .await;
    for ns in [IDBIND_NS, APPS_NS] {
        create(
            &Api::<Namespace>::all(admin.clone()),
            &Namespace {
                metadata: meta(ns),
                ..Default::default()
            },
        )
        .await;
    }
    let workload_sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), APPS_NS);
    create(
        &workload_sas,
        &ServiceAccount {
            metadata: meta(WORKLOAD_SA),
            ..Default::default()
        },
    )
    .await;
    let pod = Pod {
        metadata: meta(WORKLOAD_POD),
        spec: Some(PodSpec {
            service_account_name: Some(WORKLOAD_SA.to_owned()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("app:latest".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    create(&Api::namespaced(admin.clone(), APPS_NS), &pod).await;

    let proxy_sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), IDBIND_NS);
    create(
        &proxy_sas,
        &ServiceAccount {
            metadata: meta(PROXY_SA),
            ..Default::default()
        },
    )
    .await;
    idbind_tests::grant_proxy_rbac(admin, IDBIND_NS, PROXY_SA)
        .await
        .unwrap();
}

/// A token for the workload from the TokenRequest API, bound to its pod, as kubelet projects it.
async fn workload_token(admin: &kube::Client) -> String {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), APPS_NS);
    let pod = pods.get(WORKLOAD_POD).await.unwrap();
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![DEFAULT_SA_TOKEN_AUDIENCE.to_owned()]),
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(WORKLOAD_POD.into()),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), APPS_NS);
    sas.create_token_request(WORKLOAD_SA, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .and_then(|s| s.token)
        .unwrap()
}

async fn configmap_bundle(admin: &kube::Client) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(admin.clone(), APPS_NS);
    api.get_opt(CA_CONFIGMAP).await.ok()??.data?.remove("ca.crt")
}

async fn secret_entry(admin: &kube::Client, name: &str, key: &str) -> Option<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(admin.clone(), IDBIND_NS);
    Some(api.get_opt(name).await.ok()??.data?.remove(key)?.0)
}

/// SHA-256 fingerprints of the certificates of a PEM bundle, in order.
fn fingerprints(pem: &str) -> Vec<String> {
    idbind_tls::parse_certs(pem)
        .unwrap_or_default()
        .iter()
        .map(|der| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

// ---------------------------------------------------------------------------------------------
// The controller.

fn controller_args(azure: &idbind_emulator::Emulator, issuer_base: &str, store_dir: &str, sni: &str) -> Args {
    let sp = azure.default_principal();
    let base = azure.base_url().to_owned();
    let (tenant, client, secret) = (
        sp.tenant_id.to_string(),
        sp.client_id.to_string(),
        format!("--azure-client-secret={}", sp.client_secret),
    );
    let store = format!("dir:{store_dir}");
    let mut argv: Vec<&str> = vec![
        "idbind-controller",
        "--cluster-name",
        "east",
        "--namespace",
        IDBIND_NS,
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
        issuer_base,
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
        "--sni-name",
        sni,
    ];
    argv.extend(KEY_FLAGS);
    argv.extend(CA_FLAGS);
    Args::try_parse_from(argv).unwrap()
}

/// The controller as the binary assembles it, minus the admission webhook (no pods are admitted
/// here): reconciler, signing keys, and the proxy's CA, certificate and bundle.
async fn start_controller(args: Args, client: kube::Client) -> Running {
    let mut builder = RuntimeBuilder::new(args.clone()).client(client);
    let cert_metrics = CertMetrics::register(builder.registry_mut());
    let builder = idbind_controller::certs::install_proxy_tls(builder, &args, &cert_metrics).unwrap();
    Box::pin(builder.start()).await.unwrap()
}

/// The value of a counter line of the Prometheus text, 0 if absent.
fn counter(metrics: &str, line_prefix: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The proxy, in-process, as the `idbind-proxy` binary assembles it.

struct Proxy {
    exchanger: Exchanger,
    server: ProxyServer,
    tls: ServerTls,
    metrics: ProxyMetrics,
}

async fn start_proxy(client: kube::Client, authority: &str, keys_dir: PathBuf, tls_dir: PathBuf) -> Proxy {
    let mut config = ExchangerConfig::new(url::Url::parse(authority).unwrap(), keys_dir);
    config.key_reload_interval = KEY_RELOAD;
    let mut registry = Registry::default();
    let exchanger = Exchanger::start(client, config, registry.sub_registry_with_prefix("idbind")).unwrap();
    let metrics = ProxyMetrics::register(registry.sub_registry_with_prefix("idbind"));
    let surface = Arc::new(Surface::new(
        exchanger.clone(),
        SurfaceConfig::new(url::Url::parse("https://login.microsoftonline.com/").unwrap()),
        metrics.clone(),
    ));
    let tls = ServerTls::from_files(tls_dir.join("tls.crt"), tls_dir.join("tls.key"), TLS_RELOAD).unwrap();
    let server = ProxyServer::start(
        surface,
        &tls,
        ServerOptions::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
    )
    .await
    .unwrap();
    Proxy {
        exchanger,
        server,
        tls,
        metrics,
    }
}

// ---------------------------------------------------------------------------------------------
// The clients.

/// Checks access tokens against the Azure emulator's signing keys and the bound identity.
struct TokenCheck {
    keys: jsonwebtoken::jwk::JwkSet,
    appid: String,
    oid: String,
    tid: String,
}

impl TokenCheck {
    fn check(&self, token: &str, scope: &str) -> Result<(), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("token header: {e}"))?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.find(kid))
            .ok_or("the token's kid is not the emulator's")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("token does not verify: {e}"))?
            .claims;
        for (claim, want) in [("appid", &self.appid), ("oid", &self.oid), ("tid", &self.tid)] {
            if claims[claim].as_str() != Some(want.as_str()) {
                return Err(format!("claim {claim} is {} instead of {want}", claims[claim]));
            }
        }
        let aud = claims["aud"].as_str().unwrap_or_default();
        let resource = scope.trim_end_matches("/.default");
        if aud.trim_end_matches('/') != resource.trim_end_matches('/') {
            return Err(format!("aud {aud} for scope {scope}"));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    ok_fresh: AtomicU64,
    failed: AtomicU64,
    /// Clients built by the connection-keeping loops (a new one each time the CA file changed).
    rebuilt: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }
    fn ok_fresh(&self) -> u64 {
        self.ok_fresh.load(Ordering::SeqCst)
    }
    fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }
}

struct Clients {
    sni: String,
    addr: SocketAddr,
    /// The pod's CA file (the mounted ConfigMap), as `AZURE_KUBERNETES_CA_FILE` names it.
    ca_file: PathBuf,
    token: String,
    client_id: String,
    tenant_id: String,
    check: TokenCheck,
    tally: Tally,
    stop: AtomicBool,
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn https_client(bundle: &[u8], sni: &str, addr: SocketAddr) -> Result<reqwest::Client, String> {
    let certs =
        reqwest::Certificate::from_pem_bundle(bundle).map_err(|e| format!("CA file: {}", chain(&e)))?;
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .resolve(sni, addr)
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| format!("building a client: {}", chain(&e)))
}

impl Clients {
    fn form(&self, scope: &str) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("scope", scope),
                ("client_assertion_type", idbind_proxy::JWT_BEARER),
                ("client_assertion", self.token.as_str()),
            ])
            .finish()
    }

    fn url(&self) -> String {
        format!(
            "https://{}:{}/{}/oauth2/v2.0/token",
            self.sni,
            self.addr.port(),
            self.tenant_id
        )
    }

    /// One token request: the access token checked, or what went wrong.
    async fn request(&self, client: &reqwest::Client, scope: &str) -> Result<(), String> {
        let response = client
            .post(self.url())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(self.form(scope))
            .send()
            .await
            .map_err(|e| chain(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| chain(&e))?;
        if status != StatusCode::OK {
            return Err(format!("HTTP {status}: {text}"));
        }
        let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if body["token_type"] != "Bearer" || body["expires_in"].as_u64().is_none_or(|s| s == 0) {
            return Err(format!("unexpected answer {text}"));
        }
        self.check
            .check(body["access_token"].as_str().unwrap_or_default(), scope)
    }

    /// Requests until told to stop. A `fresh` loop builds a client per request (a new TCP and TLS
    /// connection each time); the others keep theirs (pooled connections) until the CA file
    /// changes. Both read the CA file before every request.
    async fn run(self: Arc<Self>, task: u64, fresh: bool) {
        let mut bundle: Vec<u8> = Vec::new();
        let mut kept: Option<reqwest::Client> = None;
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let scope = if n.is_multiple_of(NEW_SCOPE_EVERY) {
                format!("api://idbind-rotation-{task}-{n}/.default")
            } else {
                CACHED_SCOPES[((n + task) % 3) as usize].to_owned()
            };
            let result = async {
                let current =
                    std::fs::read(&self.ca_file).map_err(|e| format!("reading the CA file: {e}"))?;
                let client = if fresh {
                    https_client(&current, &self.sni, self.addr)?
                } else {
                    if kept.is_none() || current != bundle {
                        kept = Some(https_client(&current, &self.sni, self.addr)?);
                        self.tally.rebuilt.fetch_add(1, Ordering::SeqCst);
                        bundle = current;
                    }
                    kept.clone().ok_or("no client")?
                };
                self.request(&client, &scope).await
            }
            .await;
            match result {
                Ok(()) => {
                    self.tally.ok.fetch_add(1, Ordering::SeqCst);
                    if fresh {
                        self.tally.ok_fresh.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    self.tally.failed.fetch_add(1, Ordering::SeqCst);
                    let kind = if fresh {
                        "new connection"
                    } else {
                        "kept connection"
                    };
                    let mut failures = self.tally.failures.lock();
                    if failures.len() < 20 {
                        failures.push(format!("client {task} request {n} ({kind}, scope {scope}): {e}"));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the monitor saw, with the number of successful requests at that moment.

#[derive(Debug, Default)]
struct Steps {
    key_next_published: Option<u64>,
    key_activated: Option<(u64, String)>,
    key_retired: Option<(u64, usize)>,
    ca_introduced: Option<u64>,
    ca_switched: Option<u64>,
    ca_retired: Option<(u64, u64)>,
}

async fn jwks_kids(publisher: &Publisher, identity: &IdentityInfo) -> Vec<String> {
    publisher
        .read_jwks(&identity.tenant_id, &identity.client_id)
        .await
        .ok()
        .flatten()
        .map(|j| j.keys.iter().map(|k| k.kid.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_and_ca_renewal_fail_no_request_through_the_proxy() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| {
            "warn,idbind_controller::keys=info,idbind_controller::certs=info,idbind_exchange::keys=info"
                .into()
        }))
        .with_test_writer()
        .try_init();
    let started = Instant::now();

    // Azure: the emulator (issuer documents fetched for every assertion) and the identity.
    let azure = idbind_emulator::start(EmulatorConfig::default()).await.unwrap();
    let identity = azure
        .create_identity(&azure.default_subscription(), "rg", BINDING)
        .unwrap();
    let tap = Arc::new(EntraTap {
        upstream: azure.base_url().to_owned(),
        client: reqwest::Client::new(),
        calls: Mutex::new(Vec::new()),
    });
    let (tap_addr, tap_server) =
        serve(axum::Router::new().fallback(tap_forward).with_state(tap.clone())).await;

    // The issuer store, served on loopback for Entra.
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("issuer");
    let store: Arc<dyn IssuerStore> = Arc::new(DirectoryStore::new(&store_dir).unwrap());
    let (issuer_addr, issuer_server) = serve(idbind_issuer::router(store.clone())).await;
    let issuer_base = format!("http://{issuer_addr}");
    let publisher = Publisher::new(store.clone(), IssuerBaseUrl::parse(&issuer_base).unwrap());

    // Kubernetes and the controller.
    let kube = KubeEmulator::start().await.unwrap();
    let admin = kube.client().unwrap();
    prepare_cluster(&admin).await;
    let sni = aks_sni_name(&uuid::Uuid::new_v4().to_string());
    let args = controller_args(&azure, &issuer_base, &store_dir.display().to_string(), &sni);
    let controller = start_controller(args, admin.clone()).await;

    // Bind the identity for the workload's service account; wait for Ready.
    let bindings: Api<IdentityBinding> = Api::all(admin.clone());
    let spec = IdentityBindingSpec {
        managed_identity: ManagedIdentityRef {
            resource_id: identity.resource_id.to_string(),
        },
        allowed_subjects: vec![AllowedSubject::parse(&format!("{APPS_NS}/{WORKLOAD_SA}")).unwrap()],
    };
    create(&bindings, &IdentityBinding::new(BINDING, spec)).await;
    eventually("the binding to be Ready", Duration::from_secs(30), || async {
        bindings
            .get_opt(BINDING)
            .await
            .ok()
            .flatten()
            .filter(IdentityBinding::is_ready)
    })
    .await;

    // kubelet: the proxy's Secrets and the pod's CA bundle, mounted.
    let keys_volume = MountedVolume::secret(
        admin.clone(),
        IDBIND_NS,
        KEYS_SECRET,
        dir.path().join("proxy/keys"),
        KUBELET_SYNC,
    )
    .await
    .unwrap();
    let tls_volume = MountedVolume::secret(
        admin.clone(),
        IDBIND_NS,
        TLS_SECRET,
        dir.path().join("proxy/tls"),
        KUBELET_SYNC,
    )
    .await
    .unwrap();
    let ca_volume = MountedVolume::config_map(
        admin.clone(),
        APPS_NS,
        CA_CONFIGMAP,
        dir.path().join("pod/ca-cert"),
        KUBELET_SYNC,
    )
    .await
    .unwrap();

    // The proxy, with its own service account, Entra through the tap.
    let proxy = start_proxy(
        kube.service_account_client(IDBIND_NS, PROXY_SA).unwrap(),
        &format!("http://{tap_addr}"),
        keys_volume.dir().to_path_buf(),
        tls_volume.dir().to_path_buf(),
    )
    .await;
    let client_id = identity.client_id;
    eventually(
        "the proxy to serve the binding",
        Duration::from_secs(30),
        || async {
            (matches!(
                proxy.exchanger.bindings().lookup(&client_id),
                BindingLookup::Served(_)
            ) && proxy.exchanger.readiness().is_ready())
            .then_some(())
        },
    )
    .await;

    // The clients.
    let emulator_keys: jsonwebtoken::jwk::JwkSet = reqwest::get(azure.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let clients = Arc::new(Clients {
        sni: sni.clone(),
        addr: proxy.server.local_addr(),
        ca_file: ca_volume.path("ca.crt"),
        token: workload_token(&admin).await,
        client_id: identity.client_id.to_string(),
        tenant_id: identity.tenant_id.to_string(),
        check: TokenCheck {
            keys: emulator_keys,
            appid: identity.client_id.to_string(),
            oid: identity.principal_id.to_string(),
            tid: identity.tenant_id.to_string(),
        },
        tally: Tally::default(),
        stop: AtomicBool::new(false),
    });
    let loops: Vec<JoinHandle<()>> = [(0, false), (1, false), (2, true), (3, true)]
        .into_iter()
        .map(|(task, fresh)| tokio::spawn(clients.clone().run(task, fresh)))
        .collect();
    let tally = &clients.tally;
    eventually(
        "the first successful requests",
        Duration::from_secs(30),
        || async { (tally.ok() >= AFTER_EACH_STEP || tally.failed() > 0).then_some(()) },
    )
    .await;
    let loop_started = Instant::now();
    let setup = started.elapsed();

    // Where the rotations start from, with the clients running.
    let kid0 = proxy.exchanger.keys().signing_kid().unwrap();
    let start_bundle = configmap_bundle(&admin).await.unwrap();
    let ca0 = fingerprints(&start_bundle)[0].clone();
    let ca0_der = idbind_tls::parse_certs(&start_bundle).unwrap()[0].clone();
    let reloads0 = proxy.tls.certificate_reloads();

    // Watch both rotations go by. A key or CA is "introduced" when it first shows up beside the
    // one in use; which one was introduced is known when it takes over.
    let mut steps = Steps::default();
    let mut keys_seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut cas_seen: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        let ok = tally.ok();
        let kids = jwks_kids(&publisher, &identity).await;
        let signing = proxy.exchanger.keys().signing_kid().unwrap();
        if signing == kid0 {
            for kid in kids.iter().filter(|k| **k != kid0) {
                keys_seen.entry(kid.clone()).or_insert(ok);
            }
        }
        if steps.key_activated.is_none() && signing != kid0 {
            assert!(
                kids.contains(&kid0) && kids.contains(&signing),
                "both keys are published when the new one signs: {kids:?}"
            );
            steps.key_next_published = keys_seen.get(&signing).copied();
            steps.key_activated = Some((ok, signing.clone()));
        }
        if steps.key_activated.is_some() && steps.key_retired.is_none() && !kids.contains(&kid0) {
            steps.key_retired = Some((ok, tap.len()));
        }
        let bundle = fingerprints(&configmap_bundle(&admin).await.unwrap_or_default());
        if bundle.first() == Some(&ca0) {
            for ca in bundle.iter().filter(|f| **f != ca0) {
                cas_seen.entry(ca.clone()).or_insert(ok);
            }
        }
        if steps.ca_switched.is_none() && bundle.first().is_some_and(|f| *f != ca0) && bundle.contains(&ca0) {
            steps.ca_introduced = cas_seen.get(&bundle[0]).copied();
            steps.ca_switched = Some(ok);
        }
        if steps.ca_switched.is_some()
            && steps.ca_retired.is_none()
            && !bundle.is_empty()
            && !bundle.contains(&ca0)
        {
            steps.ca_retired = Some((ok, tally.ok_fresh()));
        }

        let new_key_exchanges_since = |from: usize| {
            let new_kid = steps.key_activated.as_ref().map(|(_, k)| k.clone());
            tap.calls()[from..]
                .iter()
                .filter(|c| c.status == 200 && c.kid.is_some() && c.kid == new_kid)
                .count() as u64
        };
        let keys_done = steps.key_retired.is_some_and(|(at, calls)| {
            ok >= at + AFTER_EACH_STEP && new_key_exchanges_since(calls) >= AFTER_RETIREMENT
        });
        let ca_done = steps.ca_retired.is_some_and(|(at, fresh)| {
            ok >= at + AFTER_EACH_STEP && tally.ok_fresh() >= fresh + AFTER_RETIREMENT
        });
        // Done, or failing: stop early and report the failures below.
        if (keys_done && ca_done) || tally.failed() > 0 {
            break;
        }
        assert!(
            loop_started.elapsed() < ROTATION_DEADLINE,
            "the rotations did not complete within {ROTATION_DEADLINE:?}: {steps:?} (kid0 {kid0}, JWKS \
             {kids:?}, signing {signing}, ca0 {}, bundle {:?}; {} ok, {} failed: {:#?})",
            short(&ca0),
            bundle.iter().map(|f| short(f)).collect::<Vec<_>>(),
            tally.ok(),
            tally.failed(),
            tally.failures.lock()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clients.stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    let rotation_time = loop_started.elapsed();
    let handshake_failures = proxy
        .metrics
        .connections
        .get_or_create(&ConnectionLabels {
            result: "handshake_failed",
        })
        .get();
    let accepted = proxy
        .metrics
        .connections
        .get_or_create(&ConnectionLabels { result: "accepted" })
        .get();

    // Nothing failed.
    let (ok, failed) = (tally.ok(), tally.failed());
    let calls = tap.calls();
    let exchanges_ok = calls.iter().filter(|c| c.status == 200).count() as u64;
    eprintln!(
        "ready after {setup:.1?}, rotations {rotation_time:.1?}: {ok} requests ok ({} on new connections, {} \
         client rebuilds on CA changes), {failed} failed; {} Entra exchanges, {exchanges_ok} ok; {accepted} \
         connections accepted, {handshake_failures} failed handshakes; steps {steps:?}",
        tally.ok_fresh(),
        tally.rebuilt.load(Ordering::SeqCst),
        calls.len()
    );
    let failures = tally.failures.lock().clone();
    assert_eq!(
        failed,
        0,
        "failed requests (first {}): {failures:#?}",
        failures.len()
    );
    let bad_upstream: Vec<_> = calls.iter().filter(|c| c.status != 200).take(10).collect();
    assert!(
        bad_upstream.is_empty(),
        "Entra refused assertions: {bad_upstream:?}"
    );
    assert_eq!(handshake_failures, 0, "the proxy saw failed TLS handshakes");

    // The controller took each step, and says so.
    let controller_metrics = controller.metrics_text();
    for step in ["PublishNext", "Activate", "Retire"] {
        assert!(
            counter(
                &controller_metrics,
                &format!("idbind_controller_key_rotation_steps_total{{step=\"{step}\"}}")
            ) >= 1,
            "key step {step}: {controller_metrics}"
        );
    }
    for step in ["introduce_ca", "switch_ca", "retire_ca"] {
        assert!(
            counter(
                &controller_metrics,
                &format!("idbind_certificate_steps_total{{component=\"proxy\",step=\"{step}\"}}")
            ) >= 1,
            "certificate step {step}: {controller_metrics}"
        );
    }
    // Freeze the world for the last checks.
    controller.shutdown().await.unwrap();

    // The steps came in order, with requests succeeding between them.
    let next = steps
        .key_next_published
        .expect("the next key published beside the current one");
    let (activated, kid1) = steps.key_activated.clone().unwrap();
    let (retired, retired_calls) = steps.key_retired.unwrap();
    assert!(next + AFTER_EACH_STEP <= activated, "{steps:?}");
    assert!(activated + AFTER_EACH_STEP <= retired, "{steps:?}");
    let introduced = steps
        .ca_introduced
        .expect("the new CA introduced into the bundle");
    let switched = steps.ca_switched.unwrap();
    let (ca_retired, _) = steps.ca_retired.unwrap();
    assert!(introduced + AFTER_EACH_STEP <= switched, "{steps:?}");
    assert!(switched + AFTER_EACH_STEP <= ca_retired, "{steps:?}");

    // Entra checked assertions signed with the old key, then with the new one, and none with the
    // old key once it had left the JWKS.
    let signed_with = |kid: &str| calls.iter().filter(|c| c.kid.as_deref() == Some(kid)).count();
    assert!(signed_with(&kid0) >= 1, "no exchange signed with {kid0}");
    assert!(
        signed_with(&kid1) as u64 >= AFTER_RETIREMENT,
        "exchanges signed with {kid1}"
    );
    assert!(
        calls[retired_calls..]
            .iter()
            .all(|c| c.kid.as_deref() != Some(kid0.as_str())),
        "an assertion signed with the withdrawn key {kid0} reached Entra"
    );
    assert!(ok >= 8 * AFTER_EACH_STEP, "only {ok} requests");
    assert!(
        exchanges_ok >= 4 * AFTER_RETIREMENT,
        "only {exchanges_ok} Entra exchanges"
    );
    assert!(
        azure.counters().successes(Route::EntraToken) >= exchanges_ok,
        "the emulator answered what the tap saw"
    );
    assert!(
        proxy.tls.certificate_reloads() > reloads0,
        "the proxy never reloaded its certificate"
    );
    assert!(
        accepted >= tally.ok_fresh() + tally.rebuilt.load(Ordering::SeqCst),
        "every request of a fresh client, and every rebuilt client, made a new connection"
    );

    // The proxy serves the certificate of the TLS Secret, chaining to the CA first in the bundle,
    // which is not the CA the clients started with: a client that kept only that one is refused.
    let serving = secret_entry(&admin, TLS_SECRET, "tls.crt").await.unwrap();
    let serving_der = idbind_tls::parse_certs(std::str::from_utf8(&serving).unwrap()).unwrap()[0].clone();
    let bundle_pem = configmap_bundle(&admin).await.unwrap();
    let bundle_der = idbind_tls::parse_certs(&bundle_pem).unwrap();
    assert_ne!(fingerprints(&bundle_pem)[0], ca0);
    let only = |der: &[u8]| {
        let ca = reqwest::Certificate::from_der(der).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&sni, proxy.server.local_addr())
            .tls_info(true)
            .build()
            .unwrap()
    };
    let current_only = only(bundle_der[0].as_ref());
    let secret_kid = idbind_issuer::KeySet::from_secret_data(
        &Api::<Secret>::namespaced(admin.clone(), IDBIND_NS)
            .get(KEYS_SECRET)
            .await
            .unwrap()
            .data
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    )
    .unwrap()
    .signing_key()
    .kid()
    .to_owned();
    assert_ne!(secret_kid, kid0);
    eventually(
        "the proxy to sign with the Secret's current key",
        Duration::from_secs(10),
        || async {
            (proxy.exchanger.keys().signing_kid().as_deref() == Some(secret_kid.as_str())).then_some(())
        },
    )
    .await;
    eventually(
        "the proxy to serve the Secret's certificate",
        Duration::from_secs(10),
        || async {
            let response = current_only
                .post(clients.url())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(clients.form("api://idbind-rotation-final/.default"))
                .send()
                .await
                .ok()?;
            let peer = response
                .extensions()
                .get::<reqwest::tls::TlsInfo>()?
                .peer_certificate()?
                .to_vec();
            let status = response.status();
            let body: serde_json::Value = response.json().await.ok()?;
            (peer == serving_der.as_ref() && status == StatusCode::OK).then_some(body)
        },
    )
    .await
    .get("access_token")
    .and_then(serde_json::Value::as_str)
    .map(|t| clients.check.check(t, "api://idbind-rotation-final/.default"))
    .unwrap()
    .unwrap();
    assert_eq!(
        tap.calls().last().map(|c| (c.kid.clone(), c.status)),
        Some((Some(secret_kid), 200)),
        "the last exchange was signed with the current key"
    );
    let stale_only = only(ca0_der.as_ref());
    let refused = stale_only
        .post(clients.url())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(clients.form(CACHED_SCOPES[0]))
        .send()
        .await
        .expect_err("a client trusting only the CA from before the renewal was served");
    let refused = chain(&refused);
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // Stop everything.
    drop((keys_volume, tls_volume, ca_volume));
    proxy.server.shutdown().await;
    drop(proxy.exchanger);
    drop((tap_server, issuer_server));
    azure.shutdown().await;
    kube.shutdown();
}
