//! This cluster's signing keys: kept in a Secret of the idbind namespace, created when missing,
//! rotated through `idbind-issuer`'s state machine, and published to every bound identity's
//! issuer at each step (a new key everywhere before it signs; a retired key removed everywhere).
//!
//! Only the leader runs the [`KeyManager`]; every Secret write is conditioned on the
//! resourceVersion it read, so two replicas can never fork the key set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use idbind_issuer::{ClusterName, KeySet, RotationPolicy, RotationStep};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::{Notify, RwLock, RwLockReadGuard};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::publish::PublishTargets;
use crate::{Error, Result};

/// Shared handle on the loaded key set. Readers hold [`Keys::read`] across a publish, so the
/// key manager can only switch key sets between publishes: nobody ever publishes a key set older
/// than the one the manager has just published everywhere.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    inner: Arc<RwLock<Option<Arc<KeySet>>>>,
    loaded: Arc<Notify>,
}

impl Keys {
    /// The key set, locked against replacement while the guard lives.
    pub async fn read(&self) -> RwLockReadGuard<'_, Option<Arc<KeySet>>> {
        self.inner.read().await
    }

    /// A snapshot of the key set, if loaded.
    pub async fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.inner.read().await.clone()
    }

    /// Replaces the key set (waits for in-flight publishes of the old one).
    pub async fn set(&self, keys: KeySet) {
        *self.inner.write().await = Some(Arc::new(keys));
        self.loaded.notify_waiters();
    }

    /// Waits until a key set is loaded.
    pub async fn wait_loaded(&self) -> Arc<KeySet> {
        loop {
            let notified = self.loaded.notified();
            if let Some(k) = self.snapshot().await {
                return k;
            }
            notified.await;
        }
    }
}

/// Where the key Secret lives and how keys rotate.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub secret_name: String,
    /// This cluster's name (prefix of its key ids).
    pub cluster: ClusterName,
    /// Rotation timing.
    pub policy: RotationPolicy,
    /// Wait after a failed Kubernetes or issuer write before trying again.
    pub retry_delay: Duration,
    /// Re-read the Secret at least this often (someone may have replaced it).
    pub recheck_interval: Duration,
}

/// Label on the Secret.
const SECRET_COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Loads, creates and rotates the key Secret.
pub struct KeyManager {
    api: Api<Secret>,
    settings: KeySettings,
    keys: Keys,
    clock: Arc<dyn Clock>,
    targets: PublishTargets,
    metrics: Arc<Metrics>,
}

