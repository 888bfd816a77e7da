//! API semantics through kube-rs over real HTTPS: CRUD, conflicts, patches, status subresource and
//! generation, finalizers, garbage collection, selectors, pagination, error bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{RESOURCE_ID, emulator_with_crd, eventually, status};
use idbind_model::{IdentityBinding, IdentityBindingSpec, IdentityBindingStatus, ManagedIdentityRef};
use idbind_testkit::KubeEmulator;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde_json::json;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    }
}

fn binding(name: &str) -> IdentityBinding {
    IdentityBinding::new(
        name,
        IdentityBindingSpec {
            managed_identity: ManagedIdentityRef {
                resource_id: RESOURCE_ID.into(),
            },
            allowed_subjects: vec![],
        },
    )
}

#[tokio::test]
async fn typed_crud_and_error_bodies() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    let created = api.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));

    let dup = status(api.create(&PostParams::default(), &cm("a", &[])).await);
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(dup.message, "configmaps \"a\" already exists");
    let details = dup.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("a", "configmaps")
    );

    let missing = status(api.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = api.replace("a", &PostParams::default(), &changed).await.unwrap();
    assert_ne!(replaced.resource_version(), created.resource_version());
    assert_eq!(replaced.data.clone().unwrap()["k"], "w");

    // A no-op update does not write (same resourceVersion).
    let again = api
        .replace("a", &PostParams::default(), &api.get("a").await.unwrap())
        .await
        .unwrap();
    assert_eq!(again.resource_version(), replaced.resource_version());

    let deleted = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left());
    assert_eq!(status(api.get("a").await).code, 404);

    let in_missing_ns: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "ghost");
    let err = status(in_missing_ns.create(&PostParams::default(), &cm("a", &[])).await);
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"ghost\" not found")
    );

    let bad_name = status(api.create(&PostParams::default(), &cm("Not_Valid", &[])).await);
    assert_eq!((bad_name.code, bad_name.reason.as_str()), (422, "Invalid"));
    assert_eq!(bad_name.details.unwrap().causes[0].field, "metadata.name");
}

