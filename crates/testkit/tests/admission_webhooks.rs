#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The mutating admission chain against real HTTPS webhook servers (axum + rustls on loopback
//! port 0, certificates from a CA generated per test).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{Uri, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper_util::rt::{TokioExecutor, TokioIo};
use idbind_testkit::admission::{AdmissionAttributes, AdmissionReview, MutatingAdmission};
use idbind_testkit::auth::UserInfo;
use idbind_tls::CertificateAuthority;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Respond = Arc<dyn Fn(&AdmissionReview) -> Value + Send + Sync>;

/// One request a test webhook received.
#[derive(Clone, Debug)]
struct Received {
    review: AdmissionReview,
    uri: String,
    version: Version,
}

#[derive(Clone)]
struct ServerState {
    received: Arc<Mutex<Vec<Received>>>,
    respond: Respond,
}

/// A test webhook over HTTPS; stopped when dropped.
struct WebhookServer {
    addr: SocketAddr,
    ca_pem: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookServer {
    /// Serves on 127.0.0.1:0 with a certificate for `dns_names` and 127.0.0.1.
    async fn start(dns_names: &[&str], respond: Respond) -> Self {
        let ca = CertificateAuthority::generate("webhook test CA", Duration::from_secs(3600)).unwrap();
        let names: Vec<String> = dns_names.iter().map(|n| (*n).to_owned()).collect();
        let leaf = ca
            .issue_server_cert(
                &names,
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
                Duration::from_secs(3600),
            )
            .unwrap();
        let tls = Arc::new(idbind_tls::server_config(&leaf.cert_pem, &leaf.key_pem).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            received: received.clone(),
            respond,
        };
        let app = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state(state);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca_pem: ca.cert_pem().to_owned(),
            received,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn calls(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

async fn handle(
    State(state): State<ServerState>,
    uri: Uri,
    version: Version,
    Json(review): Json<AdmissionReview>,
) -> Json<Value> {
    let answer = (state.respond)(&review);
    state.received.lock().push(Received {
        review,
        uri: uri.to_string(),
        version,
    });
    Json(answer)
}

fn uid(review: &AdmissionReview) -> String {
    review.request.as_ref().unwrap().uid.clone()
}

fn allow_with_patch(review: &AdmissionReview, patch: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": uid(review),
            "allowed": true,
            "patchType": "JSONPatch",
            "patch": STANDARD.encode(serde_json::to_vec(patch).unwrap()),
            "warnings": ["injected by test webhook"],
            "auditAnnotations": { "injected": "true" },
        }
    })
}

/// Injects an env var into every container and a label, like the workload identity webhook.
fn injector() -> Respond {
    Arc::new(|review| {
        let pod = review.request.as_ref().unwrap().object.clone().unwrap();
        let mut patch = vec![json!({"op": "add", "path": "/metadata/labels/injected", "value": "yes"})];
        for (i, container) in pod["spec"]["containers"].as_array().unwrap().iter().enumerate() {
            let env = json!({"name": "AZURE_CLIENT_ID", "value": "22222222-2222-2222-2222-222222222222"});
            if container.get("env").is_some() {
                patch.push(json!({"op": "add", "path": format!("/spec/containers/{i}/env/-"), "value": env}));
            } else {
                patch.push(json!({"op": "add", "path": format!("/spec/containers/{i}/env"), "value": [env]}));
            }
        }
        allow_with_patch(review, &Value::Array(patch))
    })
}

fn pod(labels: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "web", "namespace": "apps", "labels": labels },
        "spec": { "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] },
    })
}

fn opted_in_pod() -> Value {
    pod(&json!({ "azure.workload.identity/use": "true" }))
}

fn pod_create(object: Value) -> AdmissionAttributes {
    AdmissionAttributes::pod_create(
        "apps",
        object,
        UserInfo::new("admin", ["system:masters", "system:authenticated"]),
    )
}

