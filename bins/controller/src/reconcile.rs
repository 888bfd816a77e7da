//! The IdentityBinding reconciler.
//!
//! One level-triggered pass per binding: resolve the identity through ARM, ensure its one FIC,
//! publish this cluster's keys to its issuer, generate its RBAC, then write the status computed by
//! [`crate::status::compute_status`] and emit Events for condition changes. A finalizer
//! (`idbind.dev/cleanup`) undoes this cluster's part when a binding goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use idbind_issuer::ClusterName;
use idbind_model::{
    ClientId, FederatedCredentialStatus, FicSpec, IdentityBinding, IdentityResourceId, IssuerBaseUrl,
    TenantId,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;

use crate::args::FicGc;
use crate::azure::Azure;
use crate::clock::Clock;
use crate::keyed_locks::KeyedLocks;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::publish::{IdentityKey, PublishError, PublishTargets};
use crate::rbac::{self, RbacOutcome};
use crate::status::{Facts, Outcome, StepResult, compute_status, reason, transitions};
use crate::triggers::OwnWrites;
use crate::{Error, Result};

/// The finalizer idbind puts on every binding.
pub const FINALIZER: &str = "idbind.dev/cleanup";

/// How long a reconcile waits for the signing keys to be loaded before reporting them missing.
const KEYS_WAIT: Duration = Duration::from_secs(5);

/// The steps of a reconcile, for [`Hooks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The identity was read from ARM (successfully or not).
    IdentityResolved,
    /// The FIC is in place (called only when ensuring it succeeded).
    FederatedCredential,
    /// The keys were published (successfully or not).
    Published,
    /// RBAC was synced (successfully or not).
    Rbac,
    /// The status was written.
    Status,
}

/// Test hooks called between reconcile steps (e.g. to stop the controller after the FIC write).
pub trait Hooks: Send + Sync + 'static {
    /// Called after `step` of the reconcile of binding `name`. The reconcile continues when the
    /// returned future completes.
    fn after_step(&self, name: &str, step: Step) -> BoxFuture<'static, ()>;
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn after_step(&self, _name: &str, _step: Step) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Reconciler settings.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// This cluster's name.
    pub cluster: ClusterName,
    /// Name of the FIC to create.
    pub fic_name: String,
    /// What happens to the FIC when the last binding goes.
    pub fic_gc: FicGc,
    /// Base URL of the per-identity issuers.
    pub issuer_base: IssuerBaseUrl,
    /// Reconcile every binding at least this often.
    pub resync: Duration,
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Where the signing keys live (for messages).
    pub key_secret: String,
}

/// Everything a reconcile needs.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub settings: ReconcileSettings,
    /// ARM.
    pub azure: Azure,
    /// Issuer publishing.
    pub targets: PublishTargets,
    /// Signing keys.
    pub keys: Keys,
    /// Cache of bindings.
    pub store: Store<IdentityBinding>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Test hooks.
    pub hooks: Arc<dyn Hooks>,
    /// Wall clock (condition transition times).
    pub clock: Arc<dyn Clock>,
    /// This controller's writes of generated ClusterRoleBindings (their echoes trigger nothing).
    pub own_writes: OwnWrites,
    failures: Mutex<HashMap<String, u32>>,
    ready: Mutex<HashMap<String, bool>>,
    /// Serializes writes of one identity's generated RBAC: concurrent reconciles of its bindings
    /// would otherwise race on the same objects (409s) and rewrite them in turn.
    rbac_locks: KeyedLocks<ClientId>,
}

/// The error a reconcile returns to the controller runtime (and to `error_policy`).
pub type ReconcileError = Error;

