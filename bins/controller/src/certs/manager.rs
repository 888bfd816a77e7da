//! Drives a [`CertState`] kept in a Secret: creates it when missing, takes each step when it is
//! due, and has a [`Projection`] make the world reflect it (trust bundles, serving Secrets,
//! webhook `caBundle`).
//!
//! Order of writes, on every step: the projection of the **new** state first, then the Secret.
//! So a recorded moment ("the new CA joined the bundle at T") is never earlier than the
//! projection that makes it true, and a failure between the two leaves a projection of a state
//! that is either stored or harmless (an extra CA nobody signs with, a serving certificate the
//! bundle already trusts); the next round projects the stored state again. Only the leader runs
//! a manager, and every Secret write is conditioned on the resourceVersion it read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::CertMetrics;
use super::state::{CertPolicy, CertState, CertStep, Subject};
use crate::clock::Clock;
use crate::{Error, Result};

/// Makes the world reflect a [`CertState`]. Must be idempotent and cheap when nothing changed.
pub trait Projection: Send + Sync + 'static {
    /// Writes whatever derives from `state` (bundle ConfigMaps, serving Secrets, `caBundle`).
    fn publish<'a>(&'a self, state: &'a CertState) -> BoxFuture<'a, Result<()>>;
}

/// Where the state lives and how it rotates.
#[derive(Clone, Debug)]
pub struct CertSettings {
    /// Namespace of the state Secret.
    pub namespace: String,
    /// Name of the state Secret.
    pub secret_name: String,
    /// Name of these certificates in logs, labels and metrics (`proxy`, `webhook`).
    pub component: String,
    /// Validity periods and delays.
    pub policy: CertPolicy,
    /// Names of the serving certificate and the CA.
    pub subject: Subject,
    /// Wait after a failure before trying again.
    pub retry_delay: Duration,
    /// Look at the Secret and the projection at least this often.
    pub recheck_interval: Duration,
}

/// Label on the state Secret naming its component.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Keeps one [`CertState`] Secret and its projection up to date.
pub struct CertManager {
    api: Api<Secret>,
    settings: CertSettings,
    clock: Arc<dyn Clock>,
    projection: Arc<dyn Projection>,
    observed: watch::Sender<Option<Arc<CertState>>>,
    wake: Arc<Notify>,
    metrics: Option<CertMetrics>,
}

