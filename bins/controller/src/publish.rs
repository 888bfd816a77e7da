//! Publishing this cluster's keys to the issuers of bound identities, and withdrawing them.
//!
//! Writes to one identity's issuer are serialized inside the process, and every publish that is
//! not a binding's own reconcile re-checks, under that lock, that the identity is still bound:
//! a key-rotation publish can never re-add keys a finalizer has just withdrawn.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use idbind_issuer::{ClusterName, KeySet, PublishOutcome, Publisher, WithdrawOutcome};
use idbind_model::{ClientId, IdentityBinding, TenantId};
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::keyed_locks::KeyedLocks;
use crate::keys::Keys;
use crate::metrics::Metrics;

/// An identity whose issuer this cluster publishes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    /// Tenant of the identity.
    pub tenant: TenantId,
    /// Client id of the identity.
    pub client: ClientId,
}

impl IdentityKey {
    /// The identity a binding's status names, once resolved.
    pub fn of(binding: &IdentityBinding) -> Option<Self> {
        let status = binding.status.as_ref()?;
        let tenant = TenantId::parse(status.tenant_id.as_deref()?).ok()?;
        let client = ClientId::parse(status.client_id.as_deref()?).ok()?;
        Some(Self { tenant, client })
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The signing keys are not loaded yet.
    #[error("this cluster's signing keys are not loaded yet")]
    KeysNotLoaded,
    /// The issuer refused or failed.
    #[error(transparent)]
    Issuer(#[from] idbind_issuer::Error),
}

/// Publishes and withdraws this cluster's keys; knows which identities are bound in this cluster.
#[derive(Clone)]
pub struct PublishTargets {
    store: Store<IdentityBinding>,
    publisher: Arc<Publisher>,
    cluster: ClusterName,
    locks: Arc<KeyedLocks<IdentityKey>>,
    metrics: Arc<Metrics>,
    concurrency: usize,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for PublishTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishTargets")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PublishTargets {
    /// Targets drawn from the bindings in `store`; `synced` turns true once the store has been
    /// filled (a single task must wait on `Store::wait_until_ready`: it wakes only one waiter).
    pub fn new(
        store: Store<IdentityBinding>,
        synced: tokio::sync::watch::Receiver<bool>,
        publisher: Arc<Publisher>,
        cluster: ClusterName,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            publisher,
            cluster,
            locks: Arc::default(),
            metrics,
            concurrency: 8,
            synced,
        }
    }

    /// The publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// This cluster's name.
    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// Identities of the bindings that are not being deleted, with how many bindings name each.
    pub fn bound_identities(&self) -> BTreeMap<IdentityKey, usize> {
        let mut out = BTreeMap::new();
        for b in self.store.state() {
            if b.metadata.deletion_timestamp.is_none()
                && let Some(id) = IdentityKey::of(&b)
            {
                *out.entry(id).or_insert(0) += 1;
            }
        }
        out
    }

    /// Whether a binding other than `except_uid` that is not being deleted names the identity
    /// (through its resolved ids, or through the same resource ID when not resolved yet).
    pub fn bound_elsewhere(&self, id: IdentityKey, resource_id: &str, except_uid: Option<&str>) -> bool {
        self.store.state().iter().any(|b| {
            b.metadata.deletion_timestamp.is_none()
                && b.uid().as_deref() != except_uid
                && (IdentityKey::of(b) == Some(id)
                    || b.spec
                        .managed_identity
                        .resource_id
                        .eq_ignore_ascii_case(resource_id))
        })
    }

    /// Publishes `keys` to one identity (a binding's own reconcile).
    pub async fn publish(&self, id: IdentityKey, keys: &Keys) -> Result<PublishOutcome, PublishError> {
        let _serial = self.locks.lock(&id).await;
        self.publish_locked(id, keys).await
    }

    async fn publish_locked(&self, id: IdentityKey, keys: &Keys) -> Result<PublishOutcome, PublishError> {
        let guard = keys.read().await;
        let set: &KeySet = guard.as_deref().ok_or(PublishError::KeysNotLoaded)?;
        let result = self
            .publisher
            .publish(&id.tenant, &id.client, &self.cluster, &set.published_keys())
            .await;
        match &result {
            Ok(o) if o.changed() => self.metrics.jwks_write("publish", true),
            Ok(_) => {}
            Err(_) => self.metrics.jwks_write("publish", false),
        }
        Ok(result?)
    }

    /// Publishes `keys` to every identity still bound in this cluster; returns how many failed.
    /// Waits for the binding cache to be synced first, so no bound identity is missed.
    pub async fn publish_all(&self, keys: &Keys) -> usize {
        if self.synced.clone().wait_for(|s| *s).await.is_err() {
            return usize::MAX;
        }
        let ids: Vec<IdentityKey> = self.bound_identities().into_keys().collect();
        futures::stream::iter(ids)
            .map(|id| async move {
                let _serial = self.locks.lock(&id).await;
                if !self.bound_identities().contains_key(&id) {
                    return 0;
                }
                match self.publish_locked(id, keys).await {
                    Ok(_) => 0,
                    Err(e) => {
                        tracing::warn!(tenant = %id.tenant, client = %id.client, error = %e, "publishing keys failed");
                        1
                    }
                }
            })
            .buffer_unordered(self.concurrency)
            .fold(0usize, |acc, n| async move { acc + n })
            .await
    }

    /// Withdraws this cluster's keys from the identity unless another live binding of this
    /// cluster still names it. `Ok(None)` when it was left in place for that binding.
    pub async fn withdraw_unless_bound(
        &self,
        id: IdentityKey,
        resource_id: &str,
        except_uid: Option<&str>,
    ) -> Result<Option<WithdrawOutcome>, PublishError> {
        let _serial = self.locks.lock(&id).await;
        if self.bound_elsewhere(id, resource_id, except_uid) {
            return Ok(None);
        }
        let result = self
            .publisher
            .withdraw(&id.tenant, &id.client, &self.cluster)
            .await;
        match &result {
            Ok(o) if o.jwks_written => self.metrics.jwks_write("withdraw", true),
            Ok(_) => {}
            Err(_) => self.metrics.jwks_write("withdraw", false),
        }
        Ok(Some(result?))
    }
}
