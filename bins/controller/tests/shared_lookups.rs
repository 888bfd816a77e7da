//! The bindings of one identity share its ARM answers: binding it many times, and reconciling
//! those bindings again, reads the identity and lists its FICs once, not once per binding.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, World, eventually, http_get, metric};
use idbind_emulator::Route;
use kube::api::{Patch, PatchParams};

const BINDINGS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_of_one_identity_share_its_arm_answers() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster.start_controller(world.args("east", &[])).await;
    let id = world.identity("shared");
    let names = cluster.bind_many("shared", &id, BINDINGS).await;
    for n in &names {
        cluster.wait_ready(n).await;
    }
    let counters = world.azure.counters();
    assert_eq!(
        counters.total(Route::ArmIdentityGet),
        1,
        "one identity read for {BINDINGS} bindings"
    );
    assert_eq!(
        counters.total(Route::ArmFicList),
        1,
        "one FIC list for {BINDINGS} bindings"
    );
    assert_eq!(counters.successes(Route::ArmFicPut), 1);
    assert_eq!(world.fics(&id).len(), 1);

    // Reconcile every binding again: the answers are reused.
    let admin = format!("http://{}/metrics", ctl.admin_addr());
    let (_, before) = http_get(&admin).await;
    let reconciles_before = metric(&before, "idbind_controller_reconciles_total{result=\"success\"}");
    let touch = serde_json::json!({ "metadata": { "annotations": { "test/touch": "1" } } });
    for n in &names {
        cluster
            .bindings()
            .patch(n, &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .unwrap();
    }
    let metrics = eventually("every binding reconciled again", || async {
        let (_, text) = http_get(&admin).await;
        let done = metric(&text, "idbind_controller_reconciles_total{result=\"success\"}");
        (done >= reconciles_before + BINDINGS as u64).then_some(text)
    })
    .await;
    let counters = world.azure.counters();
    assert_eq!(counters.total(Route::ArmIdentityGet), 1);
    assert_eq!(counters.total(Route::ArmFicList), 1);
    let shared = metric(
        &metrics,
        "idbind_controller_arm_lookups_total{operation=\"get_identity\",source=\"shared\"}",
    );
    assert!(shared >= 2 * BINDINGS as u64 - 1, "{metrics}");
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_ttl_asks_arm_on_every_reconcile() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let ctl = cluster
        .start_controller(world.args("east", &["--arm-cache-ttl", "0s"]))
        .await;
    let id = world.identity("unshared");
    cluster.bind("unshared", &id, &["team-a/app"]).await;
    cluster.wait_ready("unshared").await;
    let reads = world.azure.counters().total(Route::ArmIdentityGet);
    let touch = serde_json::json!({ "metadata": { "annotations": { "test/touch": "1" } } });
    cluster
        .bindings()
        .patch("unshared", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .unwrap();
    eventually("the identity read again", || async {
        (world.azure.counters().total(Route::ArmIdentityGet) > reads).then_some(())
    })
    .await;
    ctl.shutdown().await.unwrap();
}