#[tokio::test]
async fn stale_updates_conflict_and_generate_name_works() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    let created = api.create(&PostParams::default(), &cm("c", &[])).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    api.replace("c", &PostParams::default(), &first).await.unwrap();
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let conflict = status(api.replace("c", &PostParams::default(), &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A merge patch carrying a stale resourceVersion conflicts too.
    let patch = json!({"metadata": {"resourceVersion": created.resource_version()}, "data": {"k": "3"}});
    let conflict = status(
        api.patch("c", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert_eq!(conflict.code, 409);

    let mut generated = cm("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &generated).await.unwrap();
    let name = made.name_any();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Creating with a resourceVersion is refused, as by kube-apiserver.
    let mut with_rv = cm("d", &[]);
    with_rv.metadata.resource_version = Some("5".into());
    assert_eq!(
        status(api.create(&PostParams::default(), &with_rv).await).code,
        500
    );
}

#[tokio::test]
async fn merge_json_strategic_and_apply_patches() {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("p", &[("app", "web")]))
        .await
        .unwrap();

    let merged = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "1", "k": null}, "metadata": {"labels": {"tier": "x"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.clone().unwrap(),
        BTreeMap::from([("a".to_string(), "1".to_string())])
    );
    assert_eq!(merged.labels().len(), 2);

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/tier"}
    ]))
    .unwrap();
    let patched = api
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.clone().unwrap()["b"], "2");
    assert_eq!(patched.labels().len(), 1);
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "nope"}])).unwrap();
    assert_eq!(
        status(
            api.patch("p", &PatchParams::default(), &Patch::<()>::Json(failing))
                .await
        )
        .code,
        422
    );

    // Server-side apply: creates, owns fields, conflicts between managers, force moves ownership.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "1", "y": "2"}});
    let one = PatchParams::apply("one");
    let created = api.patch("s", &one, &Patch::Apply(&applied)).await.unwrap();
    assert_eq!(created.data.unwrap()["y"], "2");
    let fewer =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "1"}});
    let updated = api.patch("s", &one, &Patch::Apply(&fewer)).await.unwrap();
    assert_eq!(
        updated.data.unwrap(),
        BTreeMap::from([("x".to_string(), "1".to_string())])
    );
    let other =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": {"x": "9"}});
    let conflict = status(
        api.patch("s", &PatchParams::apply("two"), &Patch::Apply(&other))
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let cause = &conflict.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", ".data.x")
    );
    let forced = api
        .patch("s", &PatchParams::apply("two").force(), &Patch::Apply(&other))
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["x"], "9");
    let no_manager = status(
        api.patch("s", &PatchParams::default(), &Patch::Apply(&other))
            .await,
    );
    assert_eq!(no_manager.code, 422);

    // Strategic merge patch merges containers by name on built-in kinds.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "side:1"}
    ]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let smp = json!({"spec": {"containers": [{"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]}]}});
    let patched = pods
        .patch("web", &PatchParams::default(), &Patch::Strategic(&smp))
        .await
        .unwrap();
    let containers = patched.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(containers[0].env.as_ref().unwrap().len(), 2);
    // ...and is refused for custom resources, as the real server does.
    drop(emulator);
    let emulator = emulator_with_crd().await;
    let ibs: Api<IdentityBinding> = Api::all(emulator.client().unwrap());
    ibs.create(&PostParams::default(), &binding("b")).await.unwrap();
    let refused = status(
        ibs.patch(
            "b",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await,
    );
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let emulator = emulator_with_crd().await;
    let api: Api<IdentityBinding> = Api::all(emulator.client().unwrap());
    let mut ib = binding("gen");
    ib.status = Some(IdentityBindingStatus {
        client_id: Some("ignored".into()),
        ..Default::default()
    });
    let created = api.create(&PostParams::default(), &ib).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is dropped on create when the status subresource is enabled"
    );

    let status_patch = json!({"status": {"clientId": "c1", "observedGeneration": 1}});
    let with_status = api
        .patch_status("gen", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await
        .unwrap();
    assert_eq!(
        with_status.status.as_ref().and_then(|s| s.client_id.as_deref()),
        Some("c1")
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status changes do not bump generation"
    );

    // Spec changes on the main resource bump generation; status changes there are ignored.
    let spec_patch =
        json!({"spec": {"allowedSubjects": [{"namespace": "payments"}]}, "status": {"clientId": "nope"}});
    let changed = api
        .patch("gen", &PatchParams::default(), &Patch::Merge(&spec_patch))
        .await
        .unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.status.as_ref().and_then(|s| s.client_id.as_deref()),
        Some("c1")
    );

    // The status subresource ignores spec changes.
    let spec_via_status = json!({"spec": {"allowedSubjects": []}, "status": {"clientId": "c2"}});
    let after = api
        .patch_status("gen", &PatchParams::default(), &Patch::Merge(&spec_via_status))
        .await
        .unwrap();
    assert_eq!(after.spec.allowed_subjects.len(), 1);
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(after.status.and_then(|s| s.client_id), Some("c2".into()));

    // Labels are metadata: no generation bump.
    let labelled = api
        .patch(
            "gen",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));

    // Server-side apply of status through the subresource (what controllers do).
    let applied = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "IdentityBinding", "metadata": {"name": "gen"},
        "status": {"tenantId": "t"}});
    let after = api
        .patch_status(
            "gen",
            &PatchParams::apply("ctrl").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(after.status.and_then(|s| s.tenant_id), Some("t".into()));
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let emulator = KubeEmulator::start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(emulator.client().unwrap(), "default");
    let mut obj = cm("f", &[]);
    obj.metadata.finalizers = Some(vec!["idbind.dev/cleanup".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let deleting = api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = deleting.left().expect("deletion pending: the object is returned");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = api.get("f").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());

    // No new finalizers while deleting.
    let add = json!({"metadata": {"finalizers": ["idbind.dev/cleanup", "other.dev/x"]}});
    let refused = status(api.patch("f", &PatchParams::default(), &Patch::Merge(&add)).await);
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));

    // Removing the last finalizer completes the deletion.
    let remove = json!({"metadata": {"finalizers": null}});
    api.patch("f", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    assert_eq!(status(api.get("f").await).code, 404);
}

#[tokio::test]
async fn marking_a_custom_resource_for_deletion_is_a_new_generation() {
    let emulator = emulator_with_crd().await;
    let ibs: Api<IdentityBinding> = Api::all(emulator.client().unwrap());
    let mut obj = binding("g");
    obj.metadata.finalizers = Some(vec!["idbind.dev/cleanup".into()]);
    let created = ibs.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let marked = ibs
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("deletion pending");
    assert_eq!(marked.metadata.generation, Some(2));
    // A second delete of an object already being deleted changes nothing.
    let again = ibs
        .delete("g", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("deletion pending");
    assert_eq!(again.metadata.generation, Some(2));
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let emulator = emulator_with_crd().await;
    let client = emulator.client().unwrap();
    let ibs: Api<IdentityBinding> = Api::all(client.clone());
    let owner = ibs
        .create(&PostParams::default(), &binding("owner"))
        .await
        .unwrap();
    let oref = owner.controller_owner_ref(&()).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for name in ["d1", "d2"] {
        let mut dep = cm(name, &[]);
        dep.metadata.owner_references = Some(vec![oref.clone()]);
        cms.create(&PostParams::default(), &dep).await.unwrap();
    }
    // A dependent of an unrelated owner survives.
    let mut other = cm("other", &[]);
    other.metadata.owner_references = Some(vec![OwnerReference {
        uid: "not-the-owner".into(),
        ..oref.clone()
    }]);
    assert!(cms.create(&PostParams::default(), &other).await.is_ok());
    // ...until the GC notices its owner does not exist (as the real GC deletes dangling dependents).
    eventually("dangling dependent collected", || async {
        cms.get_opt("other").await.unwrap().is_none().then_some(())
    })
    .await;

    ibs.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("dependents collected", || async {
        let left = cms.list(&ListParams::default().labels("")).await.unwrap();
        (!left.items.iter().any(|c| c.name_any().starts_with('d'))).then_some(())
    })
    .await;

    // Orphan keeps dependents and strips the reference.
    let owner = ibs
        .create(&PostParams::default(), &binding("owner2"))
        .await
        .unwrap();
    let mut dep = cm("kept", &[]);
    dep.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    ibs.delete(
        "owner2",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let kept = cms.get("kept").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());

    // Foreground: the owner waits for its dependents.
    let owner = ibs
        .create(&PostParams::default(), &binding("owner3"))
        .await
        .unwrap();
    let mut dep = cm("blocking", &[]);
    dep.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    dep.metadata.finalizers = Some(vec!["test.dev/hold".into()]);
    cms.create(&PostParams::default(), &dep).await.unwrap();
    ibs.delete("owner3", &DeleteParams::foreground()).await.unwrap();
    let waiting = ibs.get("owner3").await.unwrap();
    assert!(waiting.finalizers().contains(&"foregroundDeletion".to_string()));
    assert!(
        cms.get("blocking")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "blocking",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("foreground owner deleted", || async {
        ibs.get_opt("owner3").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("other".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &cm("web-1", &[("app", "web"), ("tier", "front")]),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &cm("web-2", &[("app", "web"), ("tier", "back")]),
    )
    .await
    .unwrap();
    api.create(&PostParams::default(), &cm("db-1", &[("app", "db")]))
        .await
        .unwrap();
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    other
        .create(&PostParams::default(), &cm("web-3", &[("app", "web")]))
        .await
        .unwrap();

    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    };
    assert_eq!(
        names(api.list(&ListParams::default().labels("app=web")).await.unwrap()),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app==web,tier!=front"))
                .await
                .unwrap()
        ),
        ["web-2"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app in (db,cache)"))
                .await
                .unwrap()
        ),
        ["db-1"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app notin (web)"))
                .await
                .unwrap()
        ),
        ["db-1"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("tier")).await.unwrap()),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("!tier")).await.unwrap()),
        ["db-1"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=db-1"))
                .await
                .unwrap()
        ),
        ["db-1"]
    );
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        names(
            all.list(
                &ListParams::default()
                    .labels("app=web")
                    .fields("metadata.namespace=other")
            )
            .await
            .unwrap()
        ),
        ["web-3"]
    );
    assert_eq!(
        names(
            all.list(
                &ListParams::default()
                    .fields("metadata.namespace!=other")
                    .labels("app")
            )
            .await
            .unwrap()
        )
        .len(),
        3
    );
    let unsupported = status(api.list(&ListParams::default().fields("data.k=v")).await);
    assert_eq!(
        (unsupported.code, unsupported.message.as_str()),
        (400, "field label not supported: data.k")
    );

    // Pagination with limit/continue.
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    assert_eq!(first.metadata.remaining_item_count, Some(2));
    let second = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(
        second
            .metadata
            .continue_
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    let mut seen = names(first);
    seen.extend(names(second));
    assert_eq!(seen, ["db-1", "web-1", "web-2", "web-3"]);
    // ...and an expired continue token is 410 Gone.
    api.create(&PostParams::default(), &cm("later", &[]))
        .await
        .unwrap();
    emulator.compact_history();
    let gone = status(
        all.list(&ListParams::default().limit(2).continue_token(&token))
            .await,
    );
    assert_eq!((gone.code, gone.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn namespaces_terminate_and_builtin_rules_hold() {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("team".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ns.labels().get("kubernetes.io/metadata.name").map(String::as_str),
        Some("team")
    );
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    assert!(
        sas.get("default").await.is_ok(),
        "every namespace gets a default service account"
    );

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}))
            .unwrap();
    let stored = secrets.create(&PostParams::default(), &secret).await.unwrap();
    assert_eq!(stored.data.unwrap()["password"].0, b"hunter2");
    assert!(stored.string_data.is_none());
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));

    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "team");
    let rb: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "rb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "team"}]}))
    .unwrap();
    bindings.create(&PostParams::default(), &rb).await.unwrap();
    let change =
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}});
    let refused = status(
        bindings
            .patch("rb", &PatchParams::default(), &Patch::Merge(&change))
            .await,
    );
    assert_eq!(
        (refused.code, refused.details.unwrap().causes[0].field.as_str()),
        (422, "roleRef")
    );

    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["test.dev/hold".into()]);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    cms.create(&PostParams::default(), &held).await.unwrap();
    namespaces.delete("team", &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get("team").await.unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    let refused = status(cms.create(&PostParams::default(), &cm("new", &[])).await);
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(status(sas.get("default").await).code, 404, "contents are deleted");
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually("namespace removed", || async {
        namespaces.get_opt("team").await.unwrap().is_none().then_some(())
    })
    .await;
}
