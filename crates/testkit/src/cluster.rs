//! API semantics on top of the store: create, get, list, update, patch, delete and watch with the
//! behaviour of kube-apiserver that clients rely on (resourceVersion preconditions, generation,
//! status subresource, finalizers, namespaces, garbage collection, server-side apply, schemas).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};

use crate::kinds;
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::{Behaviour, GroupResource, Registry, ResourceType};
use crate::schema;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause, Gr};
use crate::store::{Change, ChangeKind, Store, Subscription, Txn};

/// Result of API operations.
pub type ApiResult<T> = Result<T, ApiError>;

/// Options of writes (query parameters of create, update and patch).
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being pruned.
    pub strict: bool,
    /// `force` (server-side apply).
    pub force: bool,
}

/// The part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    /// The object (status changes ignored when the kind has a status subresource).
    Main,
    /// The `status` subresource (only status changes are kept).
    Status,
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted after the owner is gone.
    Background,
    /// The owner waits (with the `foregroundDeletion` finalizer) until its dependents are gone.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `propagationPolicy` (default Background).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 or absent: everything).
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

/// Options of a watch.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
}

/// A successful write: the object as the client sees it and the HTTP status code.
#[derive(Clone, Debug)]
pub struct Written {
    /// The object.
    pub object: Value,
    /// 200, 201 or 202.
    pub code: u16,
}

/// How a watch starts.
pub enum WatchStart {
    /// Streams: synthetic initial events, then changes after `position`.
    Stream {
        /// Synthetic ADDED events (initial state).
        initial: Vec<Value>,
        /// Whether to send the `k8s.io/initial-events-end` bookmark after the initial events.
        initial_end_bookmark: bool,
        /// The resourceVersion the initial state is at.
        position: u64,
        /// Changes after `position`.
        subscription: Subscription,
        /// Filter and view of the watched kind.
        filter: WatchFilter,
    },
    /// The requested resourceVersion is older than the history: one ERROR event (410 Expired).
    Expired(ApiError),
}

/// Decides which changes a watcher sees and how.
#[derive(Clone)]
pub struct WatchFilter {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The watched kind.
    pub fn resource_type(&self) -> &Arc<ResourceType> {
        &self.rt
    }

    /// The watch event (type and object in the watched view) a change produces for this watcher.
    pub fn translate(&self, change: &Change) -> Option<(&'static str, Value)> {
        if change.gr != self.rt.storage {
            return None;
        }
        if let Some(ns) = &self.namespace
            && change.namespace != *ns
        {
            return None;
        }
        let new = kinds::to_view(&self.rt, &change.object);
        let new_matches = self.matches(&new);
        let old_matches = change
            .previous
            .as_ref()
            .is_some_and(|p| self.matches(&kinds::to_view(&self.rt, p)));
        let kind = match change.kind {
            ChangeKind::Added if new_matches => "ADDED",
            ChangeKind::Deleted if old_matches || new_matches => "DELETED",
            ChangeKind::Modified => match (old_matches, new_matches) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            _ => return None,
        };
        Some((kind, new))
    }
}

/// The emulated cluster state and API semantics.
pub struct Cluster {
    store: Store,
    registry: RwLock<Registry>,
    cel: Mutex<kube::core::cel::Validator>,
}

fn gr_of(rt: &ResourceType) -> Gr<'_> {
    Gr {
        group: &rt.group,
        resource: &rt.plural,
    }
}

/// Kinds whose PUT creates a missing object (`AllowCreateOnUpdate` in their strategies).
fn allows_create_on_update(rt: &ResourceType) -> bool {
    matches!(
        (rt.group.as_str(), rt.plural.as_str()),
        ("coordination.k8s.io", "leases")
            | ("", "events")
            | ("events.k8s.io", "events")
            | ("rbac.authorization.k8s.io", _)
    )
}

const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

fn without(object: &Value, drop_status: bool) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        if drop_status {
            map.remove("status");
        }
    }
    copy
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

