//! The concurrent publisher scenario, run against each store.

use std::sync::Arc;

use idbind_issuer::{ClusterName, IssuerStore, Publisher};
use idbind_model::IssuerBaseUrl;

use super::{fake_jwk, ids};

/// 10 clusters publish two keys each to one identity at once; all 20 keys are there afterwards.
/// Then clusters 0–4 withdraw at once; exactly the keys of clusters 5–9 remain.
pub async fn ten_publish_then_five_withdraw(inner: Arc<dyn IssuerStore>) {
    let counting = Arc::new(CountingStore::new(inner));
    let store: Arc<dyn IssuerStore> = counting.clone();
    let base = IssuerBaseUrl::parse("https://issuer.example.com").unwrap();
    let (tenant, client) = ids();
    let cluster = |i: usize| ClusterName::parse(&format!("cluster-{i}")).unwrap();
    let keys = |i: usize| {
        vec![
            fake_jwk(&format!("cluster-{i}.a")),
            fake_jwk(&format!("cluster-{i}.b")),
        ]
    };

    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let publisher = Publisher::new(store.clone(), base.clone());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            publisher.publish(&tenant, &client, &cluster(i), &keys(i)).await
        }));
    }
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert!(outcome.jwks_written);
    }
    let publisher = Publisher::new(store.clone(), base.clone());
    let jwks = publisher.read_jwks(&tenant, &client).await.unwrap().unwrap();
    let mut want: Vec<String> = (0..10).flat_map(|i| keys(i).into_iter().map(|k| k.kid)).collect();
    want.sort();
    let have: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(have, want, "every cluster's keys survive concurrent publishing");
    assert!(
        publisher
            .read_discovery(&tenant, &client)
            .await
            .unwrap()
            .is_some()
    );

    let barrier = Arc::new(tokio::sync::Barrier::new(5));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let publisher = Publisher::new(store.clone(), base.clone());
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            publisher.withdraw(&tenant, &client, &cluster(i)).await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap().jwks_written);
    }
    let jwks = publisher.read_jwks(&tenant, &client).await.unwrap().unwrap();
    let mut want: Vec<String> = (5..10).flat_map(|i| keys(i).into_iter().map(|k| k.kid)).collect();
    want.sort();
    let have: Vec<String> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
    assert_eq!(have, want, "exactly the clusters that did not withdraw remain");
    eprintln!(
        "compare-and-swap writes lost to concurrent publishers (and retried): {}",
        counting.lost.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Wraps a store and counts lost compare-and-swap writes, to show the scenario really contends.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn IssuerStore>,
    pub lost: std::sync::atomic::AtomicU64,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn IssuerStore>) -> Self {
        Self {
            inner,
            lost: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl IssuerStore for CountingStore {
    async fn read(&self, path: &str) -> idbind_issuer::Result<Option<(Vec<u8>, idbind_issuer::ETag)>> {
        self.inner.read(path).await
    }
    async fn write(
        &self,
        path: &str,
        bytes: &[u8],
        precondition: idbind_issuer::Precondition,
    ) -> idbind_issuer::Result<idbind_issuer::ETag> {
        let result = self.inner.write(path, bytes, precondition).await;
        if matches!(result, Err(idbind_issuer::Error::PreconditionFailed { .. })) {
            self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
    async fn delete(
        &self,
        path: &str,
        precondition: idbind_issuer::Precondition,
    ) -> idbind_issuer::Result<()> {
        self.inner.delete(path, precondition).await
    }
}
