//! What makes the reconciler run, besides its own requeues.
//!
//! A reconcile writes the binding's status and the shared RBAC objects of its identity. Left
//! unfiltered, each of those writes comes back as a watch event and schedules more reconciles: the
//! status write one of the same binding, and a write of an identity's ClusterRoleBinding one of
//! *every* binding that owns it. With many bindings per identity that multiplies the work of the
//! API server (and, before [`crate::memo`], of ARM). So:
//! - a binding is reconciled when what the reconcile acts on changes: its generation (spec, and
//!   the deletion mark), its finalizers, its deletion timestamp, or its annotations (so
//!   `kubectl annotate` forces a reconcile). Status-only changes, ours included, do not trigger;
//! - a generated ClusterRoleBinding triggers one of its owners ([`repairing_owner`]: any owner's
//!   reconcile rewrites it from all the bindings of its identity) when it was deleted or differs
//!   from what this controller last decided it should be ([`OwnWrites`]). The echo of our own
//!   write matches that decision and is dropped, whether it arrives before or after the response
//!   to the write; a change by someone else does not match and gets repaired.
//!
//! Missed events are covered by the requeue after every reconcile (`--resync-interval`).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use idbind_model::IdentityBinding;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;

/// A hash of what a reconcile of `binding` acts on; status-only changes leave it unchanged.
pub fn binding_trigger_hash(binding: &IdentityBinding) -> Option<u64> {
    let meta = binding.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    binding.finalizers().hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    binding.annotations().hash(&mut h);
    Some(h.finish())
}

/// The bindings' watch, reflected into a store, yielding a binding only when
/// [`binding_trigger_hash`] changed.
pub fn bindings(
    api: Api<IdentityBinding>,
    config: watcher::Config,
) -> (
    Store<IdentityBinding>,
    impl Stream<Item = Result<IdentityBinding, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .applied_objects()
        .predicate_filter(binding_trigger_hash, PredicateConfig::default());
    (reader, stream)
}

/// The generated ClusterRoleBindings' watch, yielding those that were deleted or differ from
/// what this controller last decided ([`OwnWrites`]).
pub fn owned_role_bindings(
    client: kube::Client,
    config: watcher::Config,
    own: OwnWrites,
) -> impl Stream<Item = Result<ClusterRoleBinding, watcher::Error>> + Send + 'static {
    let api: Api<ClusterRoleBinding> = Api::all(client);
    watcher(api, config).try_filter_map(move |event| {
        std::future::ready(Ok(match event {
            watcher::Event::Delete(crb) => Some(crb),
            watcher::Event::Apply(crb) | watcher::Event::InitApply(crb) => {
                (!own.is_echo(&crb)).then_some(crb)
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }))
    })
}

/// The binding whose reconcile repairs `object`: its first owner that is a live binding in
/// `store`, else its first IdentityBinding owner.
pub fn repairing_owner<K: Resource>(
    object: &K,
    store: &Store<IdentityBinding>,
) -> Option<ObjectRef<IdentityBinding>> {
    let kind = IdentityBinding::kind(&());
    let owners: Vec<_> = object
        .owner_references()
        .iter()
        .filter(|o| o.kind == kind && o.api_version == IdentityBinding::api_version(&()))
        .collect();
    let live = owners.iter().find(|o| {
        store.get(&ObjectRef::new(&o.name)).is_some_and(|b| {
            b.uid().as_deref() == Some(o.uid.as_str()) && b.metadata.deletion_timestamp.is_none()
        })
    });
    live.or(owners.first()).map(|o| ObjectRef::new(&o.name))
}

/// What this controller last decided each generated ClusterRoleBinding should hold.
#[derive(Clone, Debug, Default)]
pub struct OwnWrites {
    intended: Arc<Mutex<HashMap<String, u64>>>,
}

impl OwnWrites {
    /// Records that `crb` is what this controller wants (called before writing it, and when
    /// it found it already so).
    pub fn intend(&self, crb: &ClusterRoleBinding) {
        if let Some(name) = &crb.metadata.name {
            self.intended.lock().insert(name.clone(), content_hash(crb));
        }
    }

    /// Forgets `name` (before this controller deletes it).
    pub fn forget(&self, name: &str) {
        self.intended.lock().remove(name);
    }

    /// Whether `crb` holds exactly what this controller last decided: nothing to repair.
    pub fn is_echo(&self, crb: &ClusterRoleBinding) -> bool {
        crb.metadata
            .name
            .as_ref()
            .is_some_and(|name| self.intended.lock().get(name) == Some(&content_hash(crb)))
    }
}

/// A hash of what idbind manages in a ClusterRoleBinding.
fn content_hash(crb: &ClusterRoleBinding) -> u64 {
    let mut h = DefaultHasher::new();
    let meta = &crb.metadata;
    let json = serde_json::to_string(&(&crb.role_ref, &crb.subjects, &meta.labels, &meta.owner_references))
        .unwrap_or_default();
    json.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use idbind_model::{IdentityBindingSpec, ManagedIdentityRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn binding() -> IdentityBinding {
        let mut b = IdentityBinding::new(
            "b",
            IdentityBindingSpec {
                managed_identity: ManagedIdentityRef {
                    resource_id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i"
                        .into(),
                },
                allowed_subjects: vec![],
            },
        );
        b.metadata.generation = Some(1);
        b.metadata.resource_version = Some("10".into());
        b
    }

    #[test]
    fn status_and_resource_version_changes_do_not_trigger() {
        let before = binding();
        let mut after = before.clone();
        after.metadata.resource_version = Some("11".into());
        after.status = Some(Default::default());
        assert_eq!(binding_trigger_hash(&before), binding_trigger_hash(&after));
    }

    #[test]
    fn spec_finalizer_deletion_and_annotation_changes_trigger() {
        let before = binding();
        let changes: [fn(&mut IdentityBinding); 4] = [
            |b| b.metadata.generation = Some(2),
            |b| b.metadata.finalizers = Some(vec!["idbind.dev/cleanup".into()]),
            |b| b.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            |b| {
                b.annotations_mut().insert("x".into(), "1".into());
            },
        ];
        for change in changes {
            let mut after = before.clone();
            change(&mut after);
            assert_ne!(binding_trigger_hash(&before), binding_trigger_hash(&after));
        }
    }

    fn crb(subjects: &[&str]) -> ClusterRoleBinding {
        let mut crb = ClusterRoleBinding::default();
        crb.metadata.name = Some("use-mi-x".into());
        crb.subjects = Some(
            subjects
                .iter()
                .map(|n| k8s_openapi::api::rbac::v1::Subject {
                    kind: "ServiceAccount".into(),
                    name: (*n).into(),
                    namespace: Some("ns".into()),
                    ..Default::default()
                })
                .collect(),
        );
        crb
    }

    #[test]
    fn only_what_was_last_intended_is_an_echo() {
        let own = OwnWrites::default();
        let mut ours = crb(&["a", "b"]);
        assert!(!own.is_echo(&ours), "nothing intended yet");
        own.intend(&ours);
        ours.metadata.resource_version = Some("12".into());
        assert!(own.is_echo(&ours), "the echo, whatever its resourceVersion");
        assert!(!own.is_echo(&crb(&["a"])), "someone removed a subject");
        own.intend(&crb(&["a", "b", "c"]));
        assert!(!own.is_echo(&ours), "an older state is not what is wanted now");
        own.forget("use-mi-x");
        assert!(!own.is_echo(&crb(&["a", "b", "c"])));
    }
}
