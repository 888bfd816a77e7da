//! Leader election through a Lease: one leader at a time, release on shutdown, step-down when the
//! Lease is taken; only the leader reconciles, and a standby takes over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Cluster, World, eventually};
use idbind_controller::leader::{LeaderElector, LeaseSettings};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: "idbind".into(),
        name: "test-lease".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(50),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elector_acquires_releases_and_steps_down() {
    let cluster = Cluster::start().await;
    let mut a = LeaderElector::new(cluster.client.clone(), settings("a"));
    let mut b = LeaderElector::new(cluster.client.clone(), settings("b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap(), "the Lease is held");
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "a released Lease is free at once"
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "idbind");
    let lease = leases.get("test-lease").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("b"));
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));

    // Running electors: b leads; when someone else takes the Lease, b steps down.
    let token = CancellationToken::new();
    let b = LeaderElector::new(cluster.client.clone(), settings("b"));
    let mut b_rx = b.subscribe();
    let b_task = tokio::spawn(b.run(token.clone()));
    b_rx.wait_for(|l| *l).await.unwrap();
    let patch = serde_json::json!({"spec": {"holderIdentity": "intruder", "renewTime": jiff::Timestamp::now().to_string()}});
    leases
        .patch("test-lease", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    b_rx.wait_for(|l| !*l).await.unwrap();
    token.cancel();
    b_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let first = cluster
        .start_controller(world.args("east", &["--leader-identity", "one"]))
        .await;
    eventually("first leads", || async { first.is_leader().then_some(()) }).await;
    let second = cluster
        .start_controller(world.args("east", &["--leader-identity", "two"]))
        .await;
    let id = world.identity("ha");
    cluster.bind("ha", &id, &["team-a"]).await;
    cluster.wait_ready("ha").await;
    assert!(!second.is_leader());
    assert!(
        !second
            .metrics_text()
            .contains("idbind_controller_reconciles_total"),
        "the standby reconciled"
    );
    let admin = format!("http://{}/readyz", second.admin_addr());
    eventually("standby ready", || async {
        (common::http_get(&admin).await.0 == 200).then_some(())
    })
    .await;

    // Graceful shutdown releases the Lease; the standby takes over and reconciles new bindings.
    first.shutdown().await.unwrap();
    eventually("second leads", || async { second.is_leader().then_some(()) }).await;
    let other = world.identity("ha2");
    cluster.bind("ha2", &other, &["team-b"]).await;
    cluster.wait_ready("ha2").await;
    assert_eq!(world.fics(&id).len(), 1);
    assert_eq!(
        world.kids(&other).await,
        cluster.secret_kids().await,
        "the same keys, not a fork"
    );
    second.shutdown().await.unwrap();
}
