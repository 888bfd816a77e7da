//! `idbind token` and `idbind doctor` against a full member cluster on loopback (`idbind-tests`'
//! [`Stack`]: Kubernetes API emulator, Azure emulator, issuer, proxy), plus the objects the
//! controller would have written that doctor reads (Lease, signing-key Secret, proxy CA ConfigMap).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{idbind, run, show, stderr, stdout};
use idbind_emulator::{Fault, FicInfo, Route};
use idbind_issuer::{ClusterName, KeySet};
use idbind_model::{
    DEFAULT_SA_TOKEN_AUDIENCE, IdentityBinding, SA_CLIENT_ID_ANNOTATION, condition, set_condition,
};
use idbind_tests::{ALLOWED_SA, DENIED_SA, NAMESPACE, SCOPE, Stack};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

const IDBIND_NS: &str = "idbind";

fn sdk_env(cmd: &mut assert_cmd::Command, stack: &Stack) {
    for (k, v) in stack.sdk_env() {
        cmd.env(k, v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_speaks_to_the_proxy_like_an_sdk() {
    let stack = Stack::start().await.unwrap();

    // Everything from the AZURE_* environment a mutated pod has.
    let mut cmd = idbind();
    cmd.args(["token", "--scope", SCOPE]);
    sdk_env(&mut cmd, &stack);
    let out = run(&mut cmd).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("Token type:  Bearer"), "{text}");
    let client = stack.client_id().to_string();
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("appid ") && l.trim_end().ends_with(&client)),
        "{text}"
    );
    assert!(text.contains(&stack.tenant_id().to_string()), "{text}");
    assert!(
        !text.contains("eyJ"),
        "the raw token is never printed without --raw:\n{text}"
    );

    // --raw prints the token alone, and it is the identity's.
    let mut cmd = idbind();
    cmd.args(["token", "--raw"]);
    sdk_env(&mut cmd, &stack);
    let out = run(&mut cmd).await;
    assert!(out.status.success(), "{}", show(&out));
    stack.assert_identity_token(stdout(&out).trim()).await.unwrap();

    // A service account RBAC does not allow: the proxy's refusal, with a hint.
    let denied = stack
        .sa_token(DENIED_SA, DEFAULT_SA_TOKEN_AUDIENCE, 600)
        .await
        .unwrap();
    let denied_file = stack.dir().join("denied-token");
    std::fs::write(&denied_file, denied).unwrap();
    let mut cmd = idbind();
    cmd.args(["token", "--token-file"]).arg(&denied_file);
    sdk_env(&mut cmd, &stack);
    cmd.env_remove("AZURE_FEDERATED_TOKEN_FILE");
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("the proxy refused the token request: HTTP 4"),
        "{}",
        show(&out)
    );
    assert!(stderr(&out).contains("hint:"), "{}", show(&out));

    // The wrong CA: TLS fails and says what to pass.
    let other_ca =
        idbind_tls::CertificateAuthority::generate("another CA", Duration::from_secs(3600)).unwrap();
    let other_ca_file = stack.dir().join("other-ca.crt");
    std::fs::write(&other_ca_file, other_ca.cert_pem()).unwrap();
    let mut cmd = idbind();
    cmd.args(["token", "--ca-file"]).arg(&other_ca_file);
    sdk_env(&mut cmd, &stack);
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("TLS with the proxy"), "{}", show(&out));
    assert!(
        stderr(&out).contains("ConfigMap idbind-proxy-ca"),
        "{}",
        show(&out)
    );

    // No proxy there: status 4.
    let mut cmd = idbind();
    cmd.args([
        "token",
        "--proxy",
        &format!("https://127.0.0.1:{}", common::closed_port()),
    ]);
    sdk_env(&mut cmd, &stack);
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(stderr(&out).contains("cannot reach the proxy"), "{}", show(&out));

    // A proxy URL with a path is refused before anything is sent, as the SDKs do.
    let mut cmd = idbind();
    cmd.args(["token", "--proxy", "https://127.0.0.1:1/prefix"]);
    sdk_env(&mut cmd, &stack);
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("must have no path"), "{}", show(&out));

    // Nothing to present: a usage error naming the flag and its variable.
    let out = run(idbind().args(["token", "--client-id", &stack.client_id().to_string()])).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--token-file <FILE>"), "{}", show(&out));
}

