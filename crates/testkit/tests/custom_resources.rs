//! Custom resources: the CRD's schema (pruning, defaults, validation, CEL transition rules) and
//! the deploy/examples files; CRD lifecycle; printer columns; OpenAPI; events views; leases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{emulator_with_crd, status};
use idbind_testkit::{KubeEmulator, tools};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

fn yaml_file(path: &std::path::Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bindings(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("idbind.dev", "v1alpha1", "IdentityBinding");
    Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "identitybindings"),
    )
}

#[tokio::test]
async fn deploy_examples_are_accepted_or_rejected_as_invalid() {
    let root = tools::workspace_root();
    // The CRD from deploy/crds, as a cluster operator would apply it.
    let crd = yaml_file(&root.join("deploy/crds/identitybindings.idbind.dev.yaml"));
    let emulator = KubeEmulator::builder().seed(crd).unwrap().start().await.unwrap();
    let api = bindings(emulator.client().unwrap());

    let sample: DynamicObject =
        serde_json::from_value(yaml_file(&root.join("deploy/examples/identitybinding.yaml"))).unwrap();
    let created = api.create(&PostParams::default(), &sample).await.unwrap();
    assert_eq!(
        created.data["spec"]["allowedSubjects"][0]["namespace"],
        "payments"
    );

    let mut rejected = Vec::new();
    for entry in std::fs::read_dir(root.join("deploy/examples/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let object: DynamicObject = serde_json::from_value(yaml_file(&path)).unwrap();
        let err = status(api.create(&PostParams::default(), &object).await);
        assert_eq!(
            (err.code, err.reason.as_str()),
            (422, "Invalid"),
            "{}: {}",
            path.display(),
            err.message
        );
        let fields: Vec<String> = err.details.unwrap().causes.into_iter().map(|c| c.field).collect();
        rejected.push((path.file_name().unwrap().to_string_lossy().into_owned(), fields));
    }
    rejected.sort();
    assert_eq!(
        rejected,
        [
            (
                "identitybinding-bad-resource-id.yaml".to_string(),
                vec!["spec.managedIdentity.resourceId".to_string()]
            ),
            (
                "identitybinding-bad-subject.yaml".to_string(),
                vec!["spec.allowedSubjects[0].namespace".to_string()]
            ),
            (
                "identitybinding-missing-identity.yaml".to_string(),
                vec!["spec.managedIdentity".to_string()]
            ),
        ]
    );
}

#[tokio::test]
async fn cel_transition_rule_keeps_the_resource_id_immutable() {
    let emulator = emulator_with_crd().await;
    let api = bindings(emulator.client().unwrap());
    let object: DynamicObject = serde_json::from_value(json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "IdentityBinding",
        "metadata": {"name": "b"}, "spec": {"managedIdentity": {"resourceId": common::RESOURCE_ID}, "extra": 1}}))
    .unwrap();
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    assert!(
        created.data["spec"].get("extra").is_none(),
        "unknown fields are pruned"
    );
    let mut renamed = object.clone();
    renamed.metadata.name = Some("strict".into());
    let strict_request =
        http::Request::post("/apis/idbind.dev/v1alpha1/identitybindings?fieldValidation=Strict")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&renamed).unwrap())
            .unwrap();
    let strict = status(emulator.client().unwrap().request::<Value>(strict_request).await);
    assert_eq!((strict.code, strict.reason.as_str()), (400, "BadRequest"));
    assert!(
        strict
            .message
            .ends_with("strict decoding error: unknown field \"spec.extra\""),
        "{}",
        strict.message
    );

    let other = common::RESOURCE_ID.replace("payments", "other");
    let change = json!({"spec": {"managedIdentity": {"resourceId": other}}});
    let err = status(
        api.patch("b", &PatchParams::default(), &Patch::Merge(&change))
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "IdentityBinding.idbind.dev \"b\" is invalid: spec.managedIdentity.resourceId: Invalid value: \"string\": resourceId is immutable; create a new IdentityBinding to bind another identity"
    );
    // Other spec changes are fine.
    let ok = json!({"spec": {"allowedSubjects": [{"namespace": "a"}]}});
    assert!(
        api.patch("b", &PatchParams::default(), &Patch::Merge(&ok))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn crd_defaults_types_lifecycle_and_tables() {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {"group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer", "default": 3, "minimum": 1, "maximum": 10},
                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}]}
    }))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let gvk = GroupVersionKind::gvk("example.dev", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    );
    let w: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}),
    )
    .unwrap();
    let made = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(made.data["spec"], json!({"size": 3, "mode": "fast"}));
    let bad: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "bad"},
        "spec": {"size": "big", "mode": "medium", "labels": {"a": 1}}}),
    )
    .unwrap();
    let err = status(widgets.create(&PostParams::default(), &bad).await);
    let mut fields: Vec<String> = err.details.unwrap().causes.into_iter().map(|c| c.field).collect();
    fields.sort();
    assert_eq!(fields, ["spec.labels[a]", "spec.mode", "spec.size"]);

    // Table rendering with the CRD's printer columns (what kubectl get asks for).
    let request = http::Request::get("/apis/example.dev/v1/namespaces/default/widgets")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(request).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Size"]);
    assert_eq!(table["rows"][0]["cells"], json!(["w", 3]));

    // OpenAPI v3 carries the schema with the GVK extension.
    let index: Value = client
        .request(http::Request::get("/openapi/v3").body(Vec::new()).unwrap())
        .await
        .unwrap();
    let url = index["paths"]["apis/example.dev/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc: Value = client
        .request(http::Request::get(url).body(Vec::new()).unwrap())
        .await
        .unwrap();
    let schema = &doc["components"]["schemas"]["dev.example.v1.Widget"];
    assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
    assert_eq!(schema["properties"]["spec"]["properties"]["size"]["default"], 3);

    // Deleting the CRD removes its objects and stops serving the kind.
    crds.delete("widgets.example.dev", &Default::default())
        .await
        .unwrap();
    let gone = status(widgets.list(&ListParams::default()).await);
    assert_eq!(gone.code, 404);
    crds.create(&PostParams::default(), &crd).await.unwrap();
    assert!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn events_are_one_store_with_two_views_and_leases_work() {
    let emulator = KubeEmulator::start().await.unwrap();
    let client = emulator.client().unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event: Event = serde_json::from_value(json!({"metadata": {"name": "e1"}, "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "idbind.dev/controller", "reportingInstance": "c-1", "action": "Reconcile", "reason": "Bound",
        "type": "Normal", "note": "bound payments", "regarding": {"kind": "IdentityBinding", "name": "payments"}}))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let seen = core.get("e1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("bound payments"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("payments"));
    assert_eq!(seen.reporting_component.as_deref(), Some("idbind.dev/controller"));
    let selected = core
        .list(&ListParams::default().fields("involvedObject.name=payments,reason=Bound"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    let v1_selected = events
        .list(&ListParams::default().fields("regarding.name=payments"))
        .await
        .unwrap();
    assert_eq!(v1_selected.items[0].note.as_deref(), Some("bound payments"));

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "idbind-controller"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    // PUT creates leases (their strategy allows create-on-update), as leader election relies on.
    let created = leases
        .replace("idbind-controller", &PostParams::default(), &lease)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("idbind-controller", &PostParams::default(), &stale)
        .await
        .unwrap();
    let mut second = created;
    second.spec.as_mut().unwrap().holder_identity = Some("c".into());
    assert_eq!(
        status(
            leases
                .replace("idbind-controller", &PostParams::default(), &second)
                .await
        )
        .code,
        409
    );
}