impl Context {
    /// A context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        settings: ReconcileSettings,
        azure: Azure,
        targets: PublishTargets,
        keys: Keys,
        store: Store<IdentityBinding>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        hooks: Arc<dyn Hooks>,
        clock: Arc<dyn Clock>,
        own_writes: OwnWrites,
    ) -> Self {
        Self {
            client,
            settings,
            azure,
            targets,
            keys,
            store,
            recorder,
            metrics,
            hooks,
            clock,
            own_writes,
            failures: Mutex::default(),
            ready: Mutex::default(),
            rbac_locks: KeyedLocks::default(),
        }
    }

    /// The retry delay after the `n`th consecutive failure: doubling from the minimum, capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.settings
            .backoff_min
            .saturating_mul(1u32 << exp)
            .min(self.settings.backoff_max)
    }

    fn track_ready(&self, key: &str, ready: Option<bool>) {
        let mut map = self.ready.lock();
        match ready {
            Some(r) => {
                map.insert(key.to_owned(), r);
            }
            None => {
                map.remove(key);
            }
        }
        self.metrics
            .bindings
            .set(i64::try_from(map.len()).unwrap_or(i64::MAX));
        self.metrics
            .bindings_ready
            .set(i64::try_from(map.values().filter(|r| **r).count()).unwrap_or(i64::MAX));
    }

    async fn hook(&self, name: &str, step: Step) {
        self.hooks.after_step(name, step).await;
    }

    async fn event(&self, binding: &IdentityBinding, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &binding.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Reconciles one binding (the function given to `kube::runtime::Controller::run`).
pub async fn reconcile(binding: Arc<IdentityBinding>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = tokio::time::Instant::now();
    let key = binding.uid().unwrap_or_else(|| binding.name_any());
    tracing::debug!(generation = ?binding.metadata.generation, "reconcile");
    let result = with_finalizer(&binding, &ctx).await;
    ctx.metrics
        .reconciled(result.is_ok(), started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().remove(&key);
    }
    result
}

/// Requeues a failed binding with per-object exponential backoff.
#[allow(clippy::needless_pass_by_value)] // the signature kube-runtime's Controller::run expects
pub fn error_policy(binding: Arc<IdentityBinding>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = binding.uid().unwrap_or_else(|| binding.name_any());
    let n = {
        let mut failures = ctx.failures.lock();
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics.reconcile_failed(error.metric_label());
    let delay = ctx.backoff(n);
    tracing::info!(binding = %binding.name_any(), error = %error, failures = n, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Adds the finalizer before anything else happens, runs the cleanup when the binding is being
/// deleted and removes the finalizer once the cleanup succeeded.
async fn with_finalizer(binding: &IdentityBinding, ctx: &Context) -> Result<Action> {
    let api: Api<IdentityBinding> = Api::all(ctx.client.clone());
    let name = binding.name_any();
    let position = binding.finalizers().iter().position(|f| f == FINALIZER);
    match (position, binding.metadata.deletion_timestamp.is_some()) {
        (None, true) => Ok(Action::await_change()),
        (None, false) => {
            let mut finalizers = binding.finalizers().to_vec();
            finalizers.push(FINALIZER.to_owned());
            // The resourceVersion makes this a compare-and-swap: no concurrent finalizer change is lost.
            let patch = serde_json::json!({
                "metadata": { "finalizers": finalizers, "resourceVersion": binding.resource_version() }
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!(
                    "adding the finalizer to IdentityBinding {name}"
                )))?;
            Ok(Action::await_change())
        }
        (Some(_), false) => apply(binding, ctx).await,
        (Some(i), true) => {
            let action = cleanup(binding, ctx).await?;
            let patch = serde_json::json!([
                { "op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER },
                { "op": "remove", "path": format!("/metadata/finalizers/{i}") },
            ]);
            let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Error::InvalidData {
                what: "finalizer patch".into(),
                reason: e.to_string(),
            })?;
            match api
                .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                .await
            {
                Ok(_) => Ok(action),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(action),
                Err(e) => Err(Error::kube(format!(
                    "removing the finalizer of IdentityBinding {name}"
                ))(e)),
            }
        }
    }
}

async fn apply(binding: &IdentityBinding, ctx: &Context) -> Result<Action> {
    let name = binding.name_any();
    let generation = binding.metadata.generation;
    let mut facts = Facts::default();
    let outcome = match binding.identity_id() {
        Err(e) => Outcome {
            identity: StepResult::failed(
                reason::INVALID_RESOURCE_ID,
                format!("spec.managedIdentity.resourceId is not a user-assigned identity ID: {e}"),
            ),
            federated_credential: StepResult::waiting(),
            issuer: StepResult::waiting(),
            rbac: StepResult::waiting(),
        },
        Ok(id) => reconcile_steps(binding, ctx, &id, &mut facts).await,
    };
    let now = ctx.clock.now();
    let previous = binding.status.as_ref();
    let status = compute_status(previous, &facts, &outcome, generation, now);
    if previous != Some(&status) {
        let api: Api<IdentityBinding> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "writing the status of IdentityBinding {name}"
            )))?;
    }
    ctx.hook(&name, Step::Status).await;
    let old = previous.map(|s| s.conditions.as_slice()).unwrap_or_default();
    for t in transitions(old, &status.conditions) {
        let type_ = if t.ok {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let interesting = !t.ok || t.type_ == idbind_model::condition::READY;
        if interesting {
            ctx.event(binding, type_, &t.reason, format!("{}: {}", t.type_, t.message))
                .await;
        }
    }
    let key = binding.uid().unwrap_or_else(|| name.clone());
    ctx.track_ready(&key, Some(crate::status::is_ready(&status)));
    match outcome.first_failure() {
        None => Ok(Action::requeue(ctx.settings.resync)),
        Some((type_, step)) => Err(Error::NotReady {
            condition: type_.to_owned(),
            reason: step.reason.clone(),
            message: step.message.clone(),
        }),
    }
}

async fn reconcile_steps(
    binding: &IdentityBinding,
    ctx: &Context,
    id: &IdentityResourceId,
    facts: &mut Facts,
) -> Outcome {
    let name = binding.name_any();
    let resolved = ctx.azure.resolve(id).await;
    ctx.hook(&name, Step::IdentityResolved).await;
    let identity = match resolved {
        Ok(identity) => identity,
        Err(step) => {
            return Outcome {
                identity: step,
                federated_credential: StepResult::waiting(),
                issuer: StepResult::waiting(),
                rbac: StepResult::waiting(),
            };
        }
    };
    let (tenant, client) = (identity.tenant_id, identity.client_id);
    let issuer = ctx.settings.issuer_base.issuer_for(&tenant, &client);
    facts.identity_name = Some(identity.name.clone());
    facts.client_id = Some(client.to_string());
    facts.object_id = Some(identity.principal_id.to_string());
    facts.tenant_id = Some(tenant.to_string());
    facts.oidc_issuer_url = Some(issuer.clone());
    let identity_step = StepResult::ok(
        reason::RESOLVED,
        format!(
            "identity {} has client id {client} in tenant {tenant}",
            identity.name
        ),
    );

    let fic_step = match FicSpec::derive(
        &ctx.settings.fic_name,
        &ctx.settings.issuer_base,
        id,
        &tenant,
        &client,
    ) {
        Err(e) => StepResult::failed(
            reason::ARM_ERROR,
            format!("the FIC cannot be derived: {e}; fix --fic-name"),
        ),
        Ok(spec) => match ctx.azure.ensure_fic(id, &spec).await {
            Ok(fic) => {
                facts.federated_credential = Some(FederatedCredentialStatus {
                    name: fic.name.clone(),
                    issuer: spec.issuer.clone(),
                    subject: spec.subject.clone(),
                });
                if fic.created {
                    StepResult::ok(
                        reason::FIC_CREATED,
                        format!(
                            "created federated identity credential {} trusting {}",
                            fic.name, spec.issuer
                        ),
                    )
                } else {
                    StepResult::ok(
                        reason::FIC_EXISTS,
                        format!(
                            "federated identity credential {} trusts {}",
                            fic.name, spec.issuer
                        ),
                    )
                }
            }
            Err(step) => step,
        },
    };
    if fic_step.ok {
        ctx.hook(&name, Step::FederatedCredential).await;
    }

    let issuer_step = publish(ctx, IdentityKey { tenant, client }, &issuer).await;
    ctx.hook(&name, Step::Published).await;

    let rbac_step = sync_rbac(binding, ctx, &client).await;
    ctx.hook(&name, Step::Rbac).await;

    Outcome {
        identity: identity_step,
        federated_credential: fic_step,
        issuer: issuer_step,
        rbac: rbac_step,
    }
}

async fn publish(ctx: &Context, id: IdentityKey, issuer: &str) -> StepResult {
    if tokio::time::timeout(KEYS_WAIT, ctx.keys.wait_loaded())
        .await
        .is_err()
    {
        return StepResult::failed(
            reason::SIGNING_KEYS_NOT_READY,
            format!(
                "this cluster's signing keys (Secret {}) are not loaded yet; idbind retries with backoff",
                ctx.settings.key_secret
            ),
        );
    }
    match ctx.targets.publish(id, &ctx.keys).await {
        Ok(outcome) => StepResult::ok(
            reason::PUBLISHED,
            format!(
                "the keys of cluster {} are in the JWKS of {issuer} ({} keys in all)",
                ctx.settings.cluster, outcome.total_keys
            ),
        ),
        Err(PublishError::KeysNotLoaded) => StepResult::failed(
            reason::SIGNING_KEYS_NOT_READY,
            format!(
                "this cluster's signing keys (Secret {}) are not loaded yet",
                ctx.settings.key_secret
            ),
        ),
        Err(PublishError::Issuer(e @ idbind_issuer::Error::TooManyKeys { .. })) => {
            StepResult::failed(reason::JWKS_KEY_LIMIT, format!("cannot publish to {issuer}: {e}"))
        }
        Err(PublishError::Issuer(e)) => StepResult::failed(
            reason::ISSUER_STORE_UNAVAILABLE,
            format!("could not publish to {issuer}: {e}; idbind will retry with backoff"),
        ),
    }
}

/// Live bindings of this cluster, other than `binding`, that name its identity: resolved to
/// `client`, or with the same resource ID (not resolved yet: their statuses are written by
/// concurrent reconciles, and RBAC must not depend on which of those finished first).
fn siblings(ctx: &Context, binding: &IdentityBinding, client: &ClientId) -> Vec<Arc<IdentityBinding>> {
    let uid = binding.uid();
    let resource_id = binding.identity_id().ok();
    ctx.store
        .state()
        .into_iter()
        .filter(|b| {
            b.metadata.deletion_timestamp.is_none()
                && b.uid() != uid
                && (IdentityKey::of(b).is_some_and(|k| k.client == *client)
                    || resource_id.is_some() && b.identity_id().ok() == resource_id)
        })
        .collect()
}

async fn sync_rbac(binding: &IdentityBinding, ctx: &Context, client: &ClientId) -> StepResult {
    let _serial = ctx.rbac_locks.lock(client).await;
    let others = siblings(ctx, binding, client);
    let all: Vec<&IdentityBinding> = std::iter::once(binding)
        .chain(others.iter().map(|b| &**b))
        .collect();
    let subjects = rbac::union_subjects(all.iter().copied());
    let owners = all.iter().filter_map(|b| rbac::owner_reference(b)).collect();
    let name = idbind_model::rbac_object_name(client);
    match rbac::sync(&ctx.client, client, &subjects, owners, &ctx.own_writes).await {
        Ok(RbacOutcome::Generated { subjects: n, .. }) => StepResult::ok(
            reason::RBAC_GENERATED,
            format!("ClusterRole and ClusterRoleBinding {name} grant use-managed-identity to {n} subject(s)"),
        ),
        Ok(RbacOutcome::NotManaged) => StepResult::ok(
            reason::RBAC_NOT_MANAGED,
            format!(
                "allowedSubjects is empty: idbind generates no RBAC; grant verb use-managed-identity on resource \
                 {client} of API group {} yourself",
                idbind_model::RBAC_API_GROUP
            ),
        ),
        Ok(RbacOutcome::Conflict(m)) => StepResult::failed(reason::RBAC_CONFLICT, m),
        Err(e) => StepResult::failed(
            reason::KUBERNETES_API_ERROR,
            format!("could not write RBAC {name}: {e}; idbind retries with backoff"),
        ),
    }
}

async fn cleanup(binding: &IdentityBinding, ctx: &Context) -> Result<Action> {
    let name = binding.name_any();
    let uid = binding.uid();
    let resource_id = binding.spec.managed_identity.resource_id.clone();
    let key = match IdentityKey::of(binding) {
        Some(k) => Some(k),
        None => match binding.identity_id() {
            Err(_) => None,
            Ok(id) => match ctx.azure.resolve(&id).await {
                Ok(identity) => Some(IdentityKey {
                    tenant: identity.tenant_id,
                    client: identity.client_id,
                }),
                Err(step) if step.reason == reason::IDENTITY_NOT_FOUND => None,
                Err(step) => {
                    return Err(Error::NotReady {
                        condition: "Cleanup".to_owned(),
                        reason: step.reason,
                        message: step.message,
                    });
                }
            },
        },
    };
    let mut notes = Vec::new();
    if let Some(key) = key {
        match ctx
            .targets
            .withdraw_unless_bound(key, &resource_id, uid.as_deref())
            .await
        {
            Ok(None) => notes.push(
                "kept this cluster's keys: another binding of this cluster uses the identity".to_owned(),
            ),
            Ok(Some(w)) => {
                notes.push(format!(
                    "withdrew this cluster's keys from {} ({} keys remain)",
                    w.issuer, w.remaining_keys
                ));
                if let Ok(id) = binding.identity_id() {
                    let gc = match ctx.settings.fic_gc {
                        FicGc::Delete => Some(gc_fic(ctx, &id, key.tenant, key.client).await),
                        FicGc::Retain => None,
                    };
                    // No binding of this cluster names the identity any more, and its FIC may be
                    // gone (a binding made meanwhile may have seen it).
                    ctx.azure.forget(&id);
                    if let Some(note) = gc {
                        notes.push(note?);
                    }
                }
            }
            Err(e) => {
                return Err(Error::NotReady {
                    condition: "Cleanup".to_owned(),
                    reason: reason::ISSUER_STORE_UNAVAILABLE.to_owned(),
                    message: format!("could not withdraw this cluster's keys: {e}"),
                });
            }
        }
        let _serial = ctx.rbac_locks.lock(&key.client).await;
        let others = siblings(ctx, binding, &key.client);
        let subjects = rbac::union_subjects(others.iter().map(|b| &**b));
        let owners = others.iter().filter_map(|b| rbac::owner_reference(b)).collect();
        rbac::sync(&ctx.client, &key.client, &subjects, owners, &ctx.own_writes).await?;
    }
    ctx.track_ready(&uid.unwrap_or_else(|| name.clone()), None);
    ctx.event(binding, EventType::Normal, "Unbound", notes.join("; "))
        .await;
    tracing::info!(binding = %name, "cleaned up");
    Ok(Action::await_change())
}

async fn gc_fic(
    ctx: &Context,
    id: &IdentityResourceId,
    tenant: TenantId,
    client: ClientId,
) -> Result<String> {
    let spec = FicSpec::derive(
        &ctx.settings.fic_name,
        &ctx.settings.issuer_base,
        id,
        &tenant,
        &client,
    )
    .map_err(|e| Error::config("--fic-name", e.to_string()))?;
    let publisher = ctx.targets.publisher();
    let unused = || async move {
        let jwks = publisher
            .read_jwks(&tenant, &client)
            .await
            .map_err(|e| Box::new(e) as idbind_arm::BoxError)?;
        Ok(jwks.is_none_or(|j| j.keys.is_empty()))
    };
    match ctx.azure.fic().delete_if_unused(id, &spec, unused).await {
        Ok(idbind_fic::GcOutcome::Deleted { name }) => {
            ctx.metrics.fic_write("delete", true);
            Ok(format!(
                "deleted the federated identity credential {name}: no cluster key is left in its JWKS"
            ))
        }
        Ok(idbind_fic::GcOutcome::InUse { name }) => Ok(format!(
            "kept the federated identity credential {name}: other clusters' keys remain in the JWKS"
        )),
        Ok(_) => Ok("there was no federated identity credential to delete".to_owned()),
        Err(e) => {
            ctx.metrics.fic_write("delete", false);
            Err(Error::NotReady {
                condition: "Cleanup".to_owned(),
                reason: reason::ARM_UNAVAILABLE.to_owned(),
                message: format!("could not garbage-collect the FIC: {e}"),
            })
        }
    }
}
