//! Test and sandbox infrastructure for idbind: a Kubernetes API emulator faithful enough for
//! kube-rs and kubectl, and helpers to locate the external tools tests drive.
//!
//! [`KubeEmulator`] serves the Kubernetes API over HTTPS on a loopback port with its own CA:
//! built-in kinds (namespaces, service accounts, secrets, config maps, pods, events, leases,
//! RBAC, CRDs, webhook configurations), any kind a CRD registers (with schema defaults,
//! validation, pruning and CEL rules), discovery, OpenAPI v3, watches with bookmarks and 410 Gone,
//! bearer-token authentication, RBAC authorization, TokenRequest/TokenReview and access reviews.
//! Everything hangs off the [`KubeEmulator`] value (no global state); it stops when dropped.
//! What is simplified compared with kube-apiserver is listed below.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use idbind_testkit::KubeEmulator;
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, ObjectMeta, PostParams};
//!
//! let emulator = KubeEmulator::start().await?;
//! let configmaps: Api<ConfigMap> = Api::namespaced(emulator.client()?, "default");
//! let cm = ConfigMap {
//!     metadata: ObjectMeta { name: Some("settings".into()), ..Default::default() },
//!     data: Some([("mode".to_string(), "fast".to_string())].into()),
//!     ..Default::default()
//! };
//! configmaps.create(&PostParams::default(), &cm).await.map_err(|e| idbind_testkit::Error::Client(e.to_string()))?;
//! let read = configmaps.get("settings").await.map_err(|e| idbind_testkit::Error::Client(e.to_string()))?;
//! assert_eq!(read.data.unwrap_or_default()["mode"], "fast");
//! assert!(emulator.kubeconfig_path().exists());
//! # Ok::<(), idbind_testkit::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Simplifications (what differs from kube-apiserver)
//!
//! - **Storage**: one version per kind is stored; CRD versions convert with strategy `None`
//!   (only `apiVersion` changes). Responses are JSON only; request bodies may be JSON, YAML, or
//!   protobuf for the kinds kubectl's typed clients send (config maps, secrets, namespaces,
//!   service accounts, RBAC kinds, token requests and reviews, access reviews). No CBOR.
//! - **Lists**: `limit`/`continue` paginate over the current state; every page reports the first
//!   page's resourceVersion (so a watch from it replays what changed meanwhile). A continue token
//!   or `resourceVersionMatch=Exact` older than the retained history gets 410 Expired;
//!   `resourceVersionMatch=Exact` at a retained but older version returns the current state.
//! - **Watch**: history is a ring of the last N changes (see
//!   [`KubeEmulatorBuilder::history_limit`], [`KubeEmulator::compact_history`]); resuming from an
//!   older resourceVersion gets an ERROR event with a 410 `Expired` Status, like the real server.
//!   Bookmarks every [`KubeEmulatorBuilder::bookmark_interval`]; `sendInitialEvents=true` sends
//!   the current state then a bookmark annotated `k8s.io/initial-events-end`. Default timeout
//!   30 minutes. A watcher more than 65,536 changes behind is closed.
//! - **Strategic merge patch**: a merge patch in which `containers`, `initContainers`, `env`,
//!   `volumes`, `imagePullSecrets`, `secrets` and `conditions` (by `type`) merge by `name`,
//!   `volumeMounts` by `mountPath`, `ports` by `containerPort`, `ownerReferences` by `uid`, and
//!   `finalizers` as a set; `$patch: delete|replace` and `$deleteFromPrimitiveList` are honoured,
//!   `$setElementOrder` and `$retainKeys` ignored. Custom resources reject it with 415, as the real
//!   server does.
//! - **Server-side apply**: each field manager owns the leaves of the configuration it last
//!   applied (lists are atomic). A field another manager applied with a different value conflicts
//!   (409 with `FieldManagerConflict` causes) unless `force=true`, which moves ownership. Fields a
//!   manager applied before and leaves out are removed unless another manager applied them.
//!   Create/update/patch own nothing, so they never conflict with apply. `managedFields` is not
//!   reported.
//! - **Garbage collection** runs synchronously after the write that triggers it (before the
//!   response): background propagation deletes dependents whose owners (matched by uid, same
//!   namespace or cluster-scoped) are all gone; `Foreground` adds the `foregroundDeletion`
//!   finalizer and completes when no dependents remain; `Orphan` removes the owner references.
//! - **Namespaces**: deleting one marks it `Terminating`, deletes its contents (finalizers are
//!   honoured) and removes it when empty. Creating in a terminating namespace is Forbidden, in a
//!   missing one NotFound. Each namespace gets a `default` ServiceAccount (no `kube-root-ca.crt`).
//! - **CRDs** are established synchronously; deleting a CRD removes all its objects at once
//!   (ignoring their finalizers). Structural-schema checks on the CRD itself are minimal.
//! - **Built-in kinds** have no OpenAPI schema validation; a few strategy rules are implemented
//!   (pod containers required and mostly immutable, Secret `stringData`, immutable Secrets and
//!   ConfigMaps, RoleBinding `roleRef` immutable, name formats, labels, finalizers).
//!   `metadata.generation` is maintained for custom resources, CRDs, webhook configurations and
//!   Deployments. Pods are never scheduled; unbound pods delete immediately.
//! - **Auth**: anonymous requests get 401; discovery and OpenAPI need any authenticated user
//!   (bootstrap RBAC); the service-account issuer documents are served without authentication.
//!   `Impersonate-*` headers are honoured (with `impersonate` RBAC checks).
//!   SelfSubjectRulesReview (`kubectl auth can-i --list`) is not served.
//! - **Admission**: only pod CREATE goes through MutatingWebhookConfigurations (see
//!   [`admission`]); ValidatingWebhookConfigurations are stored but not called. Webhook warnings
//!   come back as `Warning` headers.
//! - **Tables** for `kubectl get`: Name plus a few built-in columns per kind, CRD
//!   `additionalPrinterColumns` (JSONPath subset: fields, indexes, `*`, `?(@.x=="y")`).
//! - **OpenAPI v3**: CRD schemas as given; built-in kinds get a permissive object schema. OpenAPI
//!   v2 is not served.

mod cluster;
mod discovery;
mod emulator;
mod error;
mod jsonpath;
mod kinds;
mod kubeconfig;
mod meta;
mod openapi;
mod patch;
mod protobuf;
mod registry;
mod schema;
mod selectors;
mod server;
mod status;
mod store;
mod table;

pub mod admission;
pub mod auth;
pub mod tools;

pub use emulator::{KubeEmulator, KubeEmulatorBuilder};
pub use error::{Error, Result};
