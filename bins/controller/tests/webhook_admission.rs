//! The admission webhook against the Kubernetes API emulator, over real HTTPS: pods created
//! through the API are mutated (or denied, or left alone) exactly as specified, and the
//! MutatingWebhookConfiguration's `caBundle` follows the webhook CA through a renewal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use idbind_controller::admin::Health;
use idbind_controller::certs::manager::{CertManager, CertSettings};
use idbind_controller::certs::state::{CertPhase, CertPolicy, Subject};
use idbind_controller::clock::{Clock, ManualClock};
use idbind_controller::webhook::configuration::{
    ClientTarget, WEBHOOK_NAME, WebhookConfigProjection, WebhookConfigSettings,
};
use idbind_controller::webhook::mutate::InjectionSettings;
use idbind_controller::webhook::server::{self, WebhookMetrics};
use idbind_testkit::KubeEmulator;
use idbind_testkit::admission::{AdmissionAttributes, MutatingAdmission};
use idbind_testkit::auth::UserInfo;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
const TENANT: &str = "22222222-2222-2222-2222-222222222222";

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn injection() -> InjectionSettings {
    InjectionSettings {
        default_tenant_id: Some(TENANT.into()),
        authority_host: "https://login.microsoftonline.com/".into(),
        token_proxy: "https://idbind-proxy.idbind.svc".into(),
        sni_name: "proxy.idbind.test".into(),
        audience: "api://AKSIdentityBinding".into(),
        ca_configmap: "idbind-proxy-ca".into(),
    }
}

fn policy() -> CertPolicy {
    CertPolicy {
        ca_validity: Duration::from_secs(365 * 86_400),
        ca_renew_before: Duration::from_secs(30 * 86_400),
        cert_validity: Duration::from_secs(30 * 86_400),
        cert_renew_before: Duration::from_secs(10 * 86_400),
        propagation_delay: Duration::from_secs(300),
        retire_delay: Duration::from_secs(300),
    }
}

/// An API emulator, the webhook server on loopback, and the leader's certificate manager for it
/// (driven by the test on a manual clock).
struct Webhook {
    _kube: KubeEmulator,
    client: kube::Client,
    addr: SocketAddr,
    clock: ManualClock,
    manager: CertManager,
    metrics: WebhookMetrics,
    stop: CancellationToken,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Webhook {
    async fn start() -> Self {
        let kube = KubeEmulator::start().await.unwrap();
        let client = kube.client().unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for name in ["idbind", "apps"] {
            let ns = Namespace {
                metadata: meta(name),
                ..Namespace::default()
            };
            namespaces.create(&PostParams::default(), &ns).await.unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = WebhookConfigSettings {
            name: "idbind".into(),
            target: ClientTarget::Url(format!("https://127.0.0.1:{}/mutate-v1-pod", addr.port())),
            exclude_namespace: "idbind".into(),
        };
        let clock = ManualClock::new(Timestamp::now());
        let settings = CertSettings {
            namespace: "idbind".into(),
            secret_name: "idbind-webhook-tls".into(),
            component: "webhook".into(),
            policy: policy(),
            subject: Subject {
                ca_name: "test webhook CA".into(),
                dns_names: vec![],
                ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            },
            retry_delay: Duration::from_millis(100),
            recheck_interval: Duration::from_secs(3600),
        };
        let projection = Arc::new(WebhookConfigProjection::new(client.clone(), config));
        let manager = CertManager::new(client.clone(), settings, Arc::new(clock.clone()), projection);
        manager.reconcile().await.unwrap();

        let metrics = WebhookMetrics::default();
        let health = Health::default();
        let ready = health.check("webhook-certificate");
        let stop = CancellationToken::new();
        let router = server::router(client.clone(), injection(), metrics.clone());
        tokio::spawn(server::serve(
            client.clone(),
            "idbind".into(),
            "idbind-webhook-tls".into(),
            listener,
            router,
            Some(ready),
            stop.clone(),
        ));
        eventually("the webhook certificate", || async {
            health.is_ready().then_some(())
        })
        .await;
        Self {
            _kube: kube,
            client,
            addr,
            clock,
            manager,
            metrics,
            stop,
        }
    }

    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn service_account(&self, name: &str, annotations: &[(&str, &str)]) {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), "apps");
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                ..meta(name)
            },
            ..ServiceAccount::default()
        };
        api.create(&PostParams::default(), &sa).await.unwrap();
    }

    /// Creates `pod` (JSON) in `ns` through the API and returns what was stored, as JSON.
    async fn create(&self, ns: &str, pod: Value) -> Result<Value, kube::Error> {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        let created = self.pods(ns).create(&PostParams::default(), &pod).await?;
        Ok(serde_json::to_value(created).unwrap())
    }

    async fn configuration(&self) -> MutatingWebhookConfiguration {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        api.get("idbind").await.unwrap()
    }

    /// Whether the webhook server presents a certificate that `ca_pem` alone verifies.
    async fn serves_cert_of(&self, ca_pem: &str) -> bool {
        let config = idbind_tls::client_config_with_roots(ca_pem).unwrap();
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .is_ok()
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn volume_name(pod_name: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pod_name.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("azure-workload-identity-reserved-{}", &hex[..30])
}

fn pod(name: &str, annotations: Value, spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "azure.workload.identity/use": "true" } },
    });
    pod["metadata"]["annotations"] = annotations;
    pod["spec"] = spec;
    pod
}

