//! Publishing a cluster's keys to an identity's issuer documents, safely against concurrent
//! writers (other clusters bound to the same identity).

use std::sync::Arc;
use std::time::Duration;

use idbind_model::{ClientId, IssuerBaseUrl, TenantId};

use crate::store::{IssuerStore, Precondition};
use crate::{ClusterName, DiscoveryDocument, Error, Jwk, Jwks, Result, discovery_path, jwks_path};

/// Bounds of the compare-and-swap retry loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per document before giving up with [`Error::Contended`].
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 20 attempts, 20 ms doubling to 1 s, each randomized to 50–100 %.
    fn default() -> Self {
        Self {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_backoff);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(millis / 2..=millis))
    }
}

/// What [`Publisher::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The identity's issuer URL.
    pub issuer: String,
    /// Whether the discovery document was written (it was missing or different).
    pub discovery_written: bool,
    /// Whether the JWKS was written (it did not hold exactly these keys of the cluster).
    pub jwks_written: bool,
    /// Keys in the JWKS afterwards (all clusters).
    pub total_keys: usize,
}

impl PublishOutcome {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        self.discovery_written || self.jwks_written
    }
}

/// What [`Publisher::withdraw`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawOutcome {
    /// The identity's issuer URL.
    pub issuer: String,
    /// Whether the JWKS was written (it held keys of the cluster).
    pub jwks_written: bool,
    /// Keys left in the JWKS (other clusters). Zero means no cluster can act as the identity
    /// through this issuer any more.
    pub remaining_keys: usize,
}

/// Publishes clusters' public keys to per-identity issuers in an [`IssuerStore`].
///
/// Each identity's JWKS is the union of the keys of the clusters bound to it. Updates are
/// compare-and-swap loops (read with ETag, merge, write `If-Match`), so clusters publishing to the
/// same JWKS at the same time never lose each other's keys.
#[derive(Clone, Debug)]
pub struct Publisher {
    store: Arc<dyn IssuerStore>,
    base: IssuerBaseUrl,
    retry: RetryPolicy,
}

impl Publisher {
    /// A publisher writing to `store`, whose documents are served at `base`.
    pub fn new(store: Arc<dyn IssuerStore>, base: IssuerBaseUrl) -> Self {
        Self {
            store,
            base,
            retry: RetryPolicy::default(),
        }
    }

    /// The same publisher with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The issuer base URL.
    pub fn base(&self) -> &IssuerBaseUrl {
        &self.base
    }

    /// The issuer URL of an identity: `{base}/{tenant}/{client}`.
    pub fn issuer(&self, tenant: &TenantId, client: &ClientId) -> String {
        self.base.issuer_for(tenant, client)
    }

    /// Makes `keys` the keys of `cluster` in the identity's JWKS (adding, replacing or removing
    /// the cluster's keys as needed; other clusters' keys are untouched) and writes the discovery
    /// document if it is missing or different. Writes nothing when all is already in place.
    /// Fails with [`Error::TooManyKeys`] if the JWKS would exceed 100 keys.
    pub async fn publish(
        &self,
        tenant: &TenantId,
        client: &ClientId,
        cluster: &ClusterName,
        keys: &[Jwk],
    ) -> Result<PublishOutcome> {
        let issuer = self.issuer(tenant, client);
        // Fail on foreign or duplicate keys before touching the store.
        Jwks::default().with_cluster_keys(cluster, keys)?;
        let (jwks_written, jwks) = self
            .update_jwks(&jwks_path(tenant, client), |jwks| {
                if jwks.has_exactly(cluster, keys) {
                    Ok(None)
                } else {
                    jwks.with_cluster_keys(cluster, keys).map(Some)
                }
            })
            .await?;
        let discovery_written = self.ensure_discovery(tenant, client).await?;
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        if jwks_written || discovery_written {
            tracing::info!(%issuer, %cluster, ?kids, jwks_written, discovery_written, "published cluster keys");
        }
        Ok(PublishOutcome {
            issuer,
            discovery_written,
            jwks_written,
            total_keys: jwks.keys.len(),
        })
    }

    /// Removes every key of `cluster` from the identity's JWKS. The documents stay (possibly with
    /// an empty key set), so concurrent publishers never race a deletion.
    pub async fn withdraw(
        &self,
        tenant: &TenantId,
        client: &ClientId,
        cluster: &ClusterName,
    ) -> Result<WithdrawOutcome> {
        let issuer = self.issuer(tenant, client);
        let (jwks_written, jwks) = self
            .update_jwks(&jwks_path(tenant, client), |jwks| {
                Ok(jwks
                    .cluster_keys(cluster)
                    .next()
                    .is_some()
                    .then(|| jwks.without_cluster(cluster)))
            })
            .await?;
        if jwks_written {
            tracing::info!(%issuer, %cluster, remaining = jwks.keys.len(), "withdrew cluster keys");
        }
        Ok(WithdrawOutcome {
            issuer,
            jwks_written,
            remaining_keys: jwks.keys.len(),
        })
    }

