//! How the auth code sees stored objects: a lookup the server implements over its storage, so
//! TokenRequest can bind tokens to objects and TokenReview can check they still exist with the
//! same UID.

use std::collections::HashMap;

use jiff::Timestamp;
use parking_lot::RwLock;
use serde_json::Value;

/// Kinds of object a service-account token refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `v1/ServiceAccount` (namespaced).
    ServiceAccount,
    /// `v1/Pod` (namespaced).
    Pod,
    /// `v1/Secret` (namespaced).
    Secret,
    /// `v1/Node` (cluster-scoped: looked up with an empty namespace).
    Node,
}

impl ObjectKind {
    /// The plural resource name (`serviceaccounts`, `pods`, ...).
    pub fn resource(self) -> &'static str {
        match self {
            ObjectKind::ServiceAccount => "serviceaccounts",
            ObjectKind::Pod => "pods",
            ObjectKind::Secret => "secrets",
            ObjectKind::Node => "nodes",
        }
    }

    /// The kind name (`ServiceAccount`, `Pod`, ...).
    pub fn kind(self) -> &'static str {
        match self {
            ObjectKind::ServiceAccount => "ServiceAccount",
            ObjectKind::Pod => "Pod",
            ObjectKind::Secret => "Secret",
            ObjectKind::Node => "Node",
        }
    }
}

/// What the auth code needs to know about a stored object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.deletionTimestamp`, if the object is being deleted.
    pub deletion_timestamp: Option<Timestamp>,
    /// Pods: `spec.serviceAccountName`.
    pub service_account_name: Option<String>,
    /// Pods: `spec.nodeName`.
    pub node_name: Option<String>,
}

impl ObjectInfo {
    /// An object with a UID and nothing else.
    pub fn new(uid: impl Into<String>) -> Self {
        Self {
            uid: uid.into(),
            ..Self::default()
        }
    }

    /// A pod with a UID, running as `service_account`.
    pub fn pod(uid: impl Into<String>, service_account: impl Into<String>) -> Self {
        Self {
            uid: uid.into(),
            service_account_name: Some(service_account.into()),
            ..Self::default()
        }
    }

    /// Reads the fields from a stored object's JSON (`metadata.uid`, `metadata.deletionTimestamp`,
    /// `spec.serviceAccountName`, `spec.nodeName`). `None` if it has no `metadata.uid`.
    pub fn from_object(object: &Value) -> Option<Self> {
        let metadata = object.get("metadata")?;
        let uid = metadata.get("uid")?.as_str()?.to_owned();
        let deletion_timestamp = metadata
            .get("deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok());
        let spec_str = |key: &str| {
            object
                .get("spec")
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(Self {
            uid,
            deletion_timestamp,
            service_account_name: spec_str("serviceAccountName"),
            node_name: spec_str("nodeName"),
        })
    }
}

/// Looks up stored objects. The server implements it over its storage; closures
/// `Fn(ObjectKind, &str, &str) -> Option<ObjectInfo>` implement it too.
pub trait ObjectLookup: Send + Sync {
    /// The object of `kind` named `name` in `namespace` (empty for nodes), if it exists.
    fn lookup(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<ObjectInfo>;
}

impl<F> ObjectLookup for F
where
    F: Fn(ObjectKind, &str, &str) -> Option<ObjectInfo> + Send + Sync,
{
    fn lookup(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<ObjectInfo> {
        self(kind, namespace, name)
    }
}

/// An in-memory [`ObjectLookup`], for tests and for embedding the issuer without a server.
#[derive(Debug, Default)]
pub struct MemoryObjects {
    objects: RwLock<HashMap<(ObjectKind, String, String), ObjectInfo>>,
}

impl MemoryObjects {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores (or replaces) an object.
    pub fn insert(&self, kind: ObjectKind, namespace: &str, name: &str, info: ObjectInfo) {
        self.objects
            .write()
            .insert((kind, namespace.to_owned(), name.to_owned()), info);
    }

    /// Removes an object; returns what was stored.
    pub fn remove(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<ObjectInfo> {
        self.objects
            .write()
            .remove(&(kind, namespace.to_owned(), name.to_owned()))
    }
}

impl ObjectLookup for MemoryObjects {
    fn lookup(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<ObjectInfo> {
        self.objects
            .read()
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}
