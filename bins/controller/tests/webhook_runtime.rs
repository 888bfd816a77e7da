//! The webhook and certificate tasks plugged into the whole controller, as `idbind-controller`
//! runs them: flags, leader tasks, the webhook server on every replica, readiness and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{Cluster, World, eventually};
use idbind_controller::runtime::RuntimeBuilder;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::client::danger::ServerCertVerifier as _;
use serde_json::json;

const CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";

#[tokio::test]
async fn the_controller_serves_the_webhook_and_publishes_the_proxy_tls() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let export = tempfile::tempdir().unwrap();
    let export_dir = export.path().display().to_string();
    let args = world.args(
        "east",
        &[
            "--webhook-listen",
            "127.0.0.1:0",
            "--webhook-url",
            "https://127.0.0.1:0",
            "--sni-name",
            "proxy.idbind.test",
            "--proxy-tls-extra-names",
            "localhost,127.0.0.1",
            "--proxy-tls-export-dir",
            &export_dir,
            "--default-tenant-id",
            "pod-tenant",
        ],
    );
    let builder = RuntimeBuilder::new(args.clone()).client(cluster.client.clone());
    let running = idbind_controller::webhook::install(builder, &args)
        .await
        .unwrap()
        .start()
        .await
        .unwrap();

    // The leader creates the configuration with the port the webhook bound.
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(cluster.client.clone());
    let configuration = eventually("the MutatingWebhookConfiguration", || async {
        configurations.get_opt("idbind").await.unwrap()
    })
    .await;
    let url = configuration.webhooks.as_ref().unwrap()[0]
        .client_config
        .url
        .clone()
        .unwrap();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/mutate-v1-pod"),
        "{url}"
    );
    assert!(!url.contains(":0/"), "{url}");
    eventually("readiness", || async {
        running.health().is_ready().then_some(())
    })
    .await;

    // A pod through the API is mutated with the flags' values.
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "team-a");
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("web".into()),
            annotations: Some(BTreeMap::from([(
                "azure.workload.identity/client-id".into(),
                CLIENT_ID.into(),
            )])),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "web-0",
            "labels": { "azure.workload.identity/use": "true" },
            "annotations": { "azure.workload.identity/use-identity-binding": "true" },
        },
        "spec": { "serviceAccountName": "web", "containers": [{ "name": "app", "image": "app:1" }] },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "team-a");
    let stored = pods.create(&PostParams::default(), &pod).await.unwrap();
    let env: BTreeMap<String, String> = stored.spec.unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["AZURE_CLIENT_ID"], CLIENT_ID);
    assert_eq!(env["AZURE_TENANT_ID"], "pod-tenant");
    assert_eq!(env["AZURE_KUBERNETES_SNI_NAME"], "proxy.idbind.test");
    assert_eq!(
        env["AZURE_KUBERNETES_TOKEN_PROXY"],
        "https://idbind-proxy.idbind.svc"
    );
    assert_eq!(
        env["AZURE_AUTHORITY_HOST"],
        format!("{}/", world.azure.base_url().trim_end_matches('/'))
    );

    // The proxy's bundle is in every namespace, and the TLS Secret is mirrored into the export
    // directory for a proxy running outside Kubernetes.
    let bundle = eventually("the bundle in team-b", || async {
        let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "team-b");
        cms.get_opt("idbind-proxy-ca")
            .await
            .unwrap()?
            .data?
            .get("ca.crt")
            .cloned()
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "idbind");
    let tls = secrets.get("idbind-proxy-tls").await.unwrap().data.unwrap();
    eventually("the exported TLS files", || async {
        let read = |name: &str| std::fs::read(export.path().join(name)).ok();
        (read("tls.crt")? == tls["tls.crt"].0
            && read("tls.key")? == tls["tls.key"].0
            && read("ca.crt")? == bundle.as_bytes())
        .then_some(())
    })
    .await;
    // The exported certificate is valid, under the bundle, for the SNI name and the extra names.
    let leaf = idbind_tls::parse_certs(std::str::from_utf8(&tls["tls.crt"].0).unwrap())
        .unwrap()
        .remove(0);
    let mut roots = rustls::RootCertStore::empty();
    for ca in idbind_tls::parse_certs(&bundle).unwrap() {
        roots.add(ca).unwrap();
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), idbind_tls::provider())
            .build()
            .unwrap();
    for name in [
        "proxy.idbind.test",
        "idbind-proxy.idbind.svc",
        "localhost",
        "127.0.0.1",
    ] {
        let name = rustls::pki_types::ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
            .unwrap();
    }

    let metrics = running.metrics_text();
    assert!(
        metrics.contains("idbind_webhook_admissions_total{result=\"mutated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("idbind_certificate_expiry_timestamp_seconds{component=\"proxy\",certificate=\"ca\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idbind_certificate_bundle_certificates{component=\"webhook\"} 1"),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}