    /// The identity's JWKS, if published.
    pub async fn read_jwks(&self, tenant: &TenantId, client: &ClientId) -> Result<Option<Jwks>> {
        let path = jwks_path(tenant, client);
        match self.store.read(&path).await? {
            Some((bytes, _)) => Jwks::parse(&bytes, &path).map(Some),
            None => Ok(None),
        }
    }

    /// The identity's discovery document, if published.
    pub async fn read_discovery(
        &self,
        tenant: &TenantId,
        client: &ClientId,
    ) -> Result<Option<DiscoveryDocument>> {
        let path = discovery_path(tenant, client);
        match self.store.read(&path).await? {
            Some((bytes, _)) => DiscoveryDocument::parse(&bytes, &path).map(Some),
            None => Ok(None),
        }
    }

    /// Compare-and-swap loop over the JWKS at `path`: `change` returns the new JWKS, or `None` if
    /// nothing needs writing. Returns whether it wrote, and the JWKS as it now is.
    async fn update_jwks(
        &self,
        path: &str,
        change: impl Fn(&Jwks) -> Result<Option<Jwks>>,
    ) -> Result<(bool, Jwks)> {
        self.cas_loop(path, |current| {
            let jwks = match current {
                Some(bytes) => Jwks::parse(bytes, path)?,
                None => Jwks::default(),
            };
            Ok(match change(&jwks)? {
                Some(new) => {
                    let bytes = new.to_json();
                    (Some(bytes), new)
                }
                None => (None, jwks),
            })
        })
        .await
    }

    /// Writes the discovery document unless an equal one is there (a malformed one is replaced).
    async fn ensure_discovery(&self, tenant: &TenantId, client: &ClientId) -> Result<bool> {
        let path = discovery_path(tenant, client);
        let want = DiscoveryDocument::for_identity(&self.base, tenant, client);
        let (written, ()) = self
            .cas_loop(&path, |current| {
                let same = current
                    .is_some_and(|bytes| DiscoveryDocument::parse(bytes, &path).ok().as_ref() == Some(&want));
                Ok((if same { None } else { Some(want.to_json()) }, ()))
            })
            .await?;
        Ok(written)
    }

