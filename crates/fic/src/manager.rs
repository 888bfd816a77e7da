//! [`FicManager`]: the one federated identity credential idbind keeps on each identity.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use idbind_arm::{ArmClient, BoxError, FederatedCredential, FicProperties, RetryPolicy};
use idbind_model::{FicSpec, IdentityResourceId, MAX_FICS_PER_IDENTITY, validate_fic_name};
use tokio::time::Instant;

use crate::error::{Error, FicSummary, Result};
use crate::locks::LockMap;

/// How [`FicManager::ensure`] found or made the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// idbind created it now.
    Created,
    /// It already existed under the configured name (an earlier run, another cluster, or a write
    /// whose answer was lost).
    Present,
    /// A credential with the same issuer and subject existed under another name; it is used as is.
    Reused,
}

/// The result of [`FicManager::ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ensured {
    /// The credential that serves idbind's issuer and subject (its `name` says which one).
    pub fic: FederatedCredential,
    /// How it was found or made.
    pub outcome: EnsureOutcome,
    /// How many list-then-write rounds it took (1 without conflicts).
    pub attempts: u32,
}

/// The result of [`FicManager::delete_if_unused`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcOutcome {
    /// The credential named here was deleted.
    Deleted {
        /// Its name.
        name: String,
    },
    /// The caller's check said the credential is still in use; it was kept.
    InUse {
        /// Its name.
        name: String,
    },
    /// No credential with idbind's issuer and subject exists.
    Absent,
}

/// Keeps idbind's one federated identity credential per user-assigned identity.
///
/// Writes to one identity are serialized within the process (all clones of a manager share the
/// locks); writes from other processes are detected through ARM's 409 Conflict, and the identity's
/// credentials are listed again before any retry, so a credential that another cluster created
/// meanwhile is reused instead of written twice. Every step starts by listing, so a crash at any
/// point leaves nothing that the next call cannot pick up.
#[derive(Clone, Debug)]
pub struct FicManager {
    arm: ArmClient,
    locks: Arc<LockMap>,
    policy: RetryPolicy,
}

enum Retry {
    /// Wait (backoff), list again, write again.
    AfterBackoff(idbind_arm::Error),
    /// List again right away: the answer says someone else wrote (400 duplicate) or may have.
    AfterRelist(idbind_arm::Error),
}

impl FicManager {
    /// A manager writing through `arm`. Conflicts are retried per the default conflict policy:
    /// up to 10 rounds, backoff from 200 ms up to 5 s with full jitter, within 2 minutes.
    pub fn new(arm: ArmClient) -> Self {
        let policy = RetryPolicy::default()
            .max_attempts(10)
            .base_delay(Duration::from_millis(200))
            .max_delay(Duration::from_secs(5))
            .max_elapsed(Duration::from_secs(120));
        Self {
            arm,
            locks: Arc::default(),
            policy,
        }
    }

    /// Replaces the policy for conflict rounds (409, and 429/5xx/transport failures that persisted
    /// through the ARM client's own retries).
    pub fn with_conflict_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The ARM client.
    pub fn arm(&self) -> &ArmClient {
        &self.arm
    }

