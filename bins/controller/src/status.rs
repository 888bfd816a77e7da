//! The status of an IdentityBinding as a pure function of what a reconcile found: the resolved
//! identity, and the result of each step. Conditions carry reasons a program can match and
//! messages a person can act on.

use idbind_model::k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use idbind_model::{FederatedCredentialStatus, IdentityBindingStatus, condition, set_condition};
use jiff::Timestamp;

/// Condition reasons set by the controller.
pub mod reason {
    /// `IdentityResolved`: ARM returned the identity.
    pub const RESOLVED: &str = "Resolved";
    /// The resource ID in the spec is not a user-assigned identity ID.
    pub const INVALID_RESOURCE_ID: &str = "InvalidResourceId";
    /// ARM says the identity does not exist.
    pub const IDENTITY_NOT_FOUND: &str = "IdentityNotFound";
    /// ARM refused the controller's principal (403).
    pub const ARM_AUTHORIZATION_FAILED: &str = "ArmAuthorizationFailed";
    /// The controller could not get an ARM token, or ARM rejected it (401).
    pub const ARM_AUTHENTICATION_FAILED: &str = "ArmAuthenticationFailed";
    /// ARM or Entra is unreachable, throttling or failing; the controller retries.
    pub const ARM_UNAVAILABLE: &str = "ArmUnavailable";
    /// ARM rejected a request for another reason.
    pub const ARM_ERROR: &str = "ArmError";
    /// `FederatedCredentialReady`: idbind created the FIC.
    pub const FIC_CREATED: &str = "Created";
    /// `FederatedCredentialReady`: a FIC with the same issuer and subject already existed.
    pub const FIC_EXISTS: &str = "Exists";
    /// A FIC with idbind's name exists with another issuer or subject.
    pub const FIC_NAME_TAKEN: &str = "FicNameTaken";
    /// The identity already has the maximum number of FICs.
    pub const FIC_LIMIT_REACHED: &str = "FicLimitReached";
    /// An earlier step has not succeeded yet.
    pub const WAITING_FOR_IDENTITY: &str = "WaitingForIdentity";
    /// `IssuerPublished`: this cluster's keys are in the identity's JWKS.
    pub const PUBLISHED: &str = "Published";
    /// The JWKS would exceed the keys Entra reads.
    pub const JWKS_KEY_LIMIT: &str = "JwksKeyLimit";
    /// The issuer store could not be read or written; the controller retries.
    pub const ISSUER_STORE_UNAVAILABLE: &str = "IssuerStoreUnavailable";
    /// The signing keys Secret has not been loaded yet.
    pub const SIGNING_KEYS_NOT_READY: &str = "SigningKeysNotReady";
    /// `RbacReady`: the ClusterRole and ClusterRoleBinding match `allowedSubjects`.
    pub const RBAC_GENERATED: &str = "Generated";
    /// `RbacReady`: `allowedSubjects` is empty; RBAC is the user's.
    pub const RBAC_NOT_MANAGED: &str = "NotManaged";
    /// A ClusterRole or ClusterRoleBinding of the generated name exists and is not idbind's.
    pub const RBAC_CONFLICT: &str = "RbacConflict";
    /// The Kubernetes API refused or failed a write; the controller retries.
    pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
    /// `Ready`: everything is in place.
    pub const BOUND: &str = "Bound";
}

/// The result of one reconcile step: the reason and message of its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepResult {
    /// Whether the step succeeded.
    pub ok: bool,
    /// CamelCase reason (see [`reason`]).
    pub reason: String,
    /// What happened, and what to do about it when it failed.
    pub message: String,
}

impl StepResult {
    /// A successful step.
    pub fn ok(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// A failed step.
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// A step that could not run because the identity is not resolved.
    pub fn waiting() -> Self {
        Self::failed(
            reason::WAITING_FOR_IDENTITY,
            "waiting for the managed identity to be resolved",
        )
    }
}

/// What a reconcile learnt about the identity; `None` fields keep what the status had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Name of the identity.
    pub identity_name: Option<String>,
    /// Its client id.
    pub client_id: Option<String>,
    /// Its principal (object) id.
    pub object_id: Option<String>,
    /// Its tenant.
    pub tenant_id: Option<String>,
    /// Its per-identity issuer URL.
    pub oidc_issuer_url: Option<String>,
    /// The FIC that trusts the issuer.
    pub federated_credential: Option<FederatedCredentialStatus>,
}

/// The results of the four steps of a reconcile, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `IdentityResolved`.
    pub identity: StepResult,
    /// `FederatedCredentialReady`.
    pub federated_credential: StepResult,
    /// `IssuerPublished`.
    pub issuer: StepResult,
    /// `RbacReady`.
    pub rbac: StepResult,
}