    /// Reads `path`, lets `decide` compute the bytes to write (or `None`), and writes them with
    /// `If-Match` the version read (`If-None-Match: *` if there was none), retrying with backoff
    /// when another writer got there first or the store failed transiently.
    async fn cas_loop<T>(
        &self,
        path: &str,
        decide: impl Fn(Option<&[u8]>) -> Result<(Option<Vec<u8>>, T)>,
    ) -> Result<(bool, T)> {
        let attempts = self.retry.max_attempts.max(1);
        for attempt in 1..=attempts {
            let result = async {
                let current = self.store.read(path).await?;
                let (write, value) = decide(current.as_ref().map(|(bytes, _)| bytes.as_slice()))?;
                let Some(bytes) = write else {
                    return Ok((false, value));
                };
                let precondition = match current {
                    Some((_, etag)) => Precondition::IfMatch(etag),
                    None => Precondition::IfNoneMatch,
                };
                self.store.write(path, &bytes, precondition).await?;
                Ok((true, value))
            }
            .await;
            match result {
                Ok(done) => return Ok(done),
                Err(error) if error.is_transient() && attempt < attempts => {
                    let delay = self.retry.backoff(attempt);
                    tracing::debug!(path, attempt, %error, ?delay, "retrying issuer document update");
                    tokio::time::sleep(delay).await;
                }
                Err(Error::PreconditionFailed { .. }) => {
                    return Err(Error::Contended {
                        path: path.to_owned(),
                        attempts,
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::Contended {
            path: path.to_owned(),
            attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn ids() -> (TenantId, ClientId) {
        (
            TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap(),
            ClientId::parse("22222222-2222-2222-2222-222222222222").unwrap(),
        )
    }

    fn jwk(kid: &str) -> Jwk {
        Jwk::rsa(kid, &[1, 2, 3], &[1, 0, 1])
    }

    fn setup() -> (Arc<MemoryStore>, Publisher) {
        let store = Arc::new(MemoryStore::new());
        let base = IssuerBaseUrl::parse("https://issuer.example.com").unwrap();
        (store.clone(), Publisher::new(store, base))
    }

    #[tokio::test]
    async fn publish_is_idempotent_and_reports_changes() {
        let (store, publisher) = setup();
        let (t, c) = ids();
        let a = ClusterName::parse("a").unwrap();
        let out = publisher.publish(&t, &c, &a, &[jwk("a.1")]).await.unwrap();
        assert!(out.jwks_written && out.discovery_written);
        assert_eq!(out.issuer, format!("https://issuer.example.com/{t}/{c}"));
        assert_eq!(store.mutation_count(), 2);

        let again = publisher.publish(&t, &c, &a, &[jwk("a.1")]).await.unwrap();
        assert!(!again.changed());
        assert_eq!(
            store.mutation_count(),
            2,
            "no write when the JWKS already holds exactly these keys"
        );

        let rotated = publisher
            .publish(&t, &c, &a, &[jwk("a.1"), jwk("a.2")])
            .await
            .unwrap();
        assert!(rotated.jwks_written && !rotated.discovery_written);
        assert_eq!(rotated.total_keys, 2);
        let doc = publisher.read_discovery(&t, &c).await.unwrap().unwrap();
        assert_eq!(
            doc.jwks_uri,
            format!("https://issuer.example.com/{t}/{c}/openid/v1/jwks")
        );
    }

    #[tokio::test]
    async fn withdraw_removes_only_this_cluster() {
        let (_, publisher) = setup();
        let (t, c) = ids();
        let a = ClusterName::parse("a").unwrap();
        let b = ClusterName::parse("b").unwrap();
        let none = publisher.withdraw(&t, &c, &a).await.unwrap();
        assert!(!none.jwks_written);
        publisher.publish(&t, &c, &a, &[jwk("a.1")]).await.unwrap();
        publisher.publish(&t, &c, &b, &[jwk("b.1")]).await.unwrap();
        let out = publisher.withdraw(&t, &c, &a).await.unwrap();
        assert!(out.jwks_written);
        assert_eq!(out.remaining_keys, 1);
        let jwks = publisher.read_jwks(&t, &c).await.unwrap().unwrap();
        assert_eq!(
            jwks.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["b.1"]
        );
        assert!(!publisher.withdraw(&t, &c, &a).await.unwrap().jwks_written);
        // The discovery document stays; the JWKS may become empty.
        assert_eq!(publisher.withdraw(&t, &c, &b).await.unwrap().remaining_keys, 0);
        assert!(publisher.read_discovery(&t, &c).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn invalid_keys_and_malformed_documents_write_nothing() {
        let (store, publisher) = setup();
        let (t, c) = ids();
        let a = ClusterName::parse("a").unwrap();
        let err = publisher.publish(&t, &c, &a, &[jwk("b.1")]).await.unwrap_err();
        assert!(matches!(err, Error::ForeignKey { .. }), "{err}");
        assert_eq!(store.mutation_count(), 0);
        store
            .write(&jwks_path(&t, &c), b"{\"keys\": 5}", Precondition::Any)
            .await
            .unwrap();
        let err = publisher.publish(&t, &c, &a, &[jwk("a.1")]).await.unwrap_err();
        assert!(matches!(err, Error::MalformedDocument { .. }), "{err}");
        assert_eq!(store.mutation_count(), 1);
    }

    #[tokio::test]
    async fn a_replaced_discovery_document_is_restored() {
        let (store, publisher) = setup();
        let (t, c) = ids();
        let a = ClusterName::parse("a").unwrap();
        store
            .write(&discovery_path(&t, &c), b"garbage", Precondition::Any)
            .await
            .unwrap();
        assert!(
            publisher
                .publish(&t, &c, &a, &[jwk("a.1")])
                .await
                .unwrap()
                .discovery_written
        );
        assert!(publisher.read_discovery(&t, &c).await.unwrap().is_some());
    }

    /// A store whose writes always lose, as if another writer always got there first.
    #[derive(Debug)]
    struct AlwaysLoses(MemoryStore);

    #[async_trait::async_trait]
    impl IssuerStore for AlwaysLoses {
        async fn read(&self, path: &str) -> Result<Option<(Vec<u8>, crate::ETag)>> {
            self.0.read(path).await
        }
        async fn write(&self, path: &str, _: &[u8], _: Precondition) -> Result<crate::ETag> {
            Err(Error::PreconditionFailed {
                path: path.to_owned(),
            })
        }
        async fn delete(&self, path: &str, p: Precondition) -> Result<()> {
            self.0.delete(path, p).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn contention_is_bounded() {
        let store = Arc::new(AlwaysLoses(MemoryStore::new()));
        let publisher = Publisher::new(store, IssuerBaseUrl::parse("https://i.example").unwrap()).with_retry(
            RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
            },
        );
        let (t, c) = ids();
        let err = publisher
            .publish(&t, &c, &ClusterName::parse("a").unwrap(), &[jwk("a.1")])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Contended { attempts: 3, .. }), "{err}");
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            let late = policy.backoff(40);
            assert!(
                (Duration::from_millis(150)..=Duration::from_millis(300)).contains(&late),
                "{late:?}"
            );
        }
    }
}
