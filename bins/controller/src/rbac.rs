//! The generated ClusterRole and ClusterRoleBinding `use-mi-<clientId>`.
//!
//! Several bindings of this cluster may name the same identity; the generated objects then grant
//! the union of their `allowedSubjects` and list every such binding as an owner, so deleting one
//! binding keeps what the others grant, and Kubernetes garbage-collects the objects if every
//! owner disappears without the finalizer running.

use idbind_model::{
    AllowedSubject, ClientId, IdentityBinding, MANAGED_BY_LABEL, MANAGED_BY_VALUE, rbac_object_name,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::triggers::OwnWrites;
use crate::{Error, Result};

/// What [`sync`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RbacOutcome {
    /// The objects grant `subjects` (created or updated as needed).
    Generated {
        /// How many subjects the binding grants.
        subjects: usize,
        /// Whether anything was written.
        changed: bool,
    },
    /// No subjects: the generated objects are gone (the user manages RBAC).
    NotManaged,
    /// An object of the generated name exists and was not made by idbind; it was left alone.
    Conflict(String),
}

/// An owner reference to `binding` (not a controller reference: several bindings may own).
pub fn owner_reference(binding: &IdentityBinding) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: IdentityBinding::api_version(&()).into_owned(),
        kind: IdentityBinding::kind(&()).into_owned(),
        name: binding.metadata.name.clone()?,
        uid: binding.metadata.uid.clone()?,
        controller: None,
        block_owner_deletion: None,
    })
}

/// Makes the generated RBAC of `client_id` grant `subjects`, owned by `owners`; deletes it when
/// `subjects` is empty. What it decides the ClusterRoleBinding holds is recorded in `own` (see
/// [`crate::triggers`]).
pub async fn sync(
    client: &kube::Client,
    client_id: &ClientId,
    subjects: &[AllowedSubject],
    mut owners: Vec<OwnerReference>,
    own: &OwnWrites,
) -> Result<RbacOutcome> {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = rbac_object_name(client_id);
    if subjects.is_empty() {
        own.forget(&name);
        delete_if_ours(&bindings, &name, "ClusterRoleBinding").await?;
        delete_if_ours(&roles, &name, "ClusterRole").await?;
        return Ok(RbacOutcome::NotManaged);
    }
    owners.sort_by(|a, b| a.uid.cmp(&b.uid));
    owners.dedup_by(|a, b| a.uid == b.uid);
    let generated = idbind_rbac::generate(client_id, subjects);
    let count = generated
        .cluster_role_binding
        .subjects
        .as_ref()
        .map_or(0, Vec::len);
    let mut role = generated.cluster_role;
    role.metadata.owner_references = Some(owners.clone());
    let mut binding = generated.cluster_role_binding;
    binding.metadata.owner_references = Some(owners);
    let same_role = |have: &ClusterRole, want: &ClusterRole| {
        have.rules == want.rules && have.aggregation_rule == want.aggregation_rule
    };
    let role_changed = match apply(&roles, &name, "ClusterRole", role, same_role).await? {
        Applied::Conflict(m) => return Ok(RbacOutcome::Conflict(m)),
        Applied::Done(changed) => changed,
    };
    let same_binding = |have: &ClusterRoleBinding, want: &ClusterRoleBinding| {
        have.subjects == want.subjects && have.role_ref == want.role_ref
    };
    own.intend(&binding);
    let binding_changed = match apply(&bindings, &name, "ClusterRoleBinding", binding, same_binding).await? {
        Applied::Conflict(m) => return Ok(RbacOutcome::Conflict(m)),
        Applied::Done(changed) => changed,
    };
    Ok(RbacOutcome::Generated {
        subjects: count,
        changed: role_changed || binding_changed,
    })
}

enum Applied {
    Done(bool),
    Conflict(String),
}

fn is_ours(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE)
}

async fn apply<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    mut want: K,
    same_content: impl Fn(&K, &K) -> bool,
) -> Result<Applied>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    // A stale read loses against a concurrent write (409): re-read and try again a few times.
    for _ in 0..5 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        let result = match existing {
            None => api
                .create(&PostParams::default(), &want)
                .await
                .map(|_| Applied::Done(true)),
            Some(have) => {
                if !is_ours(have.meta()) {
                    return Ok(Applied::Conflict(format!(
                        "{kind} {name} exists and is not managed by idbind (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); \
                         delete it, or set allowedSubjects to [] and manage RBAC yourself"
                    )));
                }
                let same = same_content(&have, &want)
                    && have.meta().labels == want.meta().labels
                    && have.meta().owner_references == want.meta().owner_references;
                if same {
                    return Ok(Applied::Done(false));
                }
                want.meta_mut().resource_version = have.meta().resource_version.clone();
                api.replace(name, &PostParams::default(), &want)
                    .await
                    .map(|_| Applied::Done(true))
            }
        };
        match result {
            Ok(applied) => return Ok(applied),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(Error::kube(format!("writing {kind} {name}"))(e)),
        }
    }
    Err(Error::Conflict(format!(
        "{kind} {name} kept changing while idbind updated it"
    )))
}

async fn delete_if_ours<K>(api: &Api<K>, name: &str, kind: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(existing) = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading {kind} {name}")))?
    else {
        return Ok(());
    };
    if !is_ours(existing.meta()) {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(%kind, %name, "deleted generated RBAC");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting {kind} {name}"))(e)),
    }
}

/// The union of `allowedSubjects` of `bindings`.
pub fn union_subjects<'a>(bindings: impl IntoIterator<Item = &'a IdentityBinding>) -> Vec<AllowedSubject> {
    let mut all: Vec<AllowedSubject> = bindings
        .into_iter()
        .flat_map(|b| b.spec.allowed_subjects.iter().cloned())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Name of a binding for messages.
pub fn display_name(binding: &IdentityBinding) -> String {
    binding.name_any()
}
