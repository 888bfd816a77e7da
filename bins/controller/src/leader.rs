//! Leader election through a `coordination.k8s.io/v1` Lease, in the manner of client-go's
//! leaderelection package: the holder renews the Lease every retry period; a candidate takes it
//! over once it has seen the same record, unchanged, for a whole lease duration (measured on its
//! own monotonic clock, so clock skew between replicas does not matter); the holder releases it on
//! shutdown so a successor need not wait.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Settings of a [`LeaderElector`].
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives leadership up.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the holder renews.
    pub retry_period: Duration,
}

/// What a Lease record looked like when this candidate last saw it change.
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    duration: Duration,
    at: Instant,
}

/// Acquires, renews and releases a Lease; publishes whether this candidate leads.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
    leader: watch::Sender<bool>,
    ready: Option<crate::admin::ReadyFlag>,
}

impl LeaderElector {
    /// An elector for the Lease described by `settings`.
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self {
            api,
            settings,
            observed: None,
            leader: watch::Sender::new(false),
            ready: None,
        }
    }

    /// Marks `flag` ready once an election attempt got an answer from the API server.
    pub fn with_ready_flag(mut self, flag: crate::admin::ReadyFlag) -> Self {
        self.ready = Some(flag);
        self
    }

    /// Follows whether this candidate is the leader.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.settings.identity
    }

    /// One attempt to acquire or renew the Lease. `Ok(true)` when this candidate holds it now,
    /// `Ok(false)` when someone else validly does or a concurrent write won.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(lease) = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(Error::kube("reading the Lease"))?
        else {
            return self.create(now).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.settings.lease_duration);
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time || o.duration != duration);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time,
                duration,
                at: Instant::now(),
            });
        }
        let mine = holder.as_deref() == Some(self.settings.identity.as_str());
        if let (Some(_), false) = (&holder, mine) {
            let seen_at = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen_at.elapsed() < duration {
                return Ok(false);
            }
        }
        let mut new_spec = spec;
        if !mine {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        new_spec.holder_identity = Some(self.settings.identity.clone());
        new_spec.lease_duration_seconds = Some(duration_secs(self.settings.lease_duration));
        new_spec.renew_time = Some(MicroTime(now));
        let mut updated = lease;
        updated.spec = Some(new_spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                self.remember(&written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("updating the Lease")(e)),
        }
    }

    async fn create(&mut self, now: Timestamp) -> Result<bool> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(duration_secs(self.settings.lease_duration)),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.remember(&written);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("creating the Lease")(e)),
        }
    }

    fn remember(&mut self, lease: &Lease) {
        let spec = lease.spec.as_ref();
        self.observed = Some(Observed {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref().map(|t| t.0)),
            duration: self.settings.lease_duration,
            at: Instant::now(),
        });
    }

    /// Gives the Lease up if this candidate holds it, so a successor can take over at once.
    pub async fn release(&mut self) -> Result<()> {
        self.leader.send_replace(false);
        let Some(mut lease) = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(Error::kube("reading the Lease"))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(Error::kube("releasing the Lease")(e)),
        }
    }

    /// Campaigns until `shutdown`, then releases the Lease. While leading, renews every retry
    /// period and steps down when renewal has failed for the renew deadline or someone else took
    /// the Lease.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => break,
                r = tokio::time::timeout(self.settings.renew_deadline, self.try_acquire_or_renew()) => r,
            };
            let leading = self.is_leader();
            if let (Some(flag), Ok(Ok(_))) = (&self.ready, &attempt) {
                flag.set(true);
            }
            match attempt {
                Ok(Ok(true)) => {
                    last_renewal = Some(Instant::now());
                    if !leading {
                        tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became the leader");
                        self.leader.send_replace(true);
                    }
                }
                Ok(Ok(false)) => {
                    if leading {
                        tracing::warn!(identity = %self.settings.identity, "another candidate holds the Lease; stepping down");
                        self.leader.send_replace(false);
                    }
                    last_renewal = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "leader election attempt failed");
                    self.step_down_if_overdue(last_renewal);
                }
                Err(_) => {
                    tracing::warn!("leader election attempt timed out");
                    self.step_down_if_overdue(last_renewal);
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the Lease; the next leader waits for it to expire");
        }
    }

    fn step_down_if_overdue(&mut self, last_renewal: Option<Instant>) {
        if self.is_leader() && last_renewal.is_none_or(|t| t.elapsed() >= self.settings.renew_deadline) {
            tracing::warn!(identity = %self.settings.identity, "could not renew the Lease in time; stepping down");
            self.leader.send_replace(false);
        }
    }
}

fn duration_secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}