impl CertManager {
    /// A manager of the Secret named in `settings`.
    pub fn new(
        client: kube::Client,
        settings: CertSettings,
        clock: Arc<dyn Clock>,
        projection: Arc<dyn Projection>,
    ) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self {
            api,
            settings,
            clock,
            projection,
            observed: watch::Sender::new(None),
            wake: Arc::new(Notify::new()),
            metrics: None,
        }
    }

    /// Counts steps and exports expiry times into `metrics`.
    pub fn with_metrics(mut self, metrics: CertMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Follows the state after each successful round.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<CertState>>> {
        self.observed.subscribe()
    }

    /// A handle that makes [`CertManager::run`] start a round now (e.g. a namespace appeared and
    /// needs the bundle).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn what(&self) -> String {
        format!("Secret {}/{}", self.settings.namespace, self.settings.secret_name)
    }

    /// One round: load or create the state, project it, take every step that is due (projecting
    /// each before storing it). Returns the state and when the next step is due.
    pub async fn reconcile(&self) -> Result<(Arc<CertState>, Timestamp)> {
        let (policy, subject) = (&self.settings.policy, &self.settings.subject);
        let (mut state, mut rv) = self.load_or_create().await?;
        self.projection.publish(&state).await?;
        loop {
            let now = self.clock.now();
            let Some(step) = state.next_step_due(now, policy, subject) else {
                break;
            };
            let mut next = state.clone();
            next.apply(step, now, policy, subject)?;
            self.projection.publish(&next).await?;
            rv = self.store(&next, &rv).await?;
            tracing::info!(
                component = %self.settings.component,
                %step,
                phase = %next.phase(),
                ca = %short(next.current_fingerprint()),
                bundle = ?next.bundle_fingerprints().iter().map(|f| short(f)).collect::<Vec<_>>(),
                "certificate step"
            );
            if let Some(m) = &self.metrics {
                m.step(&self.settings.component, step);
            }
            state = next;
        }
        if let Some(m) = &self.metrics {
            m.observe(&self.settings.component, &state);
        }
        let at = state.next_step_at(policy, subject).1;
        let state = Arc::new(state);
        self.observed.send_replace(Some(state.clone()));
        Ok((state, at))
    }

    async fn load_or_create(&self) -> Result<(CertState, String)> {
        let name = &self.settings.secret_name;
        if let Some(found) = self
            .api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {}", self.what())))?
        {
            return self.parse(&found);
        }
        let state = CertState::generate(&self.settings.subject, &self.settings.policy, self.clock.now())?;
        self.projection.publish(&state).await?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (
                        idbind_model::MANAGED_BY_LABEL.to_owned(),
                        idbind_model::MANAGED_BY_VALUE.to_owned(),
                    ),
                    (
                        COMPONENT_LABEL.to_owned(),
                        format!("{}-ca", self.settings.component),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(to_data(&state)),
            ..Secret::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                tracing::info!(
                    component = %self.settings.component,
                    secret = %self.what(),
                    ca = %short(state.current_fingerprint()),
                    "created a CA and a serving certificate"
                );
                Ok((state, created.metadata.resource_version.unwrap_or_default()))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let found = self
                    .api
                    .get(name)
                    .await
                    .map_err(Error::kube(format!("reading {}", self.what())))?;
                self.parse(&found)
            }
            Err(e) => Err(Error::kube(format!("creating {}", self.what()))(e)),
        }
    }

    fn parse(&self, secret: &Secret) -> Result<(CertState, String)> {
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let state = CertState::from_secret_data(&data, &self.what())?;
        Ok((
            state,
            secret.metadata.resource_version.clone().unwrap_or_default(),
        ))
    }

    async fn store(&self, state: &CertState, resource_version: &str) -> Result<String> {
        let mut secret = self
            .api
            .get(&self.settings.secret_name)
            .await
            .map_err(Error::kube(format!("reading {}", self.what())))?;
        if secret.metadata.resource_version.as_deref() != Some(resource_version) {
            return Err(Error::Conflict(format!(
                "{} changed since it was read",
                self.what()
            )));
        }
        secret.data = Some(to_data(state));
        match self
            .api
            .replace(&self.settings.secret_name, &PostParams::default(), &secret)
            .await
        {
            Ok(written) => Ok(written.metadata.resource_version.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(format!(
                "{} changed since it was read",
                self.what()
            ))),
            Err(e) => Err(Error::kube(format!("updating {}", self.what()))(e)),
        }
    }

    /// Runs rounds until `shutdown`: at each due step, at least every recheck interval, when
    /// woken, and after a failure once the retry delay has passed.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let wait = match self.reconcile().await {
                Ok((_, at)) => Wake::At(at),
                Err(e) => {
                    tracing::warn!(component = %self.settings.component, error = %e, "certificate management failed; retrying");
                    if let Some(m) = &self.metrics {
                        m.failure(&self.settings.component);
                    }
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
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.recheck_interval) => {}
            }
        }
    }
}

enum Wake {
    At(Timestamp),
    After(Duration),
}

/// The first 12 hex digits of a fingerprint, for logs.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

fn to_data(state: &CertState) -> BTreeMap<String, ByteString> {
    state
        .to_secret_data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect()
}

/// A stable name for a step in metrics.
pub fn step_label(step: CertStep) -> &'static str {
    match step {
        CertStep::IssueServing => "issue_serving",
        CertStep::IntroduceCa => "introduce_ca",
        CertStep::SwitchCa => "switch_ca",
        CertStep::RetireCa => "retire_ca",
        CertStep::Regenerate => "regenerate",
    }
}
