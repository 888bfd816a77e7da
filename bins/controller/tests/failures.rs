//! The 20-FIC limit and an ARM outage each produce their documented condition, and the binding
//! recovers once the cause is removed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Cluster, World};
use idbind_arm::{ArmClient, ClientSecretCredential, CloudConfig, PUBLIC_ARM_SCOPE, RetryPolicy};
use idbind_controller::status::reason;
use idbind_emulator::{Fault, FicInfo, Route};
use idbind_model::condition;
use kube::api::{Patch, PatchParams};

fn arm(world: &World) -> ArmClient {
    let base = world.azure.base_url();
    let cloud = CloudConfig::custom(base, base, PUBLIC_ARM_SCOPE).unwrap();
    let sp = world.azure.default_principal();
    let cred = ClientSecretCredential::new(
        &cloud.authority_host,
        sp.tenant_id,
        sp.client_id,
        sp.client_secret,
    )
    .unwrap();
    ArmClient::new(cloud, Arc::new(cred), RetryPolicy::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fic_limit_is_reported_and_recovers() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster.start_controller(world.args("east", &[])).await;
    let id = world.identity("crowded");
    for i in 0..20 {
        let fic = FicInfo::new(
            &format!("other-{i}"),
            &format!("https://other.example/{i}"),
            "system:serviceaccount:x:y",
        );
        world.azure.put_fic(&id.resource_id, &fic).unwrap();
    }

    cluster.bind("crowded", &id, &["team-a"]).await;
    let b = cluster
        .wait_condition(
            "crowded",
            condition::FEDERATED_CREDENTIAL_READY,
            reason::FIC_LIMIT_REACHED,
        )
        .await;
    let c = b.condition(condition::FEDERATED_CREDENTIAL_READY).unwrap();
    assert_eq!(c.status, "False");
    for name in ["other-0", "other-7", "other-19"] {
        assert!(
            c.message.contains(name),
            "the message names the existing FICs: {}",
            c.message
        );
    }
    assert!(c.message.contains("20"), "{}", c.message);
    let ready = b.condition(condition::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::FIC_LIMIT_REACHED)
    );
    assert_eq!(
        world.azure.counters().total(Route::ArmFicPut),
        0,
        "never a blind PUT at the limit"
    );

    arm(&world).delete_fic(&id.resource_id, "other-3").await.unwrap();
    cluster.wait_ready("crowded").await;
    let fics = world.fics(&id);
    assert_eq!(fics.len(), 20);
    assert!(fics.iter().any(|f| f.name == "idbind"));
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_outage_is_reported_and_recovers() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    // Every reconcile asks ARM (no shared answers), so the outage after Ready is seen at once.
    let ctl = cluster
        .start_controller(world.args("east", &["--arm-cache-ttl", "0s"]))
        .await;
    let id = world.identity("flaky");
    for route in [
        Route::ArmIdentityGet,
        Route::ArmFicList,
        Route::ArmFicPut,
        Route::ArmFicGet,
    ] {
        world.azure.set_fault(route, Fault::outage());
    }

    cluster.bind("flaky", &id, &["team-a"]).await;
    let b = cluster
        .wait_condition("flaky", condition::IDENTITY_RESOLVED, reason::ARM_UNAVAILABLE)
        .await;
    let c = b.condition(condition::IDENTITY_RESOLVED).unwrap();
    assert_eq!(c.status, "False");
    assert!(c.message.contains("will retry"), "{}", c.message);
    assert_eq!(
        b.condition(condition::READY).unwrap().reason,
        reason::ARM_UNAVAILABLE
    );
    assert_eq!(
        b.condition(condition::FEDERATED_CREDENTIAL_READY).unwrap().reason,
        reason::WAITING_FOR_IDENTITY
    );

    world.azure.clear_faults();
    let b = cluster.wait_ready("flaky").await;
    assert_eq!(
        b.condition(condition::IDENTITY_RESOLVED).unwrap().reason,
        reason::RESOLVED
    );
    assert_eq!(world.fics(&id).len(), 1);

    // An outage after the binding is Ready is reported on the step but keeps the binding Ready:
    // its FIC and keys are still in place and the proxy must keep serving it.
    world.azure.set_fault(Route::ArmIdentityGet, Fault::outage());
    let touch = serde_json::json!({ "metadata": { "annotations": { "test/touch": "1" } } });
    cluster
        .bindings()
        .patch("flaky", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    let b = cluster
        .wait_condition("flaky", condition::IDENTITY_RESOLVED, reason::ARM_UNAVAILABLE)
        .await;
    let ready = b.condition(condition::READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reason::BOUND)
    );
    assert!(ready.message.contains("failed transiently"), "{}", ready.message);
    assert_eq!(
        b.condition(condition::FEDERATED_CREDENTIAL_READY).unwrap().status,
        "True",
        "steps that did not run keep their last result"
    );
    world.azure.clear_faults();
    let b = cluster
        .wait_condition("flaky", condition::IDENTITY_RESOLVED, reason::RESOLVED)
        .await;
    assert!(
        !b.condition(condition::READY)
            .unwrap()
            .message
            .contains("transiently")
    );

    let (_, metrics) = common::http_get(&format!("http://{}/metrics", ctl.admin_addr())).await;
    assert!(
        metrics.contains("idbind_controller_arm_requests_total{operation=\"get_identity\",status=\"503\"}"),
        "{metrics}"
    );
    ctl.shutdown().await.unwrap();
}