impl Outcome {
    /// The steps with their condition types, in order.
    pub fn steps(&self) -> [(&'static str, &StepResult); 4] {
        [
            (condition::IDENTITY_RESOLVED, &self.identity),
            (condition::FEDERATED_CREDENTIAL_READY, &self.federated_credential),
            (condition::ISSUER_PUBLISHED, &self.issuer),
            (condition::RBAC_READY, &self.rbac),
        ]
    }

    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<(&'static str, &StepResult)> {
        self.steps().into_iter().find(|(_, s)| !s.ok)
    }

    /// Whether every step succeeded.
    pub fn is_ready(&self) -> bool {
        self.first_failure().is_none()
    }
}

/// Computes the new status from the previous one, what was learnt and the step results.
///
/// ```
/// use idbind_controller::status::{Facts, Outcome, StepResult, compute_status, reason};
/// use idbind_model::condition;
///
/// let outcome = Outcome {
///     identity: StepResult::ok(reason::RESOLVED, "resolved"),
///     federated_credential: StepResult::failed(
///         reason::FIC_LIMIT_REACHED,
///         "identity payments already has 20 federated identity credentials: a, b, ...",
///     ),
///     issuer: StepResult::ok(reason::PUBLISHED, "published"),
///     rbac: StepResult::ok(reason::RBAC_GENERATED, "generated"),
/// };
/// let facts = Facts { client_id: Some("c".into()), ..Facts::default() };
/// let status = compute_status(None, &facts, &outcome, Some(3), jiff::Timestamp::UNIX_EPOCH);
/// let ready = status.conditions.iter().find(|c| c.type_ == condition::READY).unwrap();
/// assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "FicLimitReached"));
/// assert!(ready.message.contains("20 federated identity credentials"));
/// assert_eq!(status.observed_generation, Some(3));
/// assert_eq!(status.client_id.as_deref(), Some("c"));
/// ```
pub fn compute_status(
    previous: Option<&IdentityBindingStatus>,
    facts: &Facts,
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> IdentityBindingStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let keep = |new: &Option<String>, old: &mut Option<String>| {
        if new.is_some() {
            old.clone_from(new);
        }
    };
    keep(&facts.identity_name, &mut status.identity_name);
    keep(&facts.client_id, &mut status.client_id);
    keep(&facts.object_id, &mut status.object_id);
    keep(&facts.tenant_id, &mut status.tenant_id);
    keep(&facts.oidc_issuer_url, &mut status.oidc_issuer_url);
    if facts.federated_credential.is_some() {
        status
            .federated_credential
            .clone_from(&facts.federated_credential);
    }
    // A binding that was Ready for this generation stays Ready through a transient failure: the
    // FIC and the published keys it relied on are still in place, and the proxy serves only Ready
    // bindings, so flipping it would turn an ARM or issuer-store blip into failed token requests.
    let hold = outcome
        .first_failure()
        .filter(|(_, step)| is_transient(&step.reason))
        .filter(|_| was_ready_at(previous, generation));
    status.observed_generation = generation;
    for (type_, step) in outcome.steps() {
        if hold.is_some() && step.reason == reason::WAITING_FOR_IDENTITY {
            continue;
        }
        set_condition(
            &mut status.conditions,
            type_,
            step.ok,
            &step.reason,
            step.message.clone(),
            generation,
            now,
        );
    }
    let ready = ready_message(&status);
    if let Some((type_, step)) = hold {
        set_condition(
            &mut status.conditions,
            condition::READY,
            true,
            reason::BOUND,
            format!(
                "{ready}; the last reconcile failed transiently and is retried ({type_}: {})",
                step.message
            ),
            generation,
            now,
        );
        sort_conditions(&mut status.conditions);
        return status;
    }
    match outcome.first_failure() {
        None => set_condition(
            &mut status.conditions,
            condition::READY,
            true,
            reason::BOUND,
            ready,
            generation,
            now,
        ),
        Some((type_, step)) => set_condition(
            &mut status.conditions,
            condition::READY,
            false,
            &step.reason,
            format!("{type_}: {}", step.message),
            generation,
            now,
        ),
    }
    sort_conditions(&mut status.conditions);
    status
}

/// Whether a failure with this reason is expected to go away on its own (the controller retries).
pub fn is_transient(reason: &str) -> bool {
    [
        reason::ARM_UNAVAILABLE,
        reason::ISSUER_STORE_UNAVAILABLE,
        reason::KUBERNETES_API_ERROR,
    ]
    .contains(&reason)
}

/// Whether the status says Ready for this generation.
fn was_ready_at(previous: Option<&IdentityBindingStatus>, generation: Option<i64>) -> bool {
    previous.is_some_and(|p| {
        p.conditions
            .iter()
            .any(|c| c.type_ == condition::READY && c.status == "True" && c.observed_generation == generation)
    })
}

/// Whether the status says Ready.
pub fn is_ready(status: &IdentityBindingStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::READY && c.status == "True")
}

fn sort_conditions(conditions: &mut [Condition]) {
    conditions.sort_by_key(|c| {
        condition::ALL
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(usize::MAX)
    });
}

fn ready_message(status: &IdentityBindingStatus) -> String {
    match (&status.identity_name, &status.client_id) {
        (Some(name), Some(client)) => format!(
            "pods allowed by RBAC can get tokens for identity {name} (AZURE_CLIENT_ID={client}) through the idbind proxy"
        ),
        _ => "pods allowed by RBAC can get tokens for the identity through the idbind proxy".to_owned(),
    }
}

