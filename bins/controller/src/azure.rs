//! ARM access for the reconciler: identity resolution and the FIC, counted in metrics, with ARM
//! failures turned into condition reasons and messages a user can act on.
//!
//! Answers are shared per identity through a [`Memo`]: the bindings of one identity cost ARM one
//! identity read and one FIC list per reuse period, not one per binding and reconcile.

use std::sync::Arc;

use idbind_arm::{ArmClient, Identity};
use idbind_model::{FicSpec, IdentityResourceId};

use crate::memo::{Memo, MemoTtl, Source};
use crate::metrics::Metrics;
use crate::status::{StepResult, reason};

/// The ARM client and FIC manager, with metrics and per-identity memos of their answers.
#[derive(Clone, Debug)]
pub struct Azure {
    arm: ArmClient,
    fic: idbind_fic::FicManager,
    metrics: Arc<Metrics>,
    identities: Arc<Memo<IdentityResourceId, Result<Identity, StepResult>>>,
    fics: Arc<Memo<(IdentityResourceId, FicSpec), Result<EnsuredFic, StepResult>>>,
}

/// What ensuring the FIC found.
#[derive(Clone, Debug)]
pub struct EnsuredFic {
    /// Name of the FIC that trusts the issuer (idbind's, or a pre-existing one).
    pub name: String,
    /// Whether this call created it.
    pub created: bool,
}

impl Azure {
    /// Wraps a client and a manager built on it; answers are reused per `ttl`.
    pub fn new(arm: ArmClient, fic: idbind_fic::FicManager, metrics: Arc<Metrics>, ttl: MemoTtl) -> Self {
        Self {
            arm,
            fic,
            metrics,
            identities: Arc::new(Memo::new(ttl)),
            fics: Arc::new(Memo::new(ttl)),
        }
    }

    /// The ARM client.
    pub fn arm(&self) -> &ArmClient {
        &self.arm
    }

    /// The FIC manager.
    pub fn fic(&self) -> &idbind_fic::FicManager {
        &self.fic
    }

    /// The identity (shared with the other bindings of it); failures become an
    /// `IdentityResolved` step result.
    pub async fn resolve(&self, id: &IdentityResourceId) -> Result<Identity, StepResult> {
        let (result, source) = self
            .identities
            .get(id, Result::is_ok, || self.read_identity(id))
            .await;
        self.metrics.arm_lookup("get_identity", source == Source::Fetched);
        result
    }

    /// Forgets what is known about the identity and its FIC (after deleting the FIC, or when no
    /// binding names the identity any more).
    pub fn forget(&self, id: &IdentityResourceId) {
        self.identities.forget(id);
        self.fics.forget_where(|(fic_of, _)| fic_of == id);
    }

    async fn read_identity(&self, id: &IdentityResourceId) -> Result<Identity, StepResult> {
        let result = self.arm.get_identity(id).await;
        self.metrics.arm_call("get_identity", status_of(&result));
        result.map_err(|e| {
            if e.is_not_found() {
                StepResult::failed(
                    reason::IDENTITY_NOT_FOUND,
                    format!(
                        "ARM has no user-assigned identity {id} (subscription {}, resource group {}); \
                         check spec.managedIdentity.resourceId. idbind retries with backoff.",
                        id.subscription(),
                        id.resource_group()
                    ),
                )
            } else {
                classify(
                    &e,
                    &format!("read the identity {id}"),
                    "Microsoft.ManagedIdentity/userAssignedIdentities/read",
                    id,
                )
            }
        })
    }

    /// Ensures the one FIC for the identity (once for all its bindings); failures become a
    /// `FederatedCredentialReady` result. `created` is true only for the lookup that created it.
    pub async fn ensure_fic(
        &self,
        id: &IdentityResourceId,
        spec: &FicSpec,
    ) -> Result<EnsuredFic, StepResult> {
        let key = (id.clone(), spec.clone());
        let (result, source) = self
            .fics
            .get(&key, Result::is_ok, || self.write_fic(id, spec))
            .await;
        let fetched = source == Source::Fetched;
        self.metrics.arm_lookup("ensure_fic", fetched);
        result.map(|fic| EnsuredFic {
            created: fic.created && fetched,
            ..fic
        })
    }