fn pod_rule() -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![String::new()]),
        api_versions: Some(vec!["v1".into()]),
        operations: Some(vec!["CREATE".into()]),
        resources: Some(vec!["pods".into()]),
        scope: Some("*".into()),
    }
}

fn use_label_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "azure.workload.identity/use".into(),
            "true".into(),
        )])),
        ..LabelSelector::default()
    }
}

fn webhook(name: &str, url: String, ca_pem: &str) -> MutatingWebhook {
    MutatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into(), "v1beta1".into()],
        client_config: WebhookClientConfig {
            url: Some(url),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
        failure_policy: Some("Fail".into()),
        object_selector: Some(use_label_selector()),
        rules: Some(vec![pod_rule()]),
        side_effects: "None".into(),
        ..MutatingWebhook::default()
    }
}

fn configuration(name: &str, webhooks: Vec<MutatingWebhook>) -> MutatingWebhookConfiguration {
    MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(webhooks),
    }
}

fn namespace_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/metadata.name".into(), "apps".into()),
        ("team".into(), "payments".into()),
    ])
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_pod_is_mutated_by_an_https_webhook() {
    let server = WebhookServer::start(&["localhost"], injector()).await;
    let configs = [configuration(
        "wi",
        vec![webhook(
            "mutate.example.com",
            server.url("/mutate-v1-pod"),
            &server.ca_pem,
        )],
    )];
    let admission = MutatingAdmission::new();
    let labels = namespace_labels();
    let admitted = admission
        .admit(&pod_create(opted_in_pod()), &configs, Some(&labels))
        .await
        .unwrap();

    let object = admitted.object.unwrap();
    assert_eq!(object["metadata"]["labels"]["injected"], "yes");
    assert_eq!(
        object["spec"]["containers"][0]["env"][0]["name"],
        "AZURE_CLIENT_ID"
    );
    assert_eq!(admitted.called, ["mutate.example.com"]);
    assert_eq!(admitted.mutated_by, ["mutate.example.com"]);
    assert_eq!(admitted.warnings, ["injected by test webhook"]);
    assert_eq!(admitted.audit_annotations["mutate.example.com/injected"], "true");
    assert_eq!(
        serde_json::from_str::<Value>(
            &admitted.audit_annotations["mutation.webhook.admission.k8s.io/round_0_index_0"]
        )
        .unwrap(),
        json!({"configuration": "wi", "webhook": "mutate.example.com", "mutated": true})
    );

    let calls = server.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(call.uri.ends_with("/mutate-v1-pod?timeout=10s"), "{}", call.uri);
    assert_eq!(
        call.version,
        Version::HTTP_2,
        "ALPN picks h2 as with kube-apiserver"
    );
    let sent = serde_json::to_value(&call.review).unwrap();
    assert_eq!(sent["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(sent["kind"], "AdmissionReview");
    let request = &sent["request"];
    assert_eq!(
        uuid::Uuid::parse_str(request["uid"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(
        request["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(
        request["resource"],
        json!({"group": "", "version": "v1", "resource": "pods"})
    );
    assert_eq!(request["requestKind"], request["kind"]);
    assert_eq!(request["name"], "web");
    assert_eq!(request["namespace"], "apps");
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(
        request["userInfo"],
        json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
    );
    assert_eq!(request["object"], opted_in_pod());
    assert_eq!(request["dryRun"], false);
    assert_eq!(
        request["options"],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"})
    );
    assert!(request.get("oldObject").is_none());
}

#[tokio::test]
async fn a_service_reference_is_reached_through_the_service_map_with_the_service_dns_name() {
    // The certificate names only the Service's DNS name: the TLS server name must be it.
    let server = WebhookServer::start(&["idbind-webhook.idbind-system.svc"], injector()).await;
    let mut hook = webhook("svc.example.com", String::new(), &server.ca_pem);
    hook.client_config.url = None;
    hook.client_config.service = Some(ServiceReference {
        name: "idbind-webhook".into(),
        namespace: "idbind-system".into(),
        path: Some("/mutate".into()),
        port: Some(8443),
    });
    let configs = [configuration("idbind", vec![hook])];
    let admission = MutatingAdmission::new();

    // Not mapped yet: a call failure, so Fail rejects.
    let rejected = admission
        .admit(&pod_create(opted_in_pod()), &configs, None)
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 500);
    assert!(
        rejected
            .message()
            .contains(r#"service "idbind-system/idbind-webhook" port 8443 is not mapped"#),
        "{rejected}"
    );

    admission
        .services()
        .insert("idbind-system", "idbind-webhook", 8443, server.addr);
    let admitted = admission
        .admit(&pod_create(opted_in_pod()), &configs, None)
        .await
        .unwrap();
    assert_eq!(admitted.object.unwrap()["metadata"]["labels"]["injected"], "yes");
    assert!(server.calls()[0].uri.ends_with("/mutate?timeout=10s"));
}

#[tokio::test]
async fn an_unreachable_webhook_rejects_under_fail_and_is_skipped_under_ignore() {
    let addr = closed_port().await;
    let url = format!("https://{addr}/mutate");
    let ca = CertificateAuthority::generate("unused", Duration::from_secs(3600)).unwrap();
    let admission = MutatingAdmission::new();

    let fail = [configuration(
        "wi",
        vec![webhook("down.example.com", url.clone(), ca.cert_pem())],
    )];
    let rejected = admission
        .admit(&pod_create(opted_in_pod()), &fail, None)
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 500);
    assert_eq!(rejected.reason(), "InternalError");
    let expected_prefix = format!(
        r#"Internal error occurred: failed calling webhook "down.example.com": failed to call webhook: Post "https://{addr}/mutate?timeout=10s": dial tcp {addr}: connect: "#
    );
    assert!(
        rejected.message().starts_with(&expected_prefix),
        "{}",
        rejected.message()
    );
    let status = serde_json::to_value(&rejected.status).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["status"].as_str()),
        (Some("Status"), Some("Failure"))
    );

    let mut ignore_hook = webhook("down.example.com", url, ca.cert_pem());
    ignore_hook.failure_policy = Some("Ignore".into());
    let ignore = [configuration("wi", vec![ignore_hook])];
    let admitted = admission
        .admit(&pod_create(opted_in_pod()), &ignore, None)
        .await
        .unwrap();
    assert_eq!(admitted.object.unwrap(), opted_in_pod(), "unchanged");
    assert_eq!(admitted.failed_open.len(), 1);
    assert!(admitted.failed_open[0].starts_with(r#"failed calling webhook "down.example.com""#));
    assert_eq!(
        admitted.audit_annotations["failed-open.mutation.webhook.admission.k8s.io/round_0_index_0"],
        "down.example.com"
    );
}

#[tokio::test]
async fn only_the_ca_bundle_is_trusted() {
    let server = WebhookServer::start(&["localhost"], injector()).await;
    let other_ca = CertificateAuthority::generate("another CA", Duration::from_secs(3600)).unwrap();
    let admission = MutatingAdmission::new();

    let configs = [configuration(
        "wi",
        vec![webhook("tls.example.com", server.url("/m"), other_ca.cert_pem())],
    )];
    let rejected = admission
        .admit(&pod_create(opted_in_pod()), &configs, None)
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 500);
    assert!(
        rejected.message().contains("tls: invalid peer certificate"),
        "{}",
        rejected.message()
    );

    let mut no_bundle = webhook("tls.example.com", server.url("/m"), "");
    no_bundle.client_config.ca_bundle = None;
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![no_bundle])],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        rejected.message().contains("no clientConfig.caBundle"),
        "{}",
        rejected.message()
    );
    assert!(server.calls().is_empty());
}

#[tokio::test]
async fn object_namespace_and_rule_misses_do_not_call_the_webhook() {
    let server = WebhookServer::start(&["localhost"], injector()).await;
    let admission = MutatingAdmission::new();
    let labels = namespace_labels();

    // objectSelector miss: the pod is not opted in.
    let configs = [configuration(
        "wi",
        vec![webhook("m.example.com", server.url("/m"), &server.ca_pem)],
    )];
    let plain = pod(&json!({ "app": "web" }));
    let admitted = admission
        .admit(&pod_create(plain.clone()), &configs, Some(&labels))
        .await
        .unwrap();
    assert_eq!(admitted.object.unwrap(), plain);
    assert!(admitted.called.is_empty());
    let opted_out = pod(&json!({ "azure.workload.identity/use": "false" }));
    admission
        .admit(&pod_create(opted_out), &configs, Some(&labels))
        .await
        .unwrap();

    // namespaceSelector miss, with matchExpressions.
    let mut hook = webhook("m.example.com", server.url("/m"), &server.ca_pem);
    hook.namespace_selector = Some(LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "team".into(),
            operator: "In".into(),
            values: Some(vec!["identity".into()]),
        }]),
        ..LabelSelector::default()
    });
    let configs = [configuration("wi", vec![hook.clone()])];
    let admitted = admission
        .admit(&pod_create(opted_in_pod()), &configs, Some(&labels))
        .await
        .unwrap();
    assert!(admitted.called.is_empty());
    admission
        .admit(&pod_create(opted_in_pod()), &configs, None)
        .await
        .unwrap();

    // Rules miss: other operation, other resource, subresource, other group, scope.
    for change in [
        |r: &mut RuleWithOperations| r.operations = Some(vec!["UPDATE".into()]),
        |r: &mut RuleWithOperations| r.resources = Some(vec!["deployments".into()]),
        |r: &mut RuleWithOperations| r.resources = Some(vec!["pods/status".into()]),
        |r: &mut RuleWithOperations| r.api_groups = Some(vec!["apps".into()]),
        |r: &mut RuleWithOperations| r.scope = Some("Cluster".into()),
    ] {
        let mut hook = webhook("m.example.com", server.url("/m"), &server.ca_pem);
        let mut rule = pod_rule();
        change(&mut rule);
        hook.rules = Some(vec![rule]);
        let admitted = admission
            .admit(
                &pod_create(opted_in_pod()),
                &[configuration("wi", vec![hook])],
                None,
            )
            .await
            .unwrap();
        assert!(admitted.called.is_empty());
    }
    assert!(server.calls().is_empty(), "no call reached the server");

    // The same selectors match when the labels do: namespace label, wildcard rules.
    hook.namespace_selector
        .as_mut()
        .unwrap()
        .match_expressions
        .as_mut()
        .unwrap()[0]
        .values = Some(vec!["identity".into(), "payments".into()]);
    hook.rules = Some(vec![RuleWithOperations {
        api_groups: Some(vec!["*".into()]),
        api_versions: Some(vec!["*".into()]),
        operations: Some(vec!["*".into()]),
        resources: Some(vec!["*".into()]),
        scope: Some("Namespaced".into()),
    }]);
    let admitted = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            Some(&labels),
        )
        .await
        .unwrap();
    assert_eq!(admitted.called, ["m.example.com"]);
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test]
async fn allowed_false_rejects_with_the_webhooks_status_whatever_the_failure_policy() {
    let deny: Respond = Arc::new(|review| {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": uid(review),
                "allowed": false,
                "status": { "code": 403, "message": "service account web may not use identity 2222", "reason": "Forbidden" },
            }
        })
    });
    let server = WebhookServer::start(&["localhost"], deny).await;
    let mut hook = webhook("deny.example.com", server.url("/deny"), &server.ca_pem);
    hook.failure_policy = Some("Ignore".into());
    let admission = MutatingAdmission::new();
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 403);
    assert_eq!(rejected.reason(), "Forbidden");
    assert_eq!(
        rejected.message(),
        r#"admission webhook "deny.example.com" denied the request: service account web may not use identity 2222"#
    );

    let bare: Respond = Arc::new(
        |review| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid(review), "allowed": false}}),
    );
    let server = WebhookServer::start(&["localhost"], bare).await;
    let hook = webhook("bare.example.com", server.url("/deny"), &server.ca_pem);
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 400);
    assert_eq!(
        rejected.message(),
        r#"admission webhook "bare.example.com" denied the request without explanation"#
    );
}