    /// Makes sure `identity` has a credential with `spec`'s issuer and subject.
    ///
    /// Reuses any credential with the same issuer and subject, whatever its name. Otherwise creates
    /// `spec.name`, unless that name is taken by a different credential ([`Error::NameTaken`]) or
    /// the identity already has the maximum number of credentials ([`Error::LimitReached`], listing
    /// them; no write is attempted).
    #[tracing::instrument(name = "fic_ensure", skip_all, fields(identity = %identity, fic = %spec.name))]
    pub async fn ensure(&self, identity: &IdentityResourceId, spec: &FicSpec) -> Result<Ensured> {
        validate_fic_name(&spec.name)?;
        let _guard = self.locks.lock(identity.as_str()).await;
        let properties = FicProperties::from(spec);
        let start = Instant::now();
        let mut rejected: Option<idbind_arm::Error> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fics = self.arm.list_fics(identity).await?;
            if let Some(found) = fics
                .iter()
                .find(|f| spec.matches(&f.properties.issuer, &f.properties.subject))
            {
                let outcome = if found.name.eq_ignore_ascii_case(&spec.name) {
                    EnsureOutcome::Present
                } else {
                    EnsureOutcome::Reused
                };
                if !found.properties.audiences.iter().any(|a| a == &spec.audience) {
                    tracing::warn!(name = %found.name, audiences = ?found.properties.audiences, wanted = %spec.audience,
                        "the federated identity credential has idbind's issuer and subject but not its audience");
                }
                tracing::info!(name = %found.name, ?outcome, attempt, "federated identity credential in place");
                return Ok(Ensured {
                    fic: found.clone(),
                    outcome,
                    attempts: attempt,
                });
            }
            if let Some(taken) = fics.iter().find(|f| f.name.eq_ignore_ascii_case(&spec.name)) {
                return Err(Error::NameTaken {
                    identity: identity.to_string(),
                    existing: summary(taken),
                    wanted_issuer: spec.issuer.clone(),
                    wanted_subject: spec.subject.clone(),
                });
            }
            if fics.len() >= MAX_FICS_PER_IDENTITY {
                return Err(Error::LimitReached {
                    identity: identity.to_string(),
                    limit: MAX_FICS_PER_IDENTITY,
                    issuer: spec.issuer.clone(),
                    subject: spec.subject.clone(),
                    existing: fics.iter().map(summary).collect(),
                });
            }
            if let Some(e) = rejected.take() {
                // ARM refused the write and the list does not explain why: the request is wrong.
                return Err(e.into());
            }
            let error = match self.arm.put_fic(identity, &spec.name, &properties).await {
                Ok(fic) => {
                    tracing::info!(name = %fic.name, attempt, "federated identity credential created");
                    return Ok(Ensured {
                        fic,
                        outcome: EnsureOutcome::Created,
                        attempts: attempt,
                    });
                }
                Err(e) => e,
            };
            match classify(error) {
                Ok(Retry::AfterRelist(e)) => {
                    tracing::info!(error = %e, attempt, "write refused; listing again");
                    if e.arm().is_some_and(|a| a.is_duplicate_issuer_subject()) {
                        // Someone else created it. If the list keeps missing it, pause between rounds.
                        if attempt > 1 {
                            self.backoff(identity, attempt, start, e).await?;
                        }
                    } else {
                        rejected = Some(e);
                    }
                }
                Ok(Retry::AfterBackoff(e)) => self.backoff(identity, attempt, start, e).await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The opt-in garbage collection: deletes idbind's credential on `identity` (the one with
    /// `spec`'s issuer and subject, whatever its name) if `unused` says it is no longer needed.
    ///
    /// `unused` must return `Ok(true)` only when no cluster key is left in the JWKS published at
    /// the identity's issuer (`idbind-issuer` reads it): then no cluster can mint an assertion the
    /// credential would accept, and deleting it changes nothing for anyone. It is called at most
    /// once, while this manager holds the identity's write lock, and only if the credential exists.
    /// An error from it deletes nothing ([`Error::UnusedCheck`]).
    ///
    /// Another cluster binding the identity between the check and the deletion loses the
    /// credential; its controller's next reconcile (which calls [`ensure`](Self::ensure)) creates it
    /// again.
    #[tracing::instrument(name = "fic_gc", skip_all, fields(identity = %identity, fic = %spec.name))]
    pub async fn delete_if_unused<F, Fut>(
        &self,
        identity: &IdentityResourceId,
        spec: &FicSpec,
        unused: F,
    ) -> Result<GcOutcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<bool, BoxError>>,
    {
        let _guard = self.locks.lock(identity.as_str()).await;
        let start = Instant::now();
        let mut unused = Some(unused);
        let mut deleting: Option<String> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let gone = |deleting: Option<String>| match deleting {
                // A delete whose answer was lost did its work.
                Some(name) => GcOutcome::Deleted { name },
                None => GcOutcome::Absent,
            };
            let fics = match self.arm.list_fics(identity).await {
                Ok(f) => f,
                Err(e) if e.is_not_found() => return Ok(gone(deleting)),
                Err(e) => return Err(e.into()),
            };
            let Some(found) = fics
                .iter()
                .find(|f| spec.matches(&f.properties.issuer, &f.properties.subject))
            else {
                return Ok(gone(deleting));
            };
            let name = found.name.clone();
            if let Some(check) = unused.take() {
                let is_unused = check().await.map_err(|source| Error::UnusedCheck {
                    identity: identity.to_string(),
                    source,
                })?;
                if !is_unused {
                    tracing::info!(name, "federated identity credential still in use; kept");
                    return Ok(GcOutcome::InUse { name });
                }
            }
            deleting = Some(name.clone());
            let Err(error) = self.arm.delete_fic(identity, &name).await else {
                tracing::info!(name, attempt, "unused federated identity credential deleted");
                return Ok(GcOutcome::Deleted { name });
            };
            match classify(error) {
                Ok(Retry::AfterBackoff(e)) => self.backoff(identity, attempt, start, e).await?,
                Ok(Retry::AfterRelist(e)) | Err(e) => return Err(e.into()),
            }
        }
    }

    async fn backoff(
        &self,
        identity: &IdentityResourceId,
        attempt: u32,
        start: Instant,
        error: idbind_arm::Error,
    ) -> Result<()> {
        let delay = self.policy.backoff(attempt);
        let too_late = start.elapsed().saturating_add(delay) > self.policy.get_max_elapsed();
        if attempt >= self.policy.get_max_attempts() || too_late {
            return Err(Error::GaveUp {
                identity: identity.to_string(),
                attempts: attempt,
                last: error,
            });
        }
        tracing::info!(error = %error, attempt, ?delay, "conflicting or uncertain write; retrying after a pause");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Which failed writes are worth another round.
fn classify(error: idbind_arm::Error) -> std::result::Result<Retry, idbind_arm::Error> {
    if error.is_conflict() || error.is_throttled() || error.is_uncertain() {
        Ok(Retry::AfterBackoff(error))
    } else if error.status() == Some(400) {
        // Duplicate issuer+subject (someone else created it), or the limit reached since we
        // listed: the next list tells which; any other 400 is returned after that list.
        Ok(Retry::AfterRelist(error))
    } else {
        Err(error)
    }
}

fn summary(f: &FederatedCredential) -> FicSummary {
    FicSummary {
        name: f.name.clone(),
        issuer: f.properties.issuer.clone(),
        subject: f.properties.subject.clone(),
    }
}