fn opted_in(name: &str, spec: Value) -> Value {
    pod(
        name,
        json!({ "azure.workload.identity/use-identity-binding": "true" }),
        spec,
    )
}

fn env(tenant: &str) -> Value {
    json!([
        { "name": "AZURE_CLIENT_ID", "value": CLIENT_ID },
        { "name": "AZURE_TENANT_ID", "value": tenant },
        { "name": "AZURE_FEDERATED_TOKEN_FILE", "value": "/var/run/secrets/azure/wi/token/azure-identity-token" },
        { "name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.com/" },
        { "name": "AZURE_KUBERNETES_TOKEN_PROXY", "value": "https://idbind-proxy.idbind.svc" },
        { "name": "AZURE_KUBERNETES_SNI_NAME", "value": "proxy.idbind.test" },
        { "name": "AZURE_KUBERNETES_CA_FILE", "value": "/var/run/secrets/azure/wi/ca-cert/ca.crt" },
    ])
}

fn mount(volume: &str) -> Value {
    json!({ "name": volume, "mountPath": "/var/run/secrets/azure/wi", "readOnly": true })
}

fn volume(volume: &str, expiration: i64) -> Value {
    json!({
        "name": volume,
        "projected": { "sources": [
            { "serviceAccountToken": {
                "path": "token/azure-identity-token",
                "expirationSeconds": expiration,
                "audience": "api://AKSIdentityBinding",
            } },
            { "configMap": {
                "name": "idbind-proxy-ca",
                "items": [{ "key": "ca.crt", "path": "ca-cert/ca.crt" }],
                "optional": false,
            } },
        ] },
    })
}

fn denial(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn a_pod_is_mutated_exactly_as_specified_and_a_second_admission_changes_nothing() {
    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    let spec = json!({
        "serviceAccountName": "web",
        "initContainers": [{ "name": "init", "image": "busybox" }],
        "containers": [
            { "name": "app", "image": "app:1", "env": [{ "name": "LOG", "value": "debug" }] },
            { "name": "other", "image": "other:1", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] },
        ],
        "volumes": [{ "name": "data", "emptyDir": {} }],
    });
    let stored = w.create("apps", opted_in("web-0", spec)).await.unwrap();

    let vol = volume_name("web-0");
    let mut app_env = vec![json!({ "name": "LOG", "value": "debug" })];
    app_env.extend(env(TENANT).as_array().unwrap().iter().cloned());
    let expected = json!({
        "serviceAccountName": "web",
        "initContainers": [{ "name": "init", "image": "busybox", "env": env(TENANT), "volumeMounts": [mount(&vol)] }],
        "containers": [
            { "name": "app", "image": "app:1", "env": app_env, "volumeMounts": [mount(&vol)] },
            { "name": "other", "image": "other:1", "env": env(TENANT),
              "volumeMounts": [{ "name": "data", "mountPath": "/data" }, mount(&vol)] },
        ],
        "volumes": [{ "name": "data", "emptyDir": {} }, volume(&vol, 3600)],
    });
    assert_eq!(stored["spec"], expected, "stored spec:\n{:#}", stored["spec"]);
    assert_eq!(w.metrics.admissions("mutated"), 1);

    // The same pod admitted again (as the API server does on reinvocation): the webhook is called
    // and changes nothing.
    let configuration = w.configuration().await;
    let labels = BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), "apps".to_owned())]);
    let user = UserInfo::new("admin", ["system:masters"]);
    let again = MutatingAdmission::new()
        .admit(
            &AdmissionAttributes::pod_create("apps", stored.clone(), user),
            &[configuration],
            Some(&labels),
        )
        .await
        .unwrap();
    assert_eq!(again.called, [WEBHOOK_NAME]);
    assert!(
        again.mutated_by.is_empty(),
        "the second admission changed the pod"
    );
    assert_eq!(again.object.as_ref(), Some(&stored));
    assert_eq!(w.metrics.admissions("unchanged"), 1);

    // And created again through the API: stored exactly as submitted.
    w.pods("apps")
        .delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    let resubmitted = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web-0", "labels": stored["metadata"]["labels"], "annotations": stored["metadata"]["annotations"] },
        "spec": stored["spec"],
    });
    let restored = w.create("apps", resubmitted).await.unwrap();
    assert_eq!(restored["spec"], expected);
    assert_eq!(w.metrics.admissions("unchanged"), 2);
}

