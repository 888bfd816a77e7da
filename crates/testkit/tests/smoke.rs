//! Smoke test: the emulator serves a ConfigMap round trip over HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use idbind_testkit::KubeEmulator;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

#[tokio::test]
async fn configmap_round_trip() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("a".into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.resource_version.is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
}
