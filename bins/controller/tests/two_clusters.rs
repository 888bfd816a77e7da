//! Two clusters (two API emulators, two controllers) bind the same identity at the same moment
//! through one Azure emulator and one issuer store: one FIC, both clusters' keys, both Ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Cluster, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_share_one_fic() {
    let world = World::start().await;
    let (east, west) = tokio::join!(Cluster::start(), Cluster::start());
    let east_ctl = east.start_controller(world.args("east", &[])).await;
    let west_ctl = west.start_controller(world.args("west", &[])).await;
    let id = world.identity("shared");

    tokio::join!(
        east.bind("shared", &id, &["team-a"]),
        west.bind("shared", &id, &["team-b"])
    );
    let (a, b) = tokio::join!(east.wait_ready("shared"), west.wait_ready("shared"));
    assert_eq!(
        a.status.unwrap().oidc_issuer_url,
        b.status.unwrap().oidc_issuer_url
    );

    let fics = world.fics(&id);
    assert_eq!(fics.len(), 1, "one FIC for both clusters: {fics:?}");
    let mut want = east.secret_kids().await;
    want.extend(west.secret_kids().await);
    want.sort();
    let mut have = world.kids(&id).await;
    have.sort();
    assert_eq!(have, want);
    assert!(have.iter().any(|k| k.starts_with("east.")) && have.iter().any(|k| k.starts_with("west.")));

    // One cluster unbinds: only its keys leave.
    east.bindings()
        .delete("shared", &Default::default())
        .await
        .unwrap();
    east.wait_gone("shared").await;
    assert_eq!(world.kids(&id).await, west.secret_kids().await);
    assert_eq!(world.fics(&id).len(), 1);

    east_ctl.shutdown().await.unwrap();
    west_ctl.shutdown().await.unwrap();
}
