//! Authentication and authorization through the server: anonymous 401, real 403s for a service
//! account whose RBAC lacks a permission (and success once granted), TokenRequest, discovery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{emulator_with_crd, eventually, status};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::discovery::{Discovery, Scope};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn anonymous_and_unknown_tokens_get_401() {
    let emulator = KubeEmulator::start().await.unwrap();
    let anonymous = emulator.client_for_token("").unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(anonymous);
    let err = status(api.list(&ListParams::default()).await);
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
    let bogus: Api<ConfigMap> = Api::default_namespaced(emulator.client_for_token("not-a-token").unwrap());
    assert_eq!(status(bogus.list(&ListParams::default()).await).code, 401);
}

#[tokio::test]
async fn service_account_clients_get_403_until_rbac_allows() {
    let emulator = KubeEmulator::start().await.unwrap();
    let admin = emulator.client().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("controller"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let as_sa = emulator.service_account_client("default", "controller").unwrap();
    let cms: Api<ConfigMap> = Api::all(as_sa.clone());
    let denied = status(cms.list(&ListParams::default()).await);
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "configmaps is forbidden: User \"system:serviceaccount:default:controller\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope"
    );

    let role = ClusterRole {
        metadata: meta("cm-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into(), "watch".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cm-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": "default"}],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    assert!(cms.list(&ListParams::default()).await.is_ok());
    // ...but not writes: the ClusterRole lacks `create`.
    let ns_cms: Api<ConfigMap> = Api::namespaced(as_sa.clone(), "default");
    let write = status(
        ns_cms
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: meta("x"),
                    ..Default::default()
                },
            )
            .await,
    );
    assert_eq!(write.code, 403);

    // Deleting the service account invalidates its tokens (TokenReview checks it still exists).
    sas.delete("controller", &Default::default()).await.unwrap();
    eventually("token rejected after the service account is gone", || async {
        (status(cms.list(&ListParams::default()).await).code == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn token_request_and_token_review_round_trip() {
    let emulator = KubeEmulator::start().await.unwrap();
    let admin = emulator.client().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("app"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": ["api://AKSIdentityBinding"], "expirationSeconds": 3600}
    }))
    .unwrap();
    let minted = sas
        .create_token_request("app", &PostParams::default(), &request)
        .await
        .unwrap();
    let token: String = serde_json::to_value(&minted).unwrap()["status"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let review: TokenReview = serde_json::from_value(serde_json::json!({
        "spec": {"token": token, "audiences": ["api://AKSIdentityBinding"]}
    }))
    .unwrap();
    let reviews: Api<TokenReview> = Api::all(admin.clone());
    let reviewed =
        serde_json::to_value(reviews.create(&PostParams::default(), &review).await.unwrap()).unwrap();
    assert_eq!(reviewed["status"]["authenticated"], true);
    assert_eq!(
        reviewed["status"]["user"]["username"],
        "system:serviceaccount:default:app"
    );
    // A token for another audience cannot be used against the API server.
    let api_with_it: Api<ConfigMap> = Api::default_namespaced(emulator.client_for_token(&token).unwrap());
    assert_eq!(status(api_with_it.list(&ListParams::default()).await).code, 401);
    // The token subresource of a missing service account is 404.
    assert_eq!(
        status(
            sas.create_token_request("ghost", &PostParams::default(), &request)
                .await
        )
        .code,
        404
    );
}

#[tokio::test]
async fn discovery_legacy_and_aggregated() {
    let emulator = emulator_with_crd().await;
    let client = emulator.client().unwrap();
    for discovery in [
        Discovery::new(client.clone()).run().await.unwrap(),
        Discovery::new(client.clone()).run_aggregated().await.unwrap(),
    ] {
        let (ar, caps) = discovery
            .resolve_gvk(&kube::core::GroupVersionKind::gvk(
                "idbind.dev",
                "v1alpha1",
                "IdentityBinding",
            ))
            .unwrap();
        assert_eq!(ar.plural, "identitybindings");
        assert_eq!(caps.scope, Scope::Cluster);
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "identitybindings/status" || s.plural == "status")
        );
        let (cm, caps) = discovery
            .resolve_gvk(&kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"))
            .unwrap();
        assert_eq!(
            (cm.plural.as_str(), caps.scope.clone()),
            ("configmaps", Scope::Namespaced)
        );
        assert!(discovery.has_group("coordination.k8s.io"));
        assert!(discovery.has_group("events.k8s.io"));
    }
    let version = client.apiserver_version().await.unwrap();
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "32"));
}
