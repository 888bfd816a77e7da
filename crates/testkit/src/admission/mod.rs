//! Mutating admission as kube-apiserver does it: a request (typically a pod CREATE) is sent to
//! every matching webhook of the MutatingWebhookConfigurations, in order, over HTTPS; each
//! webhook may reject it or return a JSON patch that is applied before the next one is called.
//!
//! - Configurations are taken in name order, webhooks in their order within a configuration.
//! - A webhook is called when one of its `rules` matches (operations, apiGroups, apiVersions,
//!   resources with `sub/resource` and `*` patterns, scope), its `namespaceSelector` matches the
//!   namespace's labels (never exempting other cluster-scoped objects) and its `objectSelector`
//!   matches the object's (or old object's) labels.
//! - The endpoint is `clientConfig.url`, or `clientConfig.service` mapped to a local address
//!   through the [`ServiceMap`] (TLS server name `<name>.<namespace>.svc`). Only
//!   `clientConfig.caBundle` is trusted; without one the call fails. The URL gets
//!   `?timeout=<n>s` and the call is cut after `timeoutSeconds` (default 10).
//! - A failed call (unreachable, TLS, timeout, non-2xx, malformed or mismatched response,
//!   unsupported patch type) rejects the request with `500 InternalError` under
//!   `failurePolicy: Fail` (the default) and is skipped under `Ignore`.
//! - `allowed: false` rejects with the webhook's status (code at least 400, message prefixed
//!   `admission webhook "<name>" denied the request`), whatever the failure policy.
//! - Dry-run requests are refused by webhooks whose `sideEffects` is not `None` or
//!   `NoneOnDryRun`.
//! - `reinvocationPolicy: IfNeeded` webhooks are called once more when a later webhook changed
//!   the object.
//! - Not emulated: `matchConditions` (a webhook with any fails as a call failure, so tests never
//!   silently pass), `matchPolicy: Equivalent` conversions, AdmissionReview `v1beta1`.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use idbind_testkit::admission::{AdmissionAttributes, MutatingAdmission};
//! use idbind_testkit::auth::UserInfo;
//! use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
//!
//! # async fn run(configurations: Vec<MutatingWebhookConfiguration>) {
//! let admission = MutatingAdmission::new();
//! let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "apps"}});
//! let request = AdmissionAttributes::pod_create("apps", pod, UserInfo::new("admin", ["system:masters"]));
//! let labels = BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), "apps".to_owned())]);
//! match admission.admit(&request, &configurations, Some(&labels)).await {
//!     Ok(admitted) => println!("store {:?}", admitted.object),
//!     Err(rejected) => println!("answer {} {}", rejected.code(), rejected.message()),
//! }
//! # }
//! ```

mod client;
mod dispatch;
mod matching;
mod review;
mod selector;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde_json::Value;

use crate::auth::UserInfo;

pub use client::ServiceMap;
pub use dispatch::MutatingAdmission;
pub use review::{
    ADMISSION_REVIEW_API_VERSION, ADMISSION_REVIEW_KIND, AdmissionRequest, AdmissionResponse,
    AdmissionReview, GroupVersionKind, GroupVersionResource, WebhookStatus,
};

/// An admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
}

impl Operation {
    /// The name on the wire and in webhook rules (`CREATE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    /// The options object kube-apiserver sends with this operation.
    fn options(self) -> Option<Value> {
        let kind = match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
            Operation::Connect => return None,
        };
        Some(serde_json::json!({ "kind": kind, "apiVersion": "meta.k8s.io/v1" }))
    }
}

/// The request being admitted.
#[derive(Clone, Debug)]
pub struct AdmissionAttributes {
    /// The operation.
    pub operation: Operation,
    /// Kind of the object.
    pub kind: GroupVersionKind,
    /// Resource of the request.
    pub resource: GroupVersionResource,
    /// Subresource; empty for none.
    pub sub_resource: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name; may be empty on create with `generateName`.
    pub name: String,
    /// The new object (create, update).
    pub object: Option<Value>,
    /// The stored object (update, delete).
    pub old_object: Option<Value>,
    /// The requesting user.
    pub user: UserInfo,
    /// Whether this is a dry run.
    pub dry_run: bool,
}

impl AdmissionAttributes {
    /// A CREATE of `object` (its name read from `metadata.name`).
    pub fn create(
        kind: GroupVersionKind,
        resource: GroupVersionResource,
        namespace: &str,
        object: Value,
        user: UserInfo,
    ) -> Self {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self {
            operation: Operation::Create,
            kind,
            resource,
            sub_resource: String::new(),
            namespace: namespace.to_owned(),
            name,
            object: Some(object),
            old_object: None,
            user,
            dry_run: false,
        }
    }

    /// A CREATE of a `v1` Pod in `namespace`.
    pub fn pod_create(namespace: &str, pod: Value, user: UserInfo) -> Self {
        Self::create(
            GroupVersionKind::new("", "v1", "Pod"),
            GroupVersionResource::new("", "v1", "pods"),
            namespace,
            pod,
            user,
        )
    }
}

/// A request the webhooks let through, with the object as mutated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admitted {
    /// The object after every patch.
    pub object: Option<Value>,
    /// Webhooks called, in call order (reinvocations included).
    pub called: Vec<String>,
    /// Webhooks whose patch changed the object, in call order.
    pub mutated_by: Vec<String>,
    /// Warnings returned by webhooks (the server sends them as `Warning` headers).
    pub warnings: Vec<String>,
    /// Audit annotations: the webhooks' own (`<webhook>/<key>`), and the API server's
    /// `mutation.webhook.admission.k8s.io/round_<r>_index_<i>` and
    /// `failed-open.mutation.webhook.admission.k8s.io/round_<r>_index_<i>`.
    pub audit_annotations: BTreeMap<String, String>,
    /// Failures ignored under `failurePolicy: Ignore`, as their error messages.
    pub failed_open: Vec<String>,
}

/// A request refused by admission: the `Status` the API server answers with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Rejected {
    /// The response body (`kind: Status`, `status: Failure`).
    pub status: Box<Status>,
}

impl Rejected {
    fn new(code: u16, reason: &str, message: String) -> Self {
        Self {
            status: Box::new(Status {
                code: Some(i32::from(code)),
                message: Some(message),
                reason: Some(reason.to_owned()),
                status: Some("Failure".into()),
                ..Status::default()
            }),
        }
    }

    /// `500 InternalError` with kube-apiserver's `Internal error occurred: ` prefix.
    fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.status
            .code
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500)
    }

    /// The `Status.message`.
    pub fn message(&self) -> &str {
        self.status.message.as_deref().unwrap_or_default()
    }

    /// The `Status.reason` (may be empty when a webhook gave none).
    pub fn reason(&self) -> &str {
        self.status.reason.as_deref().unwrap_or_default()
    }
}