impl Cluster {
    /// A cluster with the standard namespaces, keeping `history_limit` changes for watches.
    pub fn new(history_limit: usize) -> Self {
        let cluster = Self {
            store: Store::new(history_limit, 65_536),
            registry: RwLock::new(Registry::new()),
            cel: Mutex::new(kube::core::cel::Validator::new()),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(rt) = cluster.find("", "v1", "namespaces") {
                // Creating the standard namespaces in an empty store cannot fail.
                let _ = cluster.create(&rt, "", body, &WriteOptions::default());
            }
        }
        cluster
    }

    /// The served kinds.
    pub fn registry(&self) -> Registry {
        self.registry.read().clone()
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.registry.read().find(group, version, plural)
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store.txn().rv()
    }

    /// Forgets the watch history: every older resourceVersion is now expired (410 Gone).
    pub fn compact(&self) {
        self.store.txn().compact();
    }

    /// Changes the number of changes kept for watches.
    pub fn set_history_limit(&self, limit: usize) {
        self.store.txn().set_history_limit(limit);
    }

    fn storage_api_version(&self, rt: &ResourceType) -> String {
        if !rt.custom {
            return rt.api_version();
        }
        self.registry
            .read()
            .storage_type(&rt.storage)
            .map(|t| t.api_version())
            .unwrap_or_else(|| rt.api_version())
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let txn = self.store.txn();
        txn.get(&rt.storage, ns, name)
            .map(|o| kinds::to_view(rt, o))
            .ok_or_else(|| ApiError::not_found(gr_of(rt), name))
    }