#[tokio::test]
async fn invalid_responses_are_call_failures() {
    let wrong_uid: Respond = Arc::new(
        |_| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "not-the-uid", "allowed": true}}),
    );
    let server = WebhookServer::start(&["localhost"], wrong_uid).await;
    let admission = MutatingAdmission::new();
    let hook = webhook("uid.example.com", server.url("/m"), &server.ca_pem);
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook.clone()])],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        rejected
            .message()
            .contains(r#"received invalid webhook response: expected response.uid=""#)
            && rejected.message().ends_with(r#"got "not-the-uid""#),
        "{}",
        rejected.message()
    );
    let mut ignore = hook;
    ignore.failure_policy = Some("Ignore".into());
    let admitted = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![ignore])],
            None,
        )
        .await
        .unwrap();
    assert_eq!(admitted.failed_open.len(), 1);

    let no_patch_type: Respond = Arc::new(|review| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": uid(review), "allowed": true, "patch": STANDARD.encode("[]")}})
    });
    let server = WebhookServer::start(&["localhost"], no_patch_type).await;
    let hook = webhook("pt.example.com", server.url("/m"), &server.ca_pem);
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        rejected
            .message()
            .ends_with("webhook returned response.patch but not response.patchType"),
        "{rejected}"
    );

    // A patch that does not apply is an internal error even under Ignore.
    let bad_patch: Respond =
        Arc::new(|review| allow_with_patch(review, &json!([{"op": "remove", "path": "/spec/nothing-here"}])));
    let server = WebhookServer::start(&["localhost"], bad_patch).await;
    let mut hook = webhook("patch.example.com", server.url("/m"), &server.ca_pem);
    hook.failure_policy = Some("Ignore".into());
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), 500);
    assert!(
        rejected.message().contains("applying its JSON patch"),
        "{rejected}"
    );
}