impl KeyManager {
    /// A manager for the Secret in `settings`, feeding `keys`.
    pub fn new(
        client: kube::Client,
        settings: KeySettings,
        keys: Keys,
        clock: Arc<dyn Clock>,
        targets: PublishTargets,
        metrics: Arc<Metrics>,
    ) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self {
            api,
            settings,
            keys,
            clock,
            targets,
            metrics,
        }
    }

    /// Reads the key set, creating the Secret with a new key when it does not exist.
    /// Returns the key set and the Secret's resourceVersion.
    pub async fn load_or_create(&self) -> Result<(KeySet, String)> {
        let name = &self.settings.secret_name;
        let what = || format!("Secret {}/{name}", self.settings.namespace);
        if let Some(found) = self
            .api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {}", what())))?
        {
            return self.parse(&found);
        }
        let keys = KeySet::generate(self.settings.cluster.clone(), self.clock.now()).map_err(|e| {
            Error::InvalidData {
                what: "new signing key".into(),
                reason: e.to_string(),
            }
        })?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (
                        idbind_model::MANAGED_BY_LABEL.to_owned(),
                        idbind_model::MANAGED_BY_VALUE.to_owned(),
                    ),
                    (SECRET_COMPONENT_LABEL.to_owned(), "signing-keys".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(to_data(&keys)),
            ..Secret::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                tracing::info!(secret = %what(), kid = keys.signing_key().kid(), "created the signing key Secret");
                let rv = created.metadata.resource_version.unwrap_or_default();
                Ok((keys, rv))
            }
            // Someone else created it first: use theirs.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let found = self
                    .api
                    .get(name)
                    .await
                    .map_err(Error::kube(format!("reading {}", what())))?;
                self.parse(&found)
            }
            Err(e) => Err(Error::kube(format!("creating {}", what()))(e)),
        }
    }

    fn parse(&self, secret: &Secret) -> Result<(KeySet, String)> {
        let what = format!(
            "signing key Secret {}/{}",
            self.settings.namespace, self.settings.secret_name
        );
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let keys = KeySet::from_secret_data(&data).map_err(|e| Error::InvalidData {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        if keys.cluster() != &self.settings.cluster {
            return Err(Error::InvalidData {
                what,
                reason: format!(
                    "it holds keys of cluster '{}' but this controller runs with --cluster-name {}; \
                     use another --signing-key-secret or fix --cluster-name",
                    keys.cluster(),
                    self.settings.cluster
                ),
            });
        }
        Ok((keys, secret.metadata.resource_version.clone().unwrap_or_default()))
    }

    /// Writes `keys` over the Secret at `resource_version`. A conflict means someone else wrote
    /// first: the caller re-reads.
    async fn store(&self, keys: &KeySet, resource_version: &str) -> Result<String> {
        let name = &self.settings.secret_name;
        let mut secret = self
            .api
            .get(name)
            .await
            .map_err(Error::kube(format!("reading Secret {name}")))?;
        if secret.metadata.resource_version.as_deref() != Some(resource_version) {
            return Err(Error::Conflict(format!(
                "Secret {name} changed since it was read"
            )));
        }
        secret.data = Some(to_data(keys));
        match self.api.replace(name, &PostParams::default(), &secret).await {
            Ok(written) => Ok(written.metadata.resource_version.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(format!(
                "Secret {name} changed since it was read"
            ))),
            Err(e) => Err(Error::kube(format!("updating Secret {name}"))(e)),
        }
    }

    /// Takes the rotation step that is due now, if any: writes the Secret first (so no key is
    /// ever published that is not stored), then switches the shared key set. Returns the step.
    pub async fn step_if_due(
        &self,
        keys: &mut KeySet,
        resource_version: &mut String,
    ) -> Result<Option<RotationStep>> {
        let now = self.clock.now();
        let Some(step) = keys.next_step_due(now, &self.settings.policy) else {
            return Ok(None);
        };
        let mut next = keys.clone();
        next.apply(step, now).map_err(|e| Error::InvalidData {
            what: "key rotation".into(),
            reason: e.to_string(),
        })?;
        *resource_version = self.store(&next, resource_version).await?;
        tracing::info!(cluster = %self.settings.cluster, %step, kid = next.signing_key().kid(), "key rotation step");
        self.metrics.rotation_step(&step.to_string());
        *keys = next;
        Ok(Some(step))
    }

    /// Runs until `shutdown`: load (or create) the keys, publish them to every bound identity,
    /// and take each rotation step when it is due — never activating a key before the publish
    /// of the set containing it succeeded everywhere.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut published: Option<Vec<String>> = None;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match self.round(&mut published).await {
                Ok(at) => at,
                Err(e) => {
                    tracing::warn!(error = %e, "signing key management failed; retrying");
                    Wake::After(self.settings.retry_delay)
                }
            };
            let sleep = match wait {
                Wake::At(at) => self.clock.sleep_until(at),
                Wake::After(d) => Box::pin(tokio::time::sleep(d)),
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep => {}
                () = tokio::time::sleep(self.settings.recheck_interval) => {}
            }
        }
    }

    async fn round(&self, published: &mut Option<Vec<String>>) -> Result<Wake> {
        let (mut keys, mut rv) = self.load_or_create().await?;
        loop {
            let kids: Vec<String> = keys.published_keys().iter().map(|k| k.kid.clone()).collect();
            if self.keys.snapshot().await.as_deref() != Some(&keys) {
                self.keys.set(keys.clone()).await;
            }
            if published.as_ref() != Some(&kids) {
                let failed = self.targets.publish_all(&self.keys).await;
                if failed > 0 {
                    tracing::warn!(
                        failed,
                        "could not publish the signing keys to every bound identity; retrying"
                    );
                    return Ok(Wake::After(self.settings.retry_delay));
                }
                *published = Some(kids);
            }
            match self.step_if_due(&mut keys, &mut rv).await? {
                Some(_) => continue,
                None => return Ok(Wake::At(keys.next_step_at(&self.settings.policy).1)),
            }
        }
    }
}

enum Wake {
    At(jiff::Timestamp),
    After(Duration),
}

fn to_data(keys: &KeySet) -> BTreeMap<String, ByteString> {
    keys.to_secret_data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect()
}
