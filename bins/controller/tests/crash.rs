//! Crash safety: the controller stops dead after the FIC write and before publishing; a restarted
//! controller converges with no duplicate FIC and no lost key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{Cluster, World, eventually};
use futures::future::BoxFuture;
use idbind_controller::reconcile::{Hooks, Step};
use idbind_controller::runtime::RuntimeBuilder;
use idbind_emulator::Route;
use tokio::sync::Notify;

/// Stops every reconcile forever right after the FIC step, and tells the test.
struct StopAfterFic(Arc<Notify>);

impl Hooks for StopAfterFic {
    fn after_step(&self, _name: &str, step: Step) -> BoxFuture<'static, ()> {
        if step == Step::FederatedCredential {
            self.0.notify_one();
            Box::pin(std::future::pending())
        } else {
            Box::pin(std::future::ready(()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_fic_write_converges_without_duplicates() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let id = world.identity("orders");
    let reached = Arc::new(Notify::new());
    let args = world.args("east", &["--leader-identity", "east-controller"]);
    let first = RuntimeBuilder::new(args.clone())
        .client(cluster.client.clone())
        .hooks(Arc::new(StopAfterFic(reached.clone())))
        .start()
        .await
        .unwrap();
    cluster.bind("orders", &id, &["team-a"]).await;
    reached.notified().await;

    // The FIC was written, nothing was published, and the binding is not Ready.
    assert_eq!(world.fics(&id).len(), 1);
    assert!(world.kids(&id).await.is_empty());
    // The key manager creates the signing key Secret on its own, maybe after the FIC write.
    let keys_before = eventually("the signing key Secret", || async {
        let kids = cluster.secret_kids().await;
        (kids.len() == 1).then_some(kids)
    })
    .await;
    assert!(!cluster.get("orders").await.unwrap().is_ready());

    // Crash: nothing is released, nothing finishes.
    first.abort();

    let second = cluster.start_controller(args).await;
    cluster.wait_ready("orders").await;
    assert_eq!(world.fics(&id).len(), 1, "no duplicate FIC");
    assert_eq!(
        world.azure.counters().successes(Route::ArmFicPut),
        1,
        "the FIC was written once"
    );
    assert_eq!(
        cluster.secret_kids().await,
        keys_before,
        "the key survived the crash"
    );
    assert_eq!(world.kids(&id).await, keys_before, "the key is published");
    second.shutdown().await.unwrap();
}
