//! Object storage: objects as JSON values keyed by storage bucket, namespace and name; one global
//! resourceVersion counter; a bounded history of changes for watches; a broadcast channel for live
//! watchers.
//!
//! The store knows nothing about HTTP or API semantics. Callers take a [`Txn`] (the store's lock),
//! read, decide, and write; every write gets the next resourceVersion, is appended to the history
//! and is broadcast while the lock is held, so watchers see changes in resourceVersion order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::registry::GroupResource;

/// The kind of a change, as in watch events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Removed.
    Deleted,
}

/// One committed change.
#[derive(Clone, Debug)]
pub struct Change {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// Storage bucket.
    pub gr: GroupResource,
    /// Namespace ("" for cluster-scoped objects).
    pub namespace: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The object after the change (for deletions: its last state with the deletion's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change (none for additions).
    pub previous: Option<Arc<Value>>,
}

type Bucket = BTreeMap<(String, String), Value>;

#[derive(Default)]
struct State {
    rv: u64,
    objects: HashMap<GroupResource, Bucket>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// A watch can resume from any resourceVersion `>= compacted`.
    compacted: u64,
    /// Server-side apply: per object, per field manager, the last applied configuration.
    applied: HashMap<(GroupResource, String, String), BTreeMap<String, Value>>,
    /// The resourceVersion of the last change of each bucket.
    versions: HashMap<GroupResource, u64>,
}

/// The object store.
pub struct Store {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
}

/// The store's lock, with read and write operations.
pub struct Txn<'a> {
    state: MutexGuard<'a, State>,
    changes: &'a broadcast::Sender<Arc<Change>>,
}

/// A live subscription to changes, positioned at a resourceVersion.
pub struct Subscription {
    /// Changes after the position that were already in the history.
    pub backlog: Vec<Arc<Change>>,
    /// Live changes (may repeat backlog entries; skip `rv <= position`).
    pub live: broadcast::Receiver<Arc<Change>>,
}

impl Store {
    /// An empty store keeping `history_limit` changes for watches, starting at resourceVersion
    /// `initial_rv`.
    pub fn new(history_limit: usize, channel_capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(channel_capacity.max(16));
        Self {
            state: Mutex::new(State {
                history_limit,
                ..State::default()
            }),
            changes,
        }
    }

    /// Takes the lock.
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            state: self.state.lock(),
            changes: &self.changes,
        }
    }
}