/// A condition whose status or reason changed between two statuses: worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Condition type.
    pub type_: String,
    /// New status.
    pub ok: bool,
    /// New reason.
    pub reason: String,
    /// New message.
    pub message: String,
}

/// The conditions that changed status or reason from `old` to `new`.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    new.iter()
        .filter(|n| {
            old.iter()
                .find(|o| o.type_ == n.type_)
                .is_none_or(|o| o.status != n.status || o.reason != n.reason)
        })
        .map(|n| Transition {
            type_: n.type_.clone(),
            ok: n.status == "True",
            reason: n.reason.clone(),
            message: n.message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ok() -> Outcome {
        Outcome {
            identity: StepResult::ok(reason::RESOLVED, "r"),
            federated_credential: StepResult::ok(reason::FIC_CREATED, "f"),
            issuer: StepResult::ok(reason::PUBLISHED, "p"),
            rbac: StepResult::ok(reason::RBAC_GENERATED, "g"),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn ready_when_every_step_succeeds() {
        let facts = Facts {
            identity_name: Some("payments".into()),
            client_id: Some("cid".into()),
            ..Facts::default()
        };
        let s = compute_status(None, &facts, &all_ok(), Some(1), t(10));
        let types: Vec<_> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, condition::ALL);
        let ready = s.conditions.last().unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason, reason::BOUND);
        assert!(ready.message.contains("payments") && ready.message.contains("AZURE_CLIENT_ID=cid"));
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(1)));
    }

    #[test]
    fn ready_carries_the_first_failure_and_ids_survive_a_failed_resolution() {
        let facts = Facts {
            client_id: Some("cid".into()),
            tenant_id: Some("tid".into()),
            ..Facts::default()
        };
        let first = compute_status(None, &facts, &all_ok(), Some(1), t(10));
        let mut outage = all_ok();
        outage.identity =
            StepResult::failed(reason::ARM_UNAVAILABLE, "ARM is unavailable; idbind will retry");
        outage.federated_credential = StepResult::waiting();
        let second = compute_status(Some(&first), &Facts::default(), &outage, Some(2), t(20));
        assert_eq!(second.client_id.as_deref(), Some("cid"));
        assert_eq!(second.tenant_id.as_deref(), Some("tid"));
        let ready = second
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .unwrap();
        assert_eq!(ready.reason, reason::ARM_UNAVAILABLE);
        assert!(ready.message.starts_with("IdentityResolved: ARM is unavailable"));
        assert_eq!(ready.last_transition_time.0, t(20));
        let changed = transitions(&first.conditions, &second.conditions);
        let types: Vec<_> = changed.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["IdentityResolved", "FederatedCredentialReady", "Ready"]);
        assert!(transitions(&second.conditions, &second.conditions).is_empty());
    }

    #[test]
    fn a_ready_binding_stays_ready_through_a_transient_failure_of_the_same_generation() {
        let first = compute_status(None, &Facts::default(), &all_ok(), Some(1), t(10));
        let mut outage = all_ok();
        outage.identity = StepResult::failed(reason::ARM_UNAVAILABLE, "ARM is unavailable");
        outage.federated_credential = StepResult::waiting();
        outage.issuer = StepResult::waiting();
        outage.rbac = StepResult::waiting();
        let held = compute_status(Some(&first), &Facts::default(), &outage, Some(1), t(20));
        let get = |s: &IdentityBindingStatus, type_: &str| {
            s.conditions.iter().find(|c| c.type_ == type_).unwrap().clone()
        };
        let ready = get(&held, condition::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reason::BOUND)
        );
        assert_eq!(ready.last_transition_time.0, t(10));
        assert!(
            ready.message.contains("IdentityResolved: ARM is unavailable"),
            "{}",
            ready.message
        );
        assert_eq!(
            get(&held, condition::IDENTITY_RESOLVED).reason,
            reason::ARM_UNAVAILABLE
        );
        assert_eq!(
            get(&held, condition::FEDERATED_CREDENTIAL_READY),
            get(&first, condition::FEDERATED_CREDENTIAL_READY),
            "a step that did not run keeps its last result"
        );
        assert!(is_ready(&held));

        // Not held: a permanent failure, a new generation, or a binding that was never Ready.
        let mut denied = outage.clone();
        denied.identity = StepResult::failed(reason::ARM_AUTHORIZATION_FAILED, "403");
        assert!(!is_ready(&compute_status(
            Some(&first),
            &Facts::default(),
            &denied,
            Some(1),
            t(20)
        )));
        assert!(!is_ready(&compute_status(
            Some(&first),
            &Facts::default(),
            &outage,
            Some(2),
            t(20)
        )));
        assert!(!is_ready(&compute_status(
            None,
            &Facts::default(),
            &outage,
            Some(1),
            t(20)
        )));

        // Recovery drops the note.
        let back = compute_status(Some(&held), &Facts::default(), &all_ok(), Some(1), t(30));
        assert!(!get(&back, condition::READY).message.contains("transiently"));
    }
}