    async fn write_fic(&self, id: &IdentityResourceId, spec: &FicSpec) -> Result<EnsuredFic, StepResult> {
        match self.fic.ensure(id, spec).await {
            Ok(ensured) => {
                let created = ensured.outcome == idbind_fic::EnsureOutcome::Created;
                if created {
                    self.metrics.fic_write("create", true);
                }
                Ok(EnsuredFic {
                    name: ensured.fic.name,
                    created,
                })
            }
            Err(idbind_fic::Error::LimitReached { existing, limit, .. }) => {
                let names: Vec<&str> = existing.iter().map(|f| f.name.as_str()).collect();
                Err(StepResult::failed(
                    reason::FIC_LIMIT_REACHED,
                    format!(
                        "identity {} already has {} federated identity credentials ({}), the most Entra allows \
                         ({limit}); idbind needs one more, with issuer {}. Delete one that is no longer used; \
                         idbind retries with backoff.",
                        id.name(),
                        names.len(),
                        names.join(", "),
                        spec.issuer
                    ),
                ))
            }
            Err(e) => {
                self.metrics.fic_write("create", false);
                let permission =
                    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write";
                let action = format!("write federated identity credentials of {id}");
                Err(match &e {
                    idbind_fic::Error::Arm(arm) | idbind_fic::Error::GaveUp { last: arm, .. } => {
                        classify(arm, &action, permission, id)
                    }
                    idbind_fic::Error::NameTaken { .. } => StepResult::failed(
                        reason::FIC_NAME_TAKEN,
                        format!("{e}; idbind retries with backoff"),
                    ),
                    _ => StepResult::failed(reason::ARM_ERROR, format!("{e}; idbind retries with backoff")),
                })
            }
        }
    }
}

fn status_of<T>(result: &idbind_arm::Result<T>) -> Option<u16> {
    match result {
        Ok(_) => Some(200),
        Err(e) => e.status(),
    }
}

/// Turns an ARM failure into a step result: what failed, why, and what to do.
pub fn classify(
    e: &idbind_arm::Error,
    action: &str,
    permission: &str,
    id: &IdentityResourceId,
) -> StepResult {
    if e.is_credential() {
        return StepResult::failed(
            reason::ARM_AUTHENTICATION_FAILED,
            format!(
                "the controller could not get an ARM token: {e}. Check --azure-tenant-id, --azure-client-id and \
                 the client secret or federated token of the controller; idbind retries with backoff."
            ),
        );
    }
    match e.status() {
        Some(401) => StepResult::failed(
            reason::ARM_AUTHENTICATION_FAILED,
            format!("ARM rejected the controller's token: {e}. idbind retries with backoff."),
        ),
        Some(403) => StepResult::failed(
            reason::ARM_AUTHORIZATION_FAILED,
            format!(
                "the controller's Azure principal may not {action}: it needs {permission} on {scope} \
                 (for example the Managed Identity Contributor role on resource group {rg}). ARM said: {msg}",
                scope = id,
                rg = id.resource_group(),
                msg = e.arm().map_or_else(|| e.to_string(), |a| a.message.clone()),
            ),
        ),
        Some(s) if s == 408 || s == 429 || s >= 500 => StepResult::failed(
            reason::ARM_UNAVAILABLE,
            format!("ARM is unavailable or throttling ({e}); idbind will retry with backoff."),
        ),
        None if e.is_uncertain() => StepResult::failed(
            reason::ARM_UNAVAILABLE,
            format!("ARM could not be reached ({e}); idbind will retry with backoff."),
        ),
        _ => StepResult::failed(
            reason::ARM_ERROR,
            format!("could not {action}: {e}; idbind retries with backoff."),
        ),
    }
}