#[tokio::test]
async fn configurations_run_in_name_order_and_see_earlier_mutations_and_if_needed_reinvokes() {
    // "a-first" copies the env count into an annotation; "b-second" injects the env var.
    let counter: Respond = Arc::new(|review| {
        let pod = review.request.as_ref().unwrap().object.clone().unwrap();
        let count = pod["spec"]["containers"][0]["env"].as_array().map_or(0, Vec::len);
        allow_with_patch(
            review,
            &json!([{"op": "add", "path": "/metadata/annotations", "value": {"env-count": count.to_string()}}]),
        )
    });
    let first = WebhookServer::start(&["localhost"], counter).await;
    let second = WebhookServer::start(&["localhost"], injector()).await;
    let mut counting = webhook("count.example.com", first.url("/count"), &first.ca_pem);
    counting.reinvocation_policy = Some("IfNeeded".into());
    let configs = [
        configuration(
            "b-second",
            vec![webhook(
                "inject.example.com",
                second.url("/inject"),
                &second.ca_pem,
            )],
        ),
        configuration("a-first", vec![counting]),
    ];
    let admitted = MutatingAdmission::new()
        .admit(&pod_create(opted_in_pod()), &configs, None)
        .await
        .unwrap();
    assert_eq!(
        admitted.called,
        ["count.example.com", "inject.example.com", "count.example.com"]
    );
    let object = admitted.object.unwrap();
    assert_eq!(
        object["metadata"]["annotations"]["env-count"], "1",
        "the reinvocation saw the injected env"
    );
    // The second webhook received the first one's mutation.
    let seen = second.calls()[0].review.request.clone().unwrap().object.unwrap();
    assert_eq!(seen["metadata"]["annotations"]["env-count"], "0");
}