impl Txn<'_> {
    /// The current (latest) resourceVersion.
    pub fn rv(&self) -> u64 {
        self.state.rv
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn compacted(&self) -> u64 {
        self.state.compacted
    }

    /// The resourceVersion of the last change in a bucket (0 if none).
    pub fn bucket_version(&self, gr: &GroupResource) -> u64 {
        self.state.versions.get(gr).copied().unwrap_or(0)
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, namespace: &str, name: &str) -> Option<&Value> {
        self.state
            .objects
            .get(gr)?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a bucket, in one namespace or all (`None`), ordered by namespace and name.
    pub fn list(&self, gr: &GroupResource, namespace: Option<&str>) -> Vec<&Value> {
        let Some(bucket) = self.state.objects.get(gr) else {
            return Vec::new();
        };
        match namespace {
            None => bucket.values().collect(),
            Some(ns) => bucket
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v)
                .collect(),
        }
    }

    /// Every bucket that holds objects.
    pub fn buckets(&self) -> Vec<GroupResource> {
        self.state
            .objects
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(gr, _)| gr.clone())
            .collect()
    }

    /// Stores a new object (replacing nothing), stamping the next resourceVersion.
    pub fn insert(&mut self, gr: &GroupResource, namespace: &str, name: &str, object: Value) -> Value {
        self.write(gr, namespace, name, object, ChangeKind::Added)
    }

    /// Replaces an existing object, stamping the next resourceVersion.
    pub fn replace(&mut self, gr: &GroupResource, namespace: &str, name: &str, object: Value) -> Value {
        self.write(gr, namespace, name, object, ChangeKind::Modified)
    }

    /// Removes an object; returns its last state stamped with the deletion's resourceVersion.
    pub fn remove(&mut self, gr: &GroupResource, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_string(), name.to_string());
        let previous = self.state.objects.get_mut(gr)?.remove(&key)?;
        self.state.applied.remove(&(gr.clone(), key.0, key.1));
        let mut object = previous.clone();
        let rv = self.next_rv();
        set_rv(&mut object, rv);
        self.record(Change {
            rv,
            gr: gr.clone(),
            namespace: namespace.to_string(),
            kind: ChangeKind::Deleted,
            object: Arc::new(object.clone()),
            previous: Some(Arc::new(previous)),
        });
        Some(object)
    }

    fn write(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        mut object: Value,
        kind: ChangeKind,
    ) -> Value {
        let rv = self.next_rv();
        set_rv(&mut object, rv);
        let key = (namespace.to_string(), name.to_string());
        let previous = self
            .state
            .objects
            .entry(gr.clone())
            .or_default()
            .insert(key, object.clone());
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            kind
        };
        self.record(Change {
            rv,
            gr: gr.clone(),
            namespace: namespace.to_string(),
            kind,
            object: Arc::new(object.clone()),
            previous: previous.map(Arc::new),
        });
        object
    }

    fn next_rv(&mut self) -> u64 {
        self.state.rv += 1;
        self.state.rv
    }

    fn record(&mut self, change: Change) {
        self.state.versions.insert(change.gr.clone(), change.rv);
        let change = Arc::new(change);
        self.state.history.push_back(change.clone());
        while self.state.history.len() > self.state.history_limit {
            if let Some(dropped) = self.state.history.pop_front() {
                self.state.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Subscribes to changes after `position`; `None` if `position` is older than the history.
    pub fn subscribe_from(&self, position: u64) -> Option<Subscription> {
        if position < self.state.compacted {
            return None;
        }
        let live = self.changes.subscribe();
        let backlog = self
            .state
            .history
            .iter()
            .filter(|c| c.rv > position)
            .cloned()
            .collect();
        Some(Subscription { backlog, live })
    }

    /// Forgets the whole history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact(&mut self) {
        self.state.history.clear();
        self.state.compacted = self.state.rv;
    }

    /// Changes how many changes are kept.
    pub fn set_history_limit(&mut self, limit: usize) {
        self.state.history_limit = limit;
        while self.state.history.len() > limit {
            if let Some(dropped) = self.state.history.pop_front() {
                self.state.compacted = dropped.rv;
            }
        }
    }

    /// Server-side apply: the configurations last applied to an object, by field manager.
    pub fn applied(&self, gr: &GroupResource, namespace: &str, name: &str) -> BTreeMap<String, Value> {
        self.state
            .applied
            .get(&(gr.clone(), namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Server-side apply: records the configurations last applied to an object.
    pub fn set_applied(
        &mut self,
        gr: &GroupResource,
        namespace: &str,
        name: &str,
        applied: BTreeMap<String, Value>,
    ) {
        let key = (gr.clone(), namespace.to_string(), name.to_string());
        if applied.is_empty() {
            self.state.applied.remove(&key);
        } else {
            self.state.applied.insert(key, applied);
        }
    }
}

/// Sets `metadata.resourceVersion`.
pub fn set_rv(object: &mut Value, rv: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".to_string(), Value::String(rv.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn writes_bump_the_global_version_and_are_recorded() {
        let store = Store::new(3, 16);
        let gr = GroupResource::new("", "configmaps");
        let mut txn = store.txn();
        let a = txn.insert(&gr, "ns", "a", cm("a"));
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        txn.insert(&gr, "ns", "b", cm("b"));
        let removed = txn
            .remove(&gr, "ns", "a")
            .map(|v| v["metadata"]["resourceVersion"].clone());
        assert_eq!(removed, Some(json!("3")));
        assert_eq!(txn.list(&gr, Some("ns")).len(), 1);
        let sub = txn
            .subscribe_from(1)
            .map(|s| s.backlog.iter().map(|c| c.rv).collect::<Vec<_>>());
        assert_eq!(sub, Some(vec![2, 3]));
    }

    #[test]
    fn history_window_expires_old_versions() {
        let store = Store::new(2, 16);
        let gr = GroupResource::new("", "configmaps");
        let mut txn = store.txn();
        for n in ["a", "b", "c", "d"] {
            txn.insert(&gr, "ns", n, cm(n));
        }
        assert!(txn.subscribe_from(1).is_none());
        assert!(txn.subscribe_from(2).is_some());
        txn.compact();
        assert!(txn.subscribe_from(3).is_none());
        assert!(txn.subscribe_from(4).is_some());
    }
}
