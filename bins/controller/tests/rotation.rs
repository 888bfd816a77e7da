//! Key rotation on a controllable clock: each step is stored in the Secret and re-published to
//! every bound identity, and a new key never signs before it is published everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, World, eventually};
use idbind_controller::clock::ManualClock;
use idbind_controller::runtime::RuntimeBuilder;
use idbind_issuer::{ETag, IssuerStore, Precondition};
use parking_lot::Mutex;

/// A store that fails writes under one path prefix while told to.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn IssuerStore>,
    failing: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl IssuerStore for FlakyStore {
    async fn read(&self, path: &str) -> idbind_issuer::Result<Option<(Vec<u8>, ETag)>> {
        self.inner.read(path).await
    }
    async fn write(
        &self,
        path: &str,
        bytes: &[u8],
        precondition: Precondition,
    ) -> idbind_issuer::Result<ETag> {
        if self
            .failing
            .lock()
            .as_deref()
            .is_some_and(|p| path.starts_with(p))
        {
            return Err(idbind_issuer::Error::Io {
                op: "writing",
                path: PathBuf::from(path),
                source: std::io::Error::other("injected failure"),
            });
        }
        self.inner.write(path, bytes, precondition).await
    }
    async fn delete(&self, path: &str, precondition: Precondition) -> idbind_issuer::Result<()> {
        self.inner.delete(path, precondition).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_republishes_to_every_bound_identity() {
    let world = World::start().await;
    let cluster = Cluster::start().await;
    let clock = ManualClock::new(jiff::Timestamp::now());
    let store = Arc::new(FlakyStore {
        inner: world.store.clone(),
        failing: Mutex::new(None),
    });
    let args = world.args(
        "east",
        &[
            "--key-rotation-interval",
            "1h",
            "--key-propagation-delay",
            "10m",
            "--key-retirement-delay",
            "10m",
        ],
    );
    let ctl = RuntimeBuilder::new(args)
        .client(cluster.client.clone())
        .clock(Arc::new(clock.clone()))
        .issuer_store(store.clone())
        .start()
        .await
        .unwrap();
    let a = world.identity("alpha");
    let b = world.identity("beta");
    cluster.bind("alpha", &a, &["team-a"]).await;
    cluster.bind("beta", &b, &["team-b"]).await;
    cluster.wait_ready("alpha").await;
    cluster.wait_ready("beta").await;
    let old = cluster.current_kid().await;
    assert_eq!(world.kids(&a).await, std::slice::from_ref(&old));
    assert_eq!(world.kids(&b).await, std::slice::from_ref(&old));

    // Publishing to beta fails; the rotation becomes due.
    *store.failing.lock() = Some(format!("{}/{}/", b.tenant_id, b.client_id));
    clock.advance(Duration::from_secs(3600 + 1));
    let kids = eventually("a next key in the Secret and in alpha's JWKS", || async {
        let kids = cluster.secret_kids().await;
        (kids.len() == 2 && sorted(world.kids(&a).await) == sorted(kids.clone())).then_some(kids)
    })
    .await;
    let new = kids[1].clone();
    assert_eq!(kids[0], old);
    // The propagation delay passes: activation is due.
    clock.advance(Duration::from_secs(600 + 1));
    // Activation is due, but beta does not have the new key: the old key still signs.
    // Wait until the manager has failed to publish to beta a few times after activation was due
    // (counted in metrics), then check it kept signing with the old key.
    let failed_publishes = || {
        let text = ctl.metrics_text();
        text.lines()
            .find(|l| {
                l.starts_with("idbind_controller_jwks_writes_total{operation=\"publish\",result=\"error\"}")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = failed_publishes();
    eventually("more failed publishes to beta", || async {
        (failed_publishes() >= before + 3).then_some(())
    })
    .await;
    assert_eq!(
        cluster.current_kid().await,
        old,
        "activated before the key was published everywhere"
    );
    assert_eq!(world.kids(&b).await, std::slice::from_ref(&old));

    // Beta recovers: the new key reaches it, then it is activated.
    *store.failing.lock() = None;
    eventually("activation after publishing everywhere", || async {
        (cluster.current_kid().await == new).then_some(())
    })
    .await;
    let both = sorted(vec![old.clone(), new.clone()]);
    assert_eq!(sorted(world.kids(&b).await), both);
    assert_eq!(sorted(world.kids(&a).await), both);

    // Retirement: the old key leaves every JWKS.
    clock.advance(Duration::from_secs(601));
    eventually("the old key withdrawn everywhere", || async {
        (world.kids(&a).await == [new.clone()] && world.kids(&b).await == [new.clone()]).then_some(())
    })
    .await;
    assert_eq!(cluster.secret_kids().await, std::slice::from_ref(&new));
    let metrics = ctl.metrics_text();
    for step in ["PublishNext", "Activate", "Retire"] {
        assert!(
            metrics.contains(&format!(
                "idbind_controller_key_rotation_steps_total{{step=\"{step}\"}} 1"
            )),
            "{metrics}"
        );
    }
    ctl.shutdown().await.unwrap();
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