#[tokio::test]
async fn dry_run_match_conditions_and_unknown_review_versions() {
    let server = WebhookServer::start(&["localhost"], injector()).await;
    let admission = MutatingAdmission::new();

    let mut side_effects = webhook("se.example.com", server.url("/m"), &server.ca_pem);
    side_effects.side_effects = "Unknown".into();
    let mut dry = pod_create(opted_in_pod());
    dry.dry_run = true;
    let rejected = admission
        .admit(&dry, &[configuration("wi", vec![side_effects])], None)
        .await
        .unwrap_err();
    assert_eq!(
        (rejected.code(), rejected.message()),
        (
            400,
            r#"admission webhook "se.example.com" does not support dry run"#
        )
    );
    let admitted = admission
        .admit(
            &dry,
            &[configuration(
                "wi",
                vec![webhook("none.example.com", server.url("/m"), &server.ca_pem)],
            )],
            None,
        )
        .await
        .unwrap();
    assert_eq!(admitted.called, ["none.example.com"]);
    assert_eq!(
        server.calls()[0].review.request.as_ref().unwrap().dry_run,
        Some(true)
    );

    let mut conditional = webhook("cel.example.com", server.url("/m"), &server.ca_pem);
    conditional.match_conditions = Some(vec![MatchCondition {
        name: "c".into(),
        expression: "true".into(),
    }]);
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![conditional])],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        rejected.message().contains("matchConditions are not supported"),
        "{rejected}"
    );

    let mut old = webhook("v1beta1.example.com", server.url("/m"), &server.ca_pem);
    old.admission_review_versions = vec!["v1beta1".into()];
    let rejected = admission
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![old])],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        rejected.message().contains("AdmissionReview versions"),
        "{rejected}"
    );
    assert_eq!(server.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_webhook_that_never_answers_times_out_after_timeout_seconds() {
    // Accepts connections and never speaks: the TLS handshake hangs until the timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let ca = CertificateAuthority::generate("silent", Duration::from_secs(3600)).unwrap();
    let mut hook = webhook("slow.example.com", format!("https://{addr}/m"), ca.cert_pem());
    hook.timeout_seconds = Some(3);
    let started = tokio::time::Instant::now();
    let rejected = MutatingAdmission::new()
        .admit(
            &pod_create(opted_in_pod()),
            &[configuration("wi", vec![hook])],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        rejected.message(),
        format!(
            r#"Internal error occurred: failed calling webhook "slow.example.com": failed to call webhook: Post "https://{addr}/m?timeout=3s": context deadline exceeded"#
        )
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "cut after exactly timeoutSeconds (paused clock)"
    );
}

// ---- Through the running emulator: pods created with kube-rs. ----

mod through_the_api {
    use super::*;
    use idbind_testkit::KubeEmulator;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::{Api, PostParams};

    async fn emulator_with(config: MutatingWebhookConfiguration) -> (KubeEmulator, kube::Client) {
        let emulator = KubeEmulator::start().await.unwrap();
        let client = emulator.client().unwrap();
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some("apps".into()),
                labels: Some(BTreeMap::from([("team".into(), "payments".into())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        Api::<MutatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &config)
            .await
            .unwrap();
        (emulator, client)
    }

    async fn create_pod(client: &kube::Client, object: Value) -> Result<Pod, kube::Error> {
        let pod: Pod = serde_json::from_value(object).unwrap();
        Api::<Pod>::namespaced(client.clone(), "apps")
            .create(&PostParams::default(), &pod)
            .await
    }

    fn service_webhook(ca_pem: &str) -> MutatingWebhook {
        let mut hook = webhook("inject.idbind.dev", String::new(), ca_pem);
        hook.client_config.url = None;
        hook.client_config.service = Some(ServiceReference {
            name: "idbind-webhook".into(),
            namespace: "idbind-system".into(),
            path: Some("/mutate-v1-pod".into()),
            port: Some(443),
        });
        hook.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                "apps".into(),
            )])),
            ..LabelSelector::default()
        });
        hook
    }

    #[tokio::test]
    async fn a_pod_created_through_the_api_is_mutated_by_the_webhook_service() {
        let server = WebhookServer::start(&["idbind-webhook.idbind-system.svc"], injector()).await;
        let (emulator, client) =
            emulator_with(configuration("idbind", vec![service_webhook(&server.ca_pem)])).await;
        emulator
            .services()
            .insert("idbind-system", "idbind-webhook", 443, server.addr);

        let created = create_pod(&client, opted_in_pod()).await.unwrap();
        let env = created.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "AZURE_CLIENT_ID");
        assert_eq!(created.metadata.labels.as_ref().unwrap()["injected"], "yes");
        let stored = Api::<Pod>::namespaced(client.clone(), "apps")
            .get("web")
            .await
            .unwrap();
        assert_eq!(
            stored.spec.unwrap().containers[0].env.as_ref().unwrap()[0].name,
            "AZURE_CLIENT_ID"
        );

        let calls = server.calls();
        assert_eq!(calls.len(), 1);
        let request = calls[0].review.request.clone().unwrap();
        assert_eq!(request.user_info.username.as_deref(), Some("admin"));
        assert_eq!(request.namespace.as_deref(), Some("apps"));
        assert_eq!(request.operation, "CREATE");

        // Not opted in: stored as sent, the webhook is not called.
        let plain = create_pod(&client, {
            let mut p = pod(&json!({"app": "x"}));
            p["metadata"]["name"] = json!("plain");
            p
        })
        .await
        .unwrap();
        assert!(plain.spec.unwrap().containers[0].env.is_none());
        assert_eq!(server.calls().len(), 1);
    }

    #[tokio::test]
    async fn fail_rejects_and_ignore_admits_when_the_webhook_is_down() {
        let ca = CertificateAuthority::generate("down", Duration::from_secs(3600)).unwrap();
        let (emulator, client) =
            emulator_with(configuration("idbind", vec![service_webhook(ca.cert_pem())])).await;
        emulator
            .services()
            .insert("idbind-system", "idbind-webhook", 443, closed_port().await);

        let status = match create_pod(&client, opted_in_pod()).await {
            Err(kube::Error::Api(status)) => status,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!((status.code, status.reason.as_str()), (500, "InternalError"));
        assert!(
            status.message.starts_with(
                r#"Internal error occurred: failed calling webhook "inject.idbind.dev": failed to call webhook: Post "https://idbind-webhook.idbind-system.svc:443/mutate-v1-pod?timeout=10s""#
            ),
            "{}",
            status.message
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
        assert!(pods.get_opt("web").await.unwrap().is_none(), "nothing stored");

        let mut hook = service_webhook(ca.cert_pem());
        hook.failure_policy = Some("Ignore".into());
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let mut stored = api.get("idbind").await.unwrap();
        stored.webhooks = Some(vec![hook]);
        api.replace("idbind", &PostParams::default(), &stored)
            .await
            .unwrap();
        let created = create_pod(&client, opted_in_pod()).await.unwrap();
        assert!(
            created.spec.unwrap().containers[0].env.is_none(),
            "admitted unmutated"
        );
    }

    #[tokio::test]
    async fn a_denial_is_the_api_answer() {
        let deny: Respond = Arc::new(|review| {
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": uid(review), "allowed": false, "status": {"code": 403, "message": "no identity for you"}}})
        });
        let server = WebhookServer::start(&["localhost"], deny).await;
        let (_emulator, client) = emulator_with(configuration(
            "deny",
            vec![webhook("deny.idbind.dev", server.url("/deny"), &server.ca_pem)],
        ))
        .await;
        let status = match create_pod(&client, opted_in_pod()).await {
            Err(kube::Error::Api(status)) => status,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(status.code, 403);
        assert_eq!(
            status.message,
            r#"admission webhook "deny.idbind.dev" denied the request: no identity for you"#
        );
    }
}