/// The objects the controller keeps that doctor reads, as a healthy controller leaves them.
async fn controller_objects(stack: &Stack) {
    let admin = stack.admin_client();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(IDBIND_NS),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    write_lease(stack, jiff::Timestamp::now()).await;
    let keys = KeySet::from_dir(&stack.keys_dir()).unwrap();
    write_keys(stack, &keys).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let cm = ConfigMap {
        metadata: meta("idbind-proxy-ca"),
        data: Some(BTreeMap::from([("ca.crt".to_owned(), stack.ca_pem().to_owned())])),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    for sa in [ALLOWED_SA, DENIED_SA] {
        annotate(stack, sa).await;
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

async fn annotate(stack: &Stack, sa: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(stack.admin_client(), NAMESPACE);
    let patch =
        json!({"metadata": {"annotations": {SA_CLIENT_ID_ANNOTATION: stack.client_id().to_string()}}});
    sas.patch(sa, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn write_lease(stack: &Stack, renewed: jiff::Timestamp) {
    let leases: Api<Lease> = Api::namespaced(stack.admin_client(), IDBIND_NS);
    let lease = Lease {
        metadata: meta("idbind-controller"),
        spec: Some(LeaseSpec {
            holder_identity: Some("idbind-controller-0-abcde".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }),
    };
    let pp = PatchParams::apply("test").force();
    leases
        .patch("idbind-controller", &pp, &Patch::Apply(&lease_json(&lease)))
        .await
        .unwrap();
}

fn lease_json(lease: &Lease) -> serde_json::Value {
    let mut v = serde_json::to_value(lease).unwrap();
    v["apiVersion"] = json!("coordination.k8s.io/v1");
    v["kind"] = json!("Lease");
    v
}

async fn write_keys(stack: &Stack, keys: &KeySet) {
    let secrets: Api<Secret> = Api::namespaced(stack.admin_client(), IDBIND_NS);
    let data: BTreeMap<String, ByteString> = keys
        .to_secret_data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect();
    let mut secret = Secret {
        metadata: meta("idbind-signing-keys"),
        data: Some(data),
        ..Default::default()
    };
    secret.type_ = Some("Opaque".into());
    let mut v = serde_json::to_value(&secret).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    secrets
        .patch(
            "idbind-signing-keys",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&v),
        )
        .await
        .unwrap();
}

/// doctor for `sa`, with ARM access and the proxy at the stack's address.
fn doctor(stack: &Stack, sa: &str) -> assert_cmd::Command {
    doctor_via(stack, sa, &stack.proxy_url())
}

/// doctor with the proxy at `proxy_url`.
fn doctor_via(stack: &Stack, sa: &str, proxy_url: &str) -> assert_cmd::Command {
    let mut cmd = idbind();
    let sp = stack.azure().default_principal();
    cmd.args(["doctor", "-n", NAMESPACE, "--service-account", sa, "--kubeconfig"])
        .arg(stack.kube().kubeconfig_path())
        .args(["--proxy-url", proxy_url, "--sni-name", stack.sni_name()])
        .args([
            "--azure-tenant-id",
            &sp.tenant_id.to_string(),
            "--azure-client-id",
            &sp.client_id.to_string(),
        ])
        .args([
            "--azure-client-secret",
            &sp.client_secret,
            "--arm-endpoint",
            stack.azure().base_url(),
        ])
        .args(["--azure-authority-host", stack.azure().base_url()]);
    cmd
}

/// The status of each check, from `-o json`.
fn statuses(out: &std::process::Output) -> BTreeMap<String, String> {
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)));
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_checks(out: &std::process::Output, want: &[(&str, &str)]) {
    let got = statuses(out);
    for (name, status) in want {
        assert_eq!(
            got.get(*name).map(String::as_str),
            Some(*status),
            "check {name}: {}",
            show(out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_chain_and_names_each_breakage() {
    let stack = Stack::start().await.unwrap();
    controller_objects(&stack).await;

    // Healthy: every check passes, with a real exchange.
    let out = run(&mut doctor(&stack, ALLOWED_SA)).await;
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    for check in [
        "cluster",
        "crd",
        "controller",
        "service-account",
        "binding",
        "fic",
        "jwks",
        "rbac",
        "proxy",
        "exchange",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[PASS] ") && l[7..].starts_with(&format!("{check} "))),
            "{check} passes:\n{text}"
        );
    }
    assert!(text.contains("holds this cluster's current key east."), "{text}");
    assert!(text.contains("got an access token for client id"), "{text}");
    assert!(
        stderr(&out).is_empty(),
        "no progress when stderr is not a terminal: {}",
        show(&out)
    );

    // 1. RBAC does not allow the service account.
    let out = run(doctor(&stack, DENIED_SA).args(["-o", "json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(
        &out,
        &[
            ("binding", "pass"),
            ("rbac", "fail"),
            ("proxy", "pass"),
            ("exchange", "skip"),
        ],
    );
    let out = run(&mut doctor(&stack, DENIED_SA)).await;
    assert!(
        stdout(&out).contains(&format!("RBAC does not let {NAMESPACE}/{DENIED_SA}")),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains(&format!("--allow {NAMESPACE}/{DENIED_SA}")),
        "the fix: {}",
        show(&out)
    );

    // 2. The proxy's CA is not the one pods get.
    let other_ca =
        idbind_tls::CertificateAuthority::generate("another CA", Duration::from_secs(3600)).unwrap();
    let other_ca_file = stack.dir().join("other-ca.crt");
    std::fs::write(&other_ca_file, other_ca.cert_pem()).unwrap();
    let out = run(doctor(&stack, ALLOWED_SA)
        .arg("--ca-file")
        .arg(&other_ca_file)
        .args(["-o", "json"]))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(&out, &[("rbac", "pass"), ("proxy", "fail"), ("exchange", "skip")]);

    // 3. The proxy is not reachable.
    let dead = format!("https://127.0.0.1:{}", common::closed_port());
    let out = run(&mut doctor_via(&stack, ALLOWED_SA, &dead)).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!(
            "[FAIL] proxy            cannot reach the proxy at {dead}"
        )),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("port-forward svc/idbind-proxy"),
        "{}",
        show(&out)
    );

    // 4. The exchange itself fails: Entra is down (a scope the proxy has not cached; no ARM
    // flags, since ARM tokens come from the same Entra).
    stack.azure().set_fault(Route::EntraToken, Fault::outage());
    let out = run(idbind()
        .args([
            "doctor",
            "-n",
            NAMESPACE,
            "--service-account",
            ALLOWED_SA,
            "--kubeconfig",
        ])
        .arg(stack.kube().kubeconfig_path())
        .args(["--proxy-url", &stack.proxy_url(), "--sni-name", stack.sni_name()])
        .args(["--scope", "https://storage.azure.com/.default", "-o", "json"]))
    .await;
    stack.azure().clear_faults();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(
        &out,
        &[
            ("fic", "skip"),
            ("jwks", "pass"),
            ("proxy", "pass"),
            ("exchange", "fail"),
        ],
    );

    // 5. The JWKS does not hold this cluster's current key (keys rotated without publishing).
    let unpublished = KeySet::generate(ClusterName::parse("east").unwrap(), jiff::Timestamp::now()).unwrap();
    write_keys(&stack, &unpublished).await;
    let out = run(&mut doctor(&stack, ALLOWED_SA)).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "does not hold this cluster's current key {}",
            unpublished.signing_key().kid()
        )),
        "{text}"
    );
    assert!(text.contains("[SKIP] exchange"), "{text}");
    write_keys(&stack, &KeySet::from_dir(&stack.keys_dir()).unwrap()).await;

    // 6. The FIC no longer matches: its issuer changed.
    let identity = stack.identity().clone();
    let good = stack
        .azure()
        .fics(&identity.resource_id)
        .unwrap()
        .into_iter()
        .find(|f| f.name == "idbind")
        .unwrap();
    let wrong = FicInfo {
        issuer: format!("{}/", good.issuer),
        ..good.clone()
    };
    stack.azure().put_fic(&identity.resource_id, &wrong).unwrap();
    let out = run(doctor(&stack, ALLOWED_SA).args(["-o", "json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(&out, &[("fic", "fail"), ("jwks", "pass"), ("exchange", "skip")]);
    let out = run(&mut doctor(&stack, ALLOWED_SA)).await;
    assert!(
        stdout(&out).contains("does not match the binding: issuer"),
        "{}",
        show(&out)
    );
    stack.azure().put_fic(&identity.resource_id, &good).unwrap();

    // 7. The controller is gone: its Lease expired an hour ago.
    write_lease(
        &stack,
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
    )
    .await;
    let out = run(&mut doctor(&stack, ALLOWED_SA)).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(stdout(&out).contains("[FAIL] controller"), "{}", show(&out));
    assert!(stdout(&out).contains("expired: last renewed"), "{}", show(&out));
    write_lease(&stack, jiff::Timestamp::now()).await;

    // 8. The binding is not Ready.
    let bindings: Api<IdentityBinding> = Api::all(stack.admin_client());
    let b = bindings.get(stack.binding_name()).await.unwrap();
    let mut status = b.status.clone().unwrap();
    set_condition(
        &mut status.conditions,
        condition::ISSUER_PUBLISHED,
        false,
        "IssuerStoreUnavailable",
        "the issuer store answered 503",
        b.metadata.generation,
        jiff::Timestamp::now(),
    );
    set_condition(
        &mut status.conditions,
        condition::READY,
        false,
        "IssuerStoreUnavailable",
        "",
        b.metadata.generation,
        jiff::Timestamp::now(),
    );
    bindings
        .patch_status(
            stack.binding_name(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    let out = run(doctor(&stack, ALLOWED_SA).args(["-o", "json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(
        &out,
        &[
            ("binding", "fail"),
            ("fic", "skip"),
            ("jwks", "skip"),
            ("rbac", "pass"),
            ("exchange", "skip"),
        ],
    );
    let out = run(&mut doctor(&stack, ALLOWED_SA)).await;
    assert!(
        stdout(&out)
            .contains("IssuerPublished is False (IssuerStoreUnavailable): the issuer store answered 503"),
        "{}",
        show(&out)
    );

    // 9. An identity not bound to this cluster.
    let out =
        run(doctor(&stack, ALLOWED_SA).args(["--client-id", "44444444-4444-4444-4444-444444444444"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stdout(&out).contains("no IdentityBinding has client id 44444444-4444-4444-4444-444444444444"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("idbind binding create NAME --identity"),
        "{}",
        show(&out)
    );

    // 10. A service account without the client-id annotation.
    let sas: Api<ServiceAccount> = Api::namespaced(stack.admin_client(), NAMESPACE);
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("plain"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = run(doctor(&stack, "plain").args(["-o", "json"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(
        &out,
        &[
            ("service-account", "fail"),
            ("binding", "skip"),
            ("rbac", "skip"),
            ("exchange", "skip"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_without_the_crd_or_the_cluster() {
    let kube = idbind_testkit::KubeEmulator::start().await.unwrap();
    let out = run(idbind()
        .args([
            "doctor",
            "-o",
            "json",
            "--client-id",
            "44444444-4444-4444-4444-444444444444",
        ])
        .args(common::kube_flags(&kube)))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_checks(
        &out,
        &[
            ("cluster", "pass"),
            ("crd", "fail"),
            ("controller", "fail"),
            ("binding", "skip"),
        ],
    );
    let out = run(idbind().args(["doctor"]).args(common::kube_flags(&kube))).await;
    assert!(
        stdout(&out)
            .contains("fix: install it: kubectl apply -f deploy/crds/identitybindings.idbind.dev.yaml"),
        "{}",
        show(&out)
    );
    assert!(
        stdout(&out).contains("no Lease idbind/idbind-controller"),
        "{}",
        show(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let gone = common::unreachable_kubeconfig(dir.path());
    let out = run(idbind()
        .args(["doctor", "-n", "apps", "--service-account", "api"])
        .arg("--kubeconfig")
        .arg(&gone))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("[FAIL] cluster"), "{text}");
    assert!(
        text.contains("cannot reach the Kubernetes API at https://127.0.0.1:"),
        "{text}"
    );
    for later in [
        "crd",
        "controller",
        "service-account",
        "binding",
        "rbac",
        "proxy",
        "exchange",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("[SKIP] ") && l[7..].starts_with(&format!("{later} "))),
            "{later} skipped:\n{text}"
        );
    }
}