#[tokio::test]
async fn skip_containers_user_env_and_service_account_tenant() {
    let w = Webhook::start().await;
    w.service_account(
        "web",
        &[
            ("azure.workload.identity/client-id", CLIENT_ID),
            ("azure.workload.identity/tenant-id", "sa-tenant"),
        ],
    )
    .await;
    let annotations = json!({
        "azure.workload.identity/use-identity-binding": "True",
        "azure.workload.identity/skip-containers": "sidecar; init",
    });
    let spec = json!({
        "serviceAccountName": "web",
        "initContainers": [{ "name": "init", "image": "busybox" }],
        "containers": [
            { "name": "app", "image": "app:1", "env": [
                { "name": "AZURE_AUTHORITY_HOST", "value": "https://login.microsoftonline.us/" },
                { "name": "AZURE_KUBERNETES_SNI_NAME", "valueFrom": { "configMapKeyRef": { "name": "c", "key": "sni" } } },
            ] },
            { "name": "sidecar", "image": "proxy:1" },
        ],
    });
    let stored = w.create("apps", pod("web-1", annotations, spec)).await.unwrap();
    let vol = volume_name("web-1");
    let app = &stored["spec"]["containers"][0];
    let names: Vec<&str> = app["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AZURE_AUTHORITY_HOST",
            "AZURE_KUBERNETES_SNI_NAME",
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_KUBERNETES_TOKEN_PROXY",
            "AZURE_KUBERNETES_CA_FILE",
        ]
    );
    // User-set values win, whatever their source.
    assert_eq!(app["env"][0]["value"], "https://login.microsoftonline.us/");
    assert!(app["env"][1].get("value").is_none());
    assert_eq!(app["env"][3]["value"], "sa-tenant");
    assert_eq!(app["volumeMounts"], json!([mount(&vol)]));
    // Skipped containers are left alone, but the pod still gets the volume.
    assert_eq!(
        stored["spec"]["containers"][1],
        json!({ "name": "sidecar", "image": "proxy:1" })
    );
    assert_eq!(
        stored["spec"]["initContainers"][0],
        json!({ "name": "init", "image": "busybox" })
    );
    assert_eq!(stored["spec"]["volumes"], json!([volume(&vol, 3600)]));
}

