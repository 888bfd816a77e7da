//! Kubernetes API trouble is never the caller's fault: unreachable is 503, a proxy without the
//! RBAC it needs is 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use idbind_exchange::{Exchanger, ExchangerConfig, Metrics, Rejection};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use support::{World, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_a_transient_503() {
    let world = World::start().await;
    let token = world.app_token().await;
    world.kube.shutdown();
    let err = world.exchanger.exchange(world.request(&token)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    assert_eq!(err.rejection(), Rejection::Unavailable);
    assert!(err.retry_after().is_some());
    assert_eq!(world.entra_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_missing_tokenreview_rbac_is_a_500() {
    let world = World::start().await;
    // A proxy identity that may watch bindings but not create TokenReviews.
    world.kube.add_user_token("weak-token", "weak-proxy", &[]);
    let admin = world.admin.clone();
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some("watch-bindings".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["idbind.dev".into()]),
            resources: Some(vec!["identitybindings".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("watch-bindings".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "watch-bindings".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "weak-proxy".into(),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    let config = ExchangerConfig::new(world.azure.base_url().parse().unwrap(), world.keys_dir.path());
    let weak = world.kube.client_for_token("weak-token").unwrap();
    let exchanger = Exchanger::start_with_metrics(weak, config, Metrics::default()).unwrap();
    exchanger.wait_synced().await;
    let client_id = world.bound.identity.client_id;
    eventually("the binding is indexed", || {
        matches!(
            exchanger.bindings().lookup(&client_id),
            idbind_exchange::BindingLookup::Served(_)
        )
    })
    .await;
    assert!(exchanger.readiness().is_ready());

    let token = world.app_token().await;
    let err = exchanger.exchange(world.request(&token)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.error_code()),
        (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
    );
    assert_eq!(err.rejection(), Rejection::Internal);
    assert!(
        err.description().contains("TokenReview") && err.description().contains("RBAC"),
        "{err}"
    );
    assert_eq!(world.entra_calls(), 0);
}
