//! What triggers reconciles: changes to a binding or to its generated RBAC made by someone else,
//! not the controller's own status and RBAC writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, World, eventually, http_get, metric};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};

const BINDINGS: u64 = 8;
const SUCCESSES: &str = "idbind_controller_reconciles_total{result=\"success\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_do_not_trigger_but_someone_elses_rbac_changes_do() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster.start_controller(world.args("east", &[])).await;
    let id = world.identity("busy");
    let names = cluster.bind_many("busy", &id, BINDINGS as usize).await;
    for n in &names {
        cluster.wait_ready(n).await;
    }
    // Each binding: one reconcile adds the finalizer, one makes it Ready. Its status write and
    // the writes of the shared ClusterRoleBinding (one per binding, each owned by all of them)
    // trigger nothing. (With unfiltered triggers one run made 23.)
    let admin = format!("http://{}/metrics", ctl.admin_addr());
    let (_, metrics) = http_get(&admin).await;
    let reconciles = metric(&metrics, SUCCESSES);
    assert!(
        reconciles <= 2 * BINDINGS + 2,
        "{reconciles} reconciles for {BINDINGS} bindings"
    );

    // Someone deletes the generated ClusterRoleBinding: it is back long before the resync (5m).
    let crbs: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    let name = format!("use-mi-{}", id.client_id);
    crbs.delete(&name, &DeleteParams::default()).await.unwrap();
    let restored = eventually("the ClusterRoleBinding re-created", || async {
        crbs.get_opt(&name).await.unwrap()
    })
    .await;
    assert_eq!(restored.subjects.as_ref().map(Vec::len), Some(BINDINGS as usize));

    // Someone strips its subjects: they are put back.
    let mut edited = restored;
    edited.subjects = Some(Vec::new());
    crbs.replace(&name, &PostParams::default(), &edited)
        .await
        .unwrap();
    eventually("the subjects restored", || async {
        let crb = crbs.get(&name).await.unwrap();
        (crb.subjects.as_ref().map(Vec::len) == Some(BINDINGS as usize)).then_some(())
    })
    .await;
    ctl.shutdown().await.unwrap();
}