#[tokio::test]
async fn token_expiration_comes_from_the_pod_or_the_service_account_within_bounds() {
    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    w.service_account(
        "long",
        &[
            ("azure.workload.identity/client-id", CLIENT_ID),
            (
                "azure.workload.identity/service-account-token-expiration",
                "86400",
            ),
        ],
    )
    .await;
    let spec =
        |sa: &str| json!({ "serviceAccountName": sa, "containers": [{ "name": "app", "image": "app:1" }] });
    let with = |v: &str| {
        json!({
            "azure.workload.identity/use-identity-binding": "true",
            "azure.workload.identity/service-account-token-expiration": v,
        })
    };
    let expiration = |pod: &Value| {
        pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
            .clone()
    };

    let from_sa = w.create("apps", opted_in("p-sa", spec("long"))).await.unwrap();
    assert_eq!(expiration(&from_sa), 86_400);
    let pod_wins = w
        .create("apps", pod("p-pod", with("7200"), spec("long")))
        .await
        .unwrap();
    assert_eq!(expiration(&pod_wins), 7200);
    let lowest = w
        .create("apps", pod("p-low", with("3600"), spec("web")))
        .await
        .unwrap();
    assert_eq!(expiration(&lowest), 3600);

    for (name, value, expect) in [
        ("p-short", "3599", "out of range"),
        ("p-long", "86401", "out of range"),
        ("p-text", "1h", "not a whole number"),
    ] {
        let e = denial(
            w.create("apps", pod(name, with(value), spec("web")))
                .await
                .unwrap_err(),
        );
        assert!(
            e.contains(&format!(
                "admission webhook \"{WEBHOOK_NAME}\" denied the request"
            )),
            "{e}"
        );
        assert!(
            e.contains(expect) && e.contains("between 3600 and 86400 seconds"),
            "{e}"
        );
        assert!(e.contains(&format!("pod apps/{name}")), "{e}");
        assert!(w.pods("apps").get_opt(name).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn a_service_account_without_client_id_gets_the_pod_denied_with_the_fix() {
    let w = Webhook::start().await;
    w.service_account("nocid", &[]).await;
    let spec = json!({ "serviceAccountName": "nocid", "containers": [{ "name": "app", "image": "app:1" }] });
    let e = denial(w.create("apps", opted_in("web-2", spec)).await.unwrap_err());
    assert!(e.contains("service account apps/nocid"), "{e}");
    assert!(
        e.contains("has no azure.workload.identity/client-id annotation"),
        "{e}"
    );
    assert!(
        e.contains(
            "kubectl annotate serviceaccount -n apps nocid azure.workload.identity/client-id=<client-id>"
        ),
        "{e}"
    );
    assert!(w.pods("apps").get_opt("web-2").await.unwrap().is_none());

    // No service account named: the namespace's `default` one is used (and lacks the annotation).
    let spec = json!({ "containers": [{ "name": "app", "image": "app:1" }] });
    let e = denial(w.create("apps", opted_in("web-3", spec)).await.unwrap_err());
    assert!(
        e.contains("service account apps/default used by pod apps/web-3 has no"),
        "{e}"
    );

    // A service account that does not exist.
    let spec = json!({ "serviceAccountName": "ghost", "containers": [{ "name": "app", "image": "app:1" }] });
    let e = denial(w.create("apps", opted_in("web-4", spec)).await.unwrap_err());
    assert!(
        e.contains("service account apps/ghost used by pod apps/web-4 does not exist"),
        "{e}"
    );
    assert_eq!(w.metrics.admissions("denied"), 3);
}

#[tokio::test]
async fn pods_that_did_not_opt_in_are_untouched() {
    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    let spec = json!({ "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] });

    // No label: the objectSelector keeps the webhook from being called at all.
    let mut plain = opted_in("plain", spec.clone());
    plain["metadata"]["labels"] = json!({ "app": "plain" });
    let stored = w.create("apps", plain).await.unwrap();
    assert_eq!(stored["spec"], spec);
    assert_eq!(w.metrics.admissions("skipped"), 0);

    // The label but not the identity-binding annotation: called, allowed unchanged.
    let label_only = pod("label-only", json!({}), spec.clone());
    assert_eq!(w.create("apps", label_only).await.unwrap()["spec"], spec);
    let wrong_value = pod(
        "not-true",
        json!({ "azure.workload.identity/use-identity-binding": "yes" }),
        spec.clone(),
    );
    assert_eq!(w.create("apps", wrong_value).await.unwrap()["spec"], spec);
    assert_eq!(w.metrics.admissions("skipped"), 2);

    // idbind's own namespace is never sent to the webhook.
    let api: Api<ServiceAccount> = Api::namespaced(w.client.clone(), "idbind");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([(
                "azure.workload.identity/client-id".into(),
                CLIENT_ID.into(),
            )])),
            ..meta("web")
        },
        ..ServiceAccount::default()
    };
    api.create(&PostParams::default(), &sa).await.unwrap();
    let own = w.create("idbind", opted_in("own", spec.clone())).await.unwrap();
    assert_eq!(own["spec"], spec);
    assert_eq!(w.metrics.admissions("mutated"), 0);
}

#[tokio::test]
async fn a_pod_with_only_generate_name_is_named_like_azure_workload_identity_does() {
    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    let mut p = opted_in(
        "x",
        json!({ "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] }),
    );
    p["metadata"].as_object_mut().unwrap().remove("name");
    p["metadata"]["generateName"] = json!("web-");
    let stored = w.create("apps", p).await.unwrap();
    let name = stored["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() > 4, "{name}");
    let vol = volume_name("web- (prefix)");
    assert_eq!(stored["spec"]["volumes"], json!([volume(&vol, 3600)]));
    assert_eq!(
        stored["spec"]["containers"][0]["volumeMounts"],
        json!([mount(&vol)])
    );
}

#[tokio::test]
async fn the_ca_bundle_tracks_the_webhook_ca_through_a_renewal() {
    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    let spec = json!({ "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] });
    let bundle_of = |c: &MutatingWebhookConfiguration| {
        let hook = c
            .webhooks
            .as_ref()
            .unwrap()
            .iter()
            .find(|h| h.name == WEBHOOK_NAME)
            .unwrap();
        String::from_utf8(hook.client_config.ca_bundle.clone().unwrap().0).unwrap()
    };

    let (state, _) = w.manager.reconcile().await.unwrap();
    let configuration = w.configuration().await;
    assert_eq!(bundle_of(&configuration), state.bundle_pem());
    let hook = &configuration.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Fail"));
    assert_eq!(hook.side_effects, "None");
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert_eq!(hook.timeout_seconds, Some(10));
    assert_eq!(hook.admission_review_versions, ["v1"]);
    let first_ca = state.current_ca_pem().to_owned();

    let mut phases = vec![state.phase()];
    let mut n = 0;
    while phases.len() < 4 {
        let (_, at) = w.manager.reconcile().await.unwrap();
        w.clock.set(at.max(w.clock.now()));
        let (state, _) = w.manager.reconcile().await.unwrap();
        if phases.last() != Some(&state.phase()) {
            phases.push(state.phase());
        }
        assert_eq!(
            bundle_of(&w.configuration().await),
            state.bundle_pem(),
            "in phase {}",
            state.phase()
        );
        if state.phase() == CertPhase::Switched {
            // Every replica picks the new certificate up from the Secret before the old CA goes.
            eventually("the webhook serving the new certificate", || async {
                w.serves_cert_of(state.current_ca_pem()).await.then_some(())
            })
            .await;
        }
        n += 1;
        w.create("apps", opted_in(&format!("during-{n}"), spec.clone()))
            .await
            .unwrap();
    }
    assert_eq!(
        phases,
        [
            CertPhase::Stable,
            CertPhase::Introduced,
            CertPhase::Switched,
            CertPhase::Stable
        ]
    );
    assert!(
        !w.serves_cert_of(&first_ca).await,
        "still serving a certificate of the retired CA"
    );
    w.create("apps", opted_in("after", spec)).await.unwrap();
}

#[tokio::test]
async fn an_existing_configuration_keeps_what_the_operator_set() {
    let w = Webhook::start().await;
    let api: Api<MutatingWebhookConfiguration> = Api::all(w.client.clone());
    // Someone (a Helm chart) owns the configuration: a looser policy, a stale clientConfig, and
    // another webhook.
    let mut configuration = w.configuration().await;
    let ours = configuration
        .webhooks
        .as_mut()
        .unwrap()
        .iter_mut()
        .find(|h| h.name == WEBHOOK_NAME)
        .unwrap();
    ours.failure_policy = Some("Ignore".into());
    ours.timeout_seconds = Some(5);
    ours.client_config = WebhookClientConfig {
        url: Some("https://127.0.0.1:1/old".into()),
        service: None,
        ca_bundle: Some(ByteString(b"stale".to_vec())),
    };
    let other = MutatingWebhook {
        name: "other.example.com".into(),
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
        client_config: WebhookClientConfig {
            url: Some("https://other.example.com/".into()),
            ..WebhookClientConfig::default()
        },
        ..MutatingWebhook::default()
    };
    configuration.webhooks.as_mut().unwrap().insert(0, other.clone());
    api.replace("idbind", &PostParams::default(), &configuration)
        .await
        .unwrap();

    let (state, _) = w.manager.reconcile().await.unwrap();
    let synced = w.configuration().await;
    let hooks = synced.webhooks.as_ref().unwrap();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0], other);
    assert_eq!(hooks[1].failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(hooks[1].timeout_seconds, Some(5));
    assert_eq!(
        hooks[1].client_config.url.as_deref(),
        Some(format!("https://127.0.0.1:{}/mutate-v1-pod", w.addr.port()).as_str())
    );
    assert_eq!(
        hooks[1].client_config.ca_bundle.as_ref().unwrap().0,
        state.bundle_pem().as_bytes()
    );

    // Without idbind's entry, it is appended.
    let mut configuration = synced.clone();
    configuration
        .webhooks
        .as_mut()
        .unwrap()
        .retain(|h| h.name != WEBHOOK_NAME);
    api.replace("idbind", &PostParams::default(), &configuration)
        .await
        .unwrap();
    w.manager.reconcile().await.unwrap();
    let hooks = w.configuration().await.webhooks.unwrap();
    assert_eq!(
        hooks.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["other.example.com", WEBHOOK_NAME]
    );
    assert_eq!(hooks[1].failure_policy.as_deref(), Some("Fail"));
}

/// What the sandbox (no kubelet) does for a pod that runs as a local process: the projected
/// token and CA file appear in a directory, and the container's paths point there.
#[tokio::test]
async fn the_projected_volume_can_be_materialized_without_a_kubelet() {
    use idbind_controller::webhook::projection::{keep_projected, local_env, project};
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    use k8s_openapi::api::core::v1::ConfigMap;

    let w = Webhook::start().await;
    w.service_account("web", &[("azure.workload.identity/client-id", CLIENT_ID)])
        .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(w.client.clone(), "apps");
    let cm = ConfigMap {
        metadata: meta("idbind-proxy-ca"),
        data: Some(BTreeMap::from([("ca.crt".to_owned(), "bundle-1\n".to_owned())])),
        ..ConfigMap::default()
    };
    configmaps.create(&PostParams::default(), &cm).await.unwrap();
    let annotations = json!({
        "azure.workload.identity/use-identity-binding": "true",
        "azure.workload.identity/service-account-token-expiration": "7200",
    });
    let spec = json!({ "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] });
    w.create("apps", pod("local", annotations, spec)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let files = project(&w.client, "apps", "local", dir.path()).await.unwrap();
    assert_eq!(files.token_file, dir.path().join("token/azure-identity-token"));
    assert_eq!(files.ca_file, dir.path().join("ca-cert/ca.crt"));
    assert_eq!(files.expiration_seconds, 7200);
    assert_eq!(std::fs::read_to_string(&files.ca_file).unwrap(), "bundle-1\n");
    // The token is what kubelet would have projected: the proxy's TokenReview accepts it for the
    // identity-binding audience.
    let token = std::fs::read_to_string(&files.token_file).unwrap();
    let reviews: Api<TokenReview> = Api::all(w.client.clone());
    let review = TokenReview {
        spec: TokenReviewSpec {
            token,
            audiences: Some(vec!["api://AKSIdentityBinding".into()]),
        },
        ..TokenReview::default()
    };
    let status = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.unwrap().username.as_deref(),
        Some("system:serviceaccount:apps:web")
    );

    let stored = w.pods("apps").get("local").await.unwrap();
    let env: BTreeMap<String, String> = local_env(&stored, "app", dir.path()).into_iter().collect();
    assert_eq!(
        env["AZURE_FEDERATED_TOKEN_FILE"],
        files.token_file.display().to_string()
    );
    assert_eq!(
        env["AZURE_KUBERNETES_CA_FILE"],
        files.ca_file.display().to_string()
    );
    assert_eq!(env["AZURE_CLIENT_ID"], CLIENT_ID);

    // Kept fresh: a new bundle reaches the file.
    let stop = CancellationToken::new();
    let _guard = StopGuard(stop.clone());
    tokio::spawn(keep_projected(
        w.client.clone(),
        "apps".into(),
        "local".into(),
        dir.path().to_path_buf(),
        Duration::from_millis(50),
        stop.clone(),
    ));
    let mut cm = configmaps.get("idbind-proxy-ca").await.unwrap();
    cm.data
        .as_mut()
        .unwrap()
        .insert("ca.crt".into(), "bundle-2\n".into());
    configmaps
        .replace("idbind-proxy-ca", &PostParams::default(), &cm)
        .await
        .unwrap();
    eventually("the new bundle in the CA file", || async {
        (std::fs::read_to_string(&files.ca_file).ok()? == "bundle-2\n").then_some(())
    })
    .await;
}

struct StopGuard(CancellationToken);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