    /// Lists objects (`ns: None` lists all namespaces).
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, opts: &ListOptions) -> ApiResult<Value> {
        opts.fields
            .check_supported(&rt.group, &rt.plural)
            .map_err(ApiError::bad_request)?;
        let txn = self.store.txn();
        let current = txn.rv();
        let mut list_rv = current;
        let mut start_after: Option<(String, String)> = None;
        if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<ContinueToken>(&b).ok())
                .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token:?}")))?;
            if decoded.rv < txn.compacted() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            list_rv = decoded.rv;
            start_after = Some((decoded.ns, decoded.name));
        } else if opts.resource_version_match.as_deref() == Some("Exact")
            && let Some(rv) = opts.resource_version.as_deref()
        {
            let rv: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?;
            if rv < txn.compacted() {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    txn.compacted()
                )));
            }
        }
        let mut items = Vec::new();
        let mut remaining = 0usize;
        let mut next: Option<ContinueToken> = None;
        let limit = opts.limit.filter(|l| *l > 0);
        for stored in txn.list(&rt.storage, ns) {
            let key = (
                meta::namespace(stored).to_string(),
                meta::name(stored).to_string(),
            );
            if start_after.as_ref().is_some_and(|after| key <= *after) {
                continue;
            }
            let object = kinds::to_view(rt, stored);
            if !opts.labels.matches(&object) || !opts.fields.matches(&object) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                remaining += 1;
                if next.is_none()
                    && let Some(last) = items.last()
                {
                    next = Some(ContinueToken {
                        rv: list_rv,
                        ns: meta::namespace(last).to_string(),
                        name: meta::name(last).to_string(),
                    });
                }
                continue;
            }
            items.push(object);
        }
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if let Some(token) = next {
            let encoded = serde_json::to_vec(&token).map_err(|e| ApiError::internal(e.to_string()))?;
            metadata["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encoded));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    fn check_body(rt: &ResourceType, body: &Value, required: bool) -> ApiResult<()> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "{} in version {:?} cannot be handled as a {}: the body is not a JSON object",
                rt.kind, rt.version, rt.kind
            )));
        }
        let api_version = body["apiVersion"].as_str().unwrap_or_default();
        let kind = body["kind"].as_str().unwrap_or_default();
        if required && kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{body}'"
            )));
        }
        if (required || !api_version.is_empty()) && api_version != rt.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
        if !kind.is_empty() && kind != rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        Ok(())
    }

    /// Schema pruning, defaulting and validation of a custom resource, plus metadata validation.
    fn admit(
        &self,
        rt: &ResourceType,
        object: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<()> {
        let mut causes = meta::validate_metadata(object);
        if let Some(schema) = &rt.schema {
            let mut unknown = Vec::new();
            schema::prune(object, schema, "", true, &mut unknown);
            if opts.strict && !unknown.is_empty() {
                let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    rt.version,
                    rt.kind,
                    fields.join(", ")
                )));
            }
            schema::apply_defaults(object, schema);
            causes.extend(schema::validate(object, schema));
            if causes.is_empty() {
                causes.extend(schema::validate_cel(&self.cel.lock(), schema, object, old));
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, meta::name(object), causes))
        }
    }

    /// Creates an object.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut txn = self.store.txn();
        let object = self.create_in(&mut txn, rt, ns, body, opts)?;
        Ok(Written { object, code: 201 })
    }

    fn create_in(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if rt.behaviour != Behaviour::Stored {
            return Err(ApiError::method_not_allowed());
        }
        Self::check_body(rt, &body, true)?;
        let meta_map = meta::metadata_mut(&mut body);
        if rt.namespaced {
            match meta_map.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta_map.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta_map.remove("namespace");
        }
        if meta_map
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        for field in SYSTEM_METADATA {
            meta_map.remove(*field);
        }
        meta_map.remove("managedFields");
        meta_map.remove("resourceVersion");
        let mut name = meta_map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let generate = meta_map
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if generate.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    vec![
                        Cause::required("metadata.name")
                            .with_message("Required value: name or generateName is required"),
                    ],
                ));
            }
            name = format!("{generate}{}", meta::random_suffix());
            meta_map.insert("name".into(), json!(name));
        }
        if let Some(cause) = meta::validate_name(&name, kinds::name_rule(rt)) {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, vec![cause]));
        }
        kinds::prepare_create(rt, &mut body)?;
        self.admit(rt, &mut body, None, opts)?;
        if rt.namespaced {
            match txn.get(&GroupResource::new("", "namespaces"), "", ns) {
                None => {
                    return Err(ApiError::not_found(
                        Gr {
                            group: "",
                            resource: "namespaces",
                        },
                        ns,
                    ));
                }
                Some(namespace) if meta::is_deleting(namespace) => {
                    return Err(ApiError::forbidden(
                        gr_of(rt),
                        &name,
                        format!(
                            "unable to create new content in namespace {ns} because it is being terminated"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if txn.get(&rt.storage, ns, &name).is_some() {
            return Err(ApiError::already_exists(gr_of(rt), &name));
        }
        if rt.storage.group == "apiextensions.k8s.io" {
            self.check_crd_names(&body)?;
        }
        let meta_map = meta::metadata_mut(&mut body);
        meta_map.insert("uid".into(), json!(meta::new_uid()));
        meta_map.insert("creationTimestamp".into(), json!(meta::now()));
        if rt.has_generation {
            meta_map.insert("generation".into(), json!(1));
        }
        let stored = kinds::to_storage(rt, &body, &self.storage_api_version(rt));
        if opts.dry_run {
            return Ok(kinds::to_view(rt, &stored));
        }
        let stored = txn.insert(&rt.storage, ns, &name, stored);
        self.after_write(txn, rt, &stored);
        if !meta::owner_uids(&stored).is_empty() {
            self.collect_garbage(txn);
        }
        Ok(kinds::to_view(rt, &stored))
    }

    /// Side effects of a committed create or update.
    fn after_write(&self, txn: &mut Txn<'_>, rt: &ResourceType, stored: &Value) {
        match (rt.storage.group.as_str(), rt.storage.resource.as_str()) {
            ("", "namespaces") => {
                let ns = meta::name(stored);
                let sa = GroupResource::new("", "serviceaccounts");
                if !meta::is_deleting(stored) && txn.get(&sa, ns, "default").is_none() {
                    let object = json!({
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": ns, "uid": meta::new_uid(), "creationTimestamp": meta::now()},
                    });
                    txn.insert(&sa, ns, "default", object);
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let types = crate::registry::crd_types(stored);
                if let Some(first) = types.first() {
                    let storage = first.storage.clone();
                    self.registry.write().set_custom(&storage, types);
                }
            }
            _ => {}
        }
    }

    /// A CRD may not take over a built-in resource or another CRD's names.
    fn check_crd_names(&self, crd: &Value) -> ApiResult<()> {
        let gr = GroupResource::new(
            crd["spec"]["group"].as_str().unwrap_or_default(),
            crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
        );
        if self.registry.read().is_builtin(&gr) {
            return Err(ApiError::invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                meta::name(crd),
                vec![Cause::invalid(
                    "spec.group",
                    &crd["spec"]["group"],
                    "is a built-in API group-resource",
                )],
            ));
        }
        Ok(())
    }

    /// Side effects of removing an object for good.
    fn after_remove(&self, txn: &mut Txn<'_>, gr: &GroupResource, removed: &Value) {
        if gr.group == "apiextensions.k8s.io" && gr.resource == "customresourcedefinitions" {
            let storage = GroupResource::new(
                removed["spec"]["group"].as_str().unwrap_or_default(),
                removed["spec"]["names"]["plural"].as_str().unwrap_or_default(),
            );
            let keys: Vec<(String, String)> = txn
                .list(&storage, None)
                .iter()
                .map(|o| (meta::namespace(o).to_string(), meta::name(o).to_string()))
                .collect();
            for (ns, name) in keys {
                txn.remove(&storage, &ns, &name);
            }
            self.registry.write().set_custom(&storage, Vec::new());
        }
    }

    /// Replaces an object (PUT).
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        Self::check_body(rt, &body, false)?;
        let mut txn = self.store.txn();
        if txn.get(&rt.storage, ns, name).is_none() && sub == Sub::Main && allows_create_on_update(rt) {
            let mut body = body;
            meta::metadata_mut(&mut body).insert("name".into(), json!(name));
            meta::metadata_mut(&mut body).remove("resourceVersion");
            let object = self.create_in(&mut txn, rt, ns, body, opts)?;
            return Ok(Written { object, code: 201 });
        }
        self.update_in(&mut txn, rt, ns, name, body, sub, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn update_in(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let stored_old = txn
            .get(&rt.storage, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(gr_of(rt), name))?;
        let old = kinds::to_view(rt, &stored_old);
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        let body_name = meta::name(&body);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta::namespace(&body);
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let body_rv = meta::resource_version(&body);
        if !body_rv.is_empty() && body_rv != meta::resource_version(&old) {
            return Err(ApiError::stale(gr_of(rt), name));
        }
        let mut new = match sub {
            Sub::Status => {
                let mut n = old.clone();
                match body.get("status") {
                    Some(status) => n["status"] = status.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
            Sub::Main => {
                let mut n = body;
                if rt.status_subresource {
                    match old.get("status") {
                        Some(status) => n["status"] = status.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                n["apiVersion"] = json!(rt.api_version());
                n["kind"] = json!(rt.kind);
                n
            }
        };
        {
            let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
            let new_meta = meta::metadata_mut(&mut new);
            for field in SYSTEM_METADATA
                .iter()
                .chain(["name", "namespace", "resourceVersion"].iter())
            {
                match old_meta.get(*field) {
                    Some(v) => new_meta.insert((*field).to_string(), v.clone()),
                    None => new_meta.remove(*field),
                };
            }
            new_meta.remove("managedFields");
        }
        if meta::is_deleting(&old) {
            let old_finalizers = meta::finalizers(&old);
            let added: Vec<String> = meta::finalizers(&new)
                .into_iter()
                .filter(|f| !old_finalizers.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    vec![Cause::forbidden(
                        "metadata.finalizers",
                        &format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        if sub == Sub::Main {
            kinds::prepare_update(rt, &old, &mut new)?;
        }
        self.admit(rt, &mut new, Some(&old), opts)?;
        if new == old {
            return Ok(Written {
                object: old,
                code: 200,
            });
        }
        if rt.has_generation && without(&new, rt.status_subresource) != without(&old, rt.status_subresource) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let stored_new = kinds::to_storage(rt, &new, &self.storage_api_version(rt));
        if opts.dry_run {
            return Ok(Written {
                object: kinds::to_view(rt, &stored_new),
                code: 200,
            });
        }
        let is_namespace = rt.storage == GroupResource::new("", "namespaces");
        if meta::is_deleting(&new) && meta::finalizers(&new).is_empty() && !is_namespace {
            txn.replace(&rt.storage, ns, name, stored_new);
            let removed = txn.remove(&rt.storage, ns, name).unwrap_or(Value::Null);
            self.after_remove(txn, &rt.storage, &removed);
            self.collect_garbage(txn);
            return Ok(Written {
                object: kinds::to_view(rt, &removed),
                code: 200,
            });
        }
        let stored = txn.replace(&rt.storage, ns, name, stored_new);
        self.after_write(txn, rt, &stored);
        if !meta::owner_uids(&stored).is_empty() || is_namespace {
            self.collect_garbage(txn);
        }
        Ok(Written {
            object: kinds::to_view(rt, &stored),
            code: 200,
        })
    }

    /// Patches an object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch_type: PatchType,
        body: &Value,
        sub: Sub,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if rt.behaviour != Behaviour::Stored {
            return Err(ApiError::method_not_allowed());
        }
        if patch_type == PatchType::Strategic && rt.custom {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            ));
        }
        let mut txn = self.store.txn();
        if patch_type == PatchType::Apply {
            return self.apply_in(&mut txn, rt, ns, name, body, sub, opts);
        }
        let stored = txn
            .get(&rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(gr_of(rt), name))?;
        let mut target = kinds::to_view(rt, stored);
        match patch_type {
            PatchType::Merge => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("the merge patch is not a JSON object"));
                }
                patch::merge(&mut target, body);
            }
            PatchType::Json => patch::json(&mut target, body).map_err(|e| {
                ApiError::custom(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?,
            PatchType::Strategic => {
                if !body.is_object() {
                    return Err(ApiError::bad_request(
                        "the strategic merge patch is not a JSON object",
                    ));
                }
                patch::strategic(&mut target, body);
            }
            PatchType::Apply => unreachable!("handled above"),
        }
        self.update_in(&mut txn, rt, ns, name, target, sub, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_in(
        &self,
        txn: &mut Txn<'_>,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        config: &Value,
        sub: Sub,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let Some(manager) = opts.field_manager.clone().filter(|m| !m.is_empty()) else {
            return Err(ApiError::custom(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        Self::check_body(rt, config, true)?;
        let config_name = meta::name(config);
        if config_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({name})"
            )));
        }
        let Some(stored) = txn.get(&rt.storage, ns, name).cloned() else {
            if sub == Sub::Status {
                return Err(ApiError::not_found(gr_of(rt), name));
            }
            let object = self.create_in(txn, rt, ns, config.clone(), opts)?;
            if !opts.dry_run {
                txn.set_applied(&rt.storage, ns, name, BTreeMap::from([(manager, config.clone())]));
            }
            return Ok(Written { object, code: 201 });
        };
        let live = kinds::to_view(rt, &stored);
        let mut managers = txn.applied(&rt.storage, ns, name);
        let merged = patch::apply(&live, config, &manager, &mut managers, opts.force).map_err(|conflicts| {
            let n = conflicts.len();
            let fields: Vec<String> = conflicts.iter().map(|c| format!("conflict with {:?}: {}", c.manager, c.field)).collect();
            let mut err = ApiError::conflict(gr_of(rt), name, "");
            err.message = format!("Apply failed with {n} conflict{}: {}", if n == 1 { "" } else { "s" }, fields.join(", "));
            err.details = Some(json!({
                "name": name,
                "kind": rt.plural,
                "group": rt.group,
                "causes": conflicts.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?}", c.manager), "field": c.field})).collect::<Vec<_>>(),
            }));
            err
        })?;
        let written = self.update_in(txn, rt, ns, name, merged, sub, opts)?;
        if !opts.dry_run && txn.get(&rt.storage, ns, name).is_some() {
            txn.set_applied(&rt.storage, ns, name, managers);
        }
        Ok(written)
    }

    /// Deletes an object.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Written> {
        if rt.behaviour != Behaviour::Stored {
            return Err(ApiError::method_not_allowed());
        }
        let mut txn = self.store.txn();
        let (object, removed) = self.delete_in(&mut txn, &rt.storage, gr_of(rt), ns, name, opts)?;
        if !opts.dry_run {
            self.collect_garbage(&mut txn);
        }
        Ok(Written {
            object: kinds::to_view(rt, &object),
            code: if removed { 200 } else { 202 },
        })
    }

    /// Deletes every matching object of a collection.
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let all = self.list(
            rt,
            ns,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut txn = self.store.txn();
        let mut items = Vec::new();
        for item in all["items"].as_array().into_iter().flatten() {
            match self.delete_in(
                &mut txn,
                &rt.storage,
                gr_of(rt),
                meta::namespace(item),
                meta::name(item),
                opts,
            ) {
                Ok((object, _)) => items.push(kinds::to_view(rt, &object)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if !opts.dry_run {
            self.collect_garbage(&mut txn);
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": {"resourceVersion": txn.rv().to_string()},
            "items": items,
        }))
    }

    /// Deletes in storage terms; returns the object and whether it is gone (vs. marked).
    fn delete_in(
        &self,
        txn: &mut Txn<'_>,
        gr: &GroupResource,
        err_gr: Gr<'_>,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        let object = txn
            .get(gr, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(err_gr, name))?;
        if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty())
            && uid != meta::uid(&object)
        {
            return Err(ApiError::conflict(
                err_gr,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&object)
                ),
            ));
        }
        if let Some(rv) = opts.resource_version.as_deref().filter(|r| !r.is_empty())
            && rv != meta::resource_version(&object)
        {
            return Err(ApiError::conflict(
                err_gr,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&object)
                ),
            ));
        }
        let mut finalizers = meta::finalizers(&object);
        if opts.dry_run {
            return Ok((object, finalizers.is_empty()));
        }
        let uid = meta::uid(&object).to_string();
        if opts.propagation == Some(Propagation::Orphan) {
            self.orphan_dependents(txn, &uid);
        }
        if opts.propagation == Some(Propagation::Foreground)
            && !finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            finalizers.push("foregroundDeletion".to_string());
        }
        let is_namespace = *gr == GroupResource::new("", "namespaces");
        if meta::is_deleting(&object) {
            if finalizers != meta::finalizers(&object) {
                let mut marked = object;
                meta::set_finalizers(&mut marked, &finalizers);
                let marked = txn.replace(gr, ns, name, marked);
                return Ok((marked, false));
            }
            return Ok((object, false));
        }
        if finalizers.is_empty() && !is_namespace {
            let removed = txn.remove(gr, ns, name).unwrap_or(object);
            self.after_remove(txn, gr, &removed);
            return Ok((removed, true));
        }
        let mut marked = object;
        meta::set_finalizers(&mut marked, &finalizers);
        let meta_map = meta::metadata_mut(&mut marked);
        meta_map.insert("deletionTimestamp".into(), json!(meta::now()));
        meta_map.insert("deletionGracePeriodSeconds".into(), json!(0));
        // As kube-apiserver's BeforeDelete: marking an object for deletion is a new generation,
        // so controllers that filter on generation see it.
        if let Some(generation) = meta_map
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            meta_map.insert("generation".into(), json!(generation + 1));
        }
        if is_namespace {
            marked["status"]["phase"] = json!("Terminating");
        }
        let marked = txn.replace(gr, ns, name, marked);
        if is_namespace {
            self.empty_namespace(txn, name);
        }
        Ok((marked, false))
    }

    /// Deletes everything in a terminating namespace.
    fn empty_namespace(&self, txn: &mut Txn<'_>, ns: &str) {
        let registry = self.registry.read().clone();
        for gr in txn.buckets() {
            let Some(rt) = registry.storage_type(&gr) else {
                continue;
            };
            if !rt.namespaced {
                continue;
            }
            let names: Vec<String> = txn
                .list(&gr, Some(ns))
                .iter()
                .map(|o| meta::name(o).to_string())
                .collect();
            for name in names {
                // Each delete either removes the object or marks it; neither can fail here.
                let _ = self.delete_in(
                    txn,
                    &gr,
                    Gr {
                        group: &gr.group,
                        resource: &gr.resource,
                    },
                    ns,
                    &name,
                    &DeleteOptions::default(),
                );
            }
        }
    }

    fn orphan_dependents(&self, txn: &mut Txn<'_>, owner_uid: &str) {
        for gr in txn.buckets() {
            let dependents: Vec<Value> = txn
                .list(&gr, None)
                .into_iter()
                .filter(|o| meta::owner_uids(o).iter().any(|u| u == owner_uid))
                .cloned()
                .collect();
            for mut dependent in dependents {
                let (ns, name) = (
                    meta::namespace(&dependent).to_string(),
                    meta::name(&dependent).to_string(),
                );
                if let Some(refs) = dependent["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                    if refs.is_empty()
                        && let Some(m) = dependent["metadata"].as_object_mut()
                    {
                        m.remove("ownerReferences");
                    }
                }
                txn.replace(&gr, &ns, &name, dependent);
            }
        }
    }

    /// Garbage collection, run after writes that can affect it: deletes dependents whose owners are
    /// all gone (or whose owner is being deleted in the foreground), completes foreground
    /// deletions whose dependents are gone, and removes terminating namespaces that became empty.
    fn collect_garbage(&self, txn: &mut Txn<'_>) {
        for _ in 0..64 {
            struct Owner {
                namespace: String,
                foreground: bool,
            }
            let mut owners: HashMap<String, Owner> = HashMap::new();
            let mut referenced: HashSet<String> = HashSet::new();
            let mut occupied: HashSet<String> = HashSet::new();
            let buckets = txn.buckets();
            for gr in &buckets {
                for o in txn.list(gr, None) {
                    let foreground =
                        meta::is_deleting(o) && meta::finalizers(o).iter().any(|f| f == "foregroundDeletion");
                    owners.insert(
                        meta::uid(o).to_string(),
                        Owner {
                            namespace: meta::namespace(o).to_string(),
                            foreground,
                        },
                    );
                    referenced.extend(meta::owner_uids(o));
                    if !meta::namespace(o).is_empty() {
                        occupied.insert(meta::namespace(o).to_string());
                    }
                }
            }
            let mut doomed = Vec::new();
            let mut finished = Vec::new();
            let mut empty_namespaces = Vec::new();
            for gr in &buckets {
                for o in txn.list(gr, None) {
                    let uids = meta::owner_uids(o);
                    let ns = meta::namespace(o);
                    let present = |u: &String| {
                        owners
                            .get(u)
                            .filter(|owner| owner.namespace.is_empty() || owner.namespace == ns)
                    };
                    if !uids.is_empty()
                        && !meta::is_deleting(o)
                        && (uids.iter().all(|u| present(u).is_none())
                            || uids
                                .iter()
                                .any(|u| present(u).is_some_and(|owner| owner.foreground)))
                    {
                        doomed.push((gr.clone(), ns.to_string(), meta::name(o).to_string()));
                    }
                    let uid = meta::uid(o);
                    if owners.get(uid).is_some_and(|owner| owner.foreground) && !referenced.contains(uid) {
                        finished.push((gr.clone(), ns.to_string(), meta::name(o).to_string()));
                    }
                    if gr.group.is_empty()
                        && gr.resource == "namespaces"
                        && meta::is_deleting(o)
                        && meta::finalizers(o).is_empty()
                        && !occupied.contains(meta::name(o))
                    {
                        empty_namespaces.push(meta::name(o).to_string());
                    }
                }
            }
            if doomed.is_empty() && finished.is_empty() && empty_namespaces.is_empty() {
                return;
            }
            for (gr, ns, name) in doomed {
                let _ = self.delete_in(
                    txn,
                    &gr,
                    Gr {
                        group: &gr.group,
                        resource: &gr.resource,
                    },
                    &ns,
                    &name,
                    &DeleteOptions::default(),
                );
            }
            for (gr, ns, name) in finished {
                let Some(mut object) = txn.get(&gr, &ns, &name).cloned() else {
                    continue;
                };
                let finalizers: Vec<String> = meta::finalizers(&object)
                    .into_iter()
                    .filter(|f| f != "foregroundDeletion")
                    .collect();
                if finalizers.is_empty() {
                    if let Some(removed) = txn.remove(&gr, &ns, &name) {
                        self.after_remove(txn, &gr, &removed);
                    }
                } else {
                    meta::set_finalizers(&mut object, &finalizers);
                    txn.replace(&gr, &ns, &name, object);
                }
            }
            for ns in empty_namespaces {
                txn.remove(&GroupResource::new("", "namespaces"), "", &ns);
            }
        }
    }

    /// Starts a watch.
    pub fn watch(
        &self,
        rt: &Arc<ResourceType>,
        ns: Option<&str>,
        opts: &WatchOptions,
    ) -> ApiResult<WatchStart> {
        opts.fields
            .check_supported(&rt.group, &rt.plural)
            .map_err(ApiError::bad_request)?;
        let filter = WatchFilter {
            rt: rt.clone(),
            namespace: ns.map(str::to_string),
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
        };
        let txn = self.store.txn();
        let requested = opts.resource_version.as_deref().unwrap_or_default();
        let from_now = opts.send_initial_events || requested.is_empty() || requested == "0";
        let position = if from_now {
            txn.rv()
        } else {
            requested.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "meta.k8s.io",
                    "ListOptions",
                    "",
                    vec![Cause::invalid(
                        "resourceVersion",
                        &json!(requested),
                        "must be a valid resource version",
                    )],
                )
            })?
        };
        let Some(subscription) = txn.subscribe_from(position) else {
            return Ok(WatchStart::Expired(ApiError::expired(format!(
                "too old resource version: {position} ({})",
                txn.compacted()
            ))));
        };
        let initial = if from_now {
            txn.list(&rt.storage, ns)
                .into_iter()
                .map(|o| kinds::to_view(rt, o))
                .filter(|o| filter.matches(o))
                .collect()
        } else {
            Vec::new()
        };
        Ok(WatchStart::Stream {
            initial,
            initial_end_bookmark: opts.send_initial_events && opts.bookmarks,
            position,
            subscription,
            filter,
        })
    }

    /// Every stored object of a storage bucket in storage layout (for reviews and authorization).
    pub fn stored(&self, gr: &GroupResource) -> Vec<Value> {
        self.store.txn().list(gr, None).into_iter().cloned().collect()
    }

    /// The resourceVersion of the last change in a storage bucket.
    pub fn bucket_version(&self, gr: &GroupResource) -> u64 {
        self.store.txn().bucket_version(gr)
    }

    /// One stored object in storage layout.
    pub fn stored_one(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Value> {
        self.store.txn().get(gr, ns, name).cloned()
    }
}

impl Cause {
    /// The same cause with another message.
    pub fn with_message(mut self, message: &str) -> Self {
        self.message = message.to_string();
        self
    }
}
